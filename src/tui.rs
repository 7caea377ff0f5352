//! The terminal interface (`shepherd` with no arguments).
//!
//! Not built yet: the interface issue fills this in.
