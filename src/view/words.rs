//! The closed vocabularies the documents carry (a run's status, an attempt's
//! phase, outcome and blame, a probe's conclusion) as enums, not strings, so
//! that every icon, colour and word is a `match` the compiler checks when a
//! new value is added.
//!
//! A document read back from a newer Shepherd (a remote) may hold a value
//! this build does not know: it becomes [`Word::Unknown`] with the word as it
//! came, shown as is, never an error. On the wire every value is the same
//! snake_case word as before, so the JSON is unchanged.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::state::{AttemptPhase, Blame, FailureClass, RunStatus};
use crate::records::ProbeStatus;

/// A closed vocabulary: each value has one word on the wire.
pub trait Vocabulary: Copy + 'static {
    fn word(self) -> &'static str;
    fn parse(word: &str) -> Option<Self>;
}

/// A value of a vocabulary as a document holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word<T> {
    Known(T),
    /// A word this build does not know (written by a newer Shepherd).
    Unknown(String),
}

impl<T: Vocabulary> Word<T> {
    pub fn known(&self) -> Option<T> {
        match self {
            Word::Known(v) => Some(*v),
            Word::Unknown(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Word::Known(v) => v.word(),
            Word::Unknown(w) => w,
        }
    }

    pub fn is(&self, v: T) -> bool
    where
        T: PartialEq,
    {
        self.known() == Some(v)
    }
}

impl<T> From<T> for Word<T> {
    fn from(v: T) -> Self {
        Word::Known(v)
    }
}

/// A word as it comes (tests, remote answers): known when it is.
impl<T: Vocabulary> From<&str> for Word<T> {
    fn from(word: &str) -> Self {
        T::parse(word).map_or_else(|| Word::Unknown(word.to_string()), Word::Known)
    }
}

impl<T: Vocabulary> fmt::Display for Word<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Vocabulary> Serialize for Word<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Vocabulary> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        Ok(T::parse(&word).map_or(Word::Unknown(word), Word::Known))
    }
}

/// Parses a word with the type's own serde names (the ones state files use).
fn by_serde<T: DeserializeOwned>(word: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        word.into_deserializer();
    T::deserialize(d).ok()
}

/// A run's status in its document: its own, or `error` when its files cannot
/// be read (the run is quarantined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStatus {
    Run(RunStatus),
    Error,
}

impl Vocabulary for DocStatus {
    fn word(self) -> &'static str {
        match self {
            DocStatus::Run(s) => s.as_str(),
            DocStatus::Error => "error",
        }
    }
    fn parse(word: &str) -> Option<Self> {
        match word {
            "error" => Some(DocStatus::Error),
            w => RunStatus::parse(w).map(DocStatus::Run),
        }
    }
}

impl Vocabulary for RunStatus {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn parse(word: &str) -> Option<Self> {
        by_serde(word)
    }
}

impl Vocabulary for AttemptPhase {
    fn word(self) -> &'static str {
        match self {
            AttemptPhase::Submitting => "submitting",
            AttemptPhase::Pending => "pending",
            AttemptPhase::Running => "running",
            AttemptPhase::Ended => "ended",
        }
    }
    fn parse(word: &str) -> Option<Self> {
        by_serde(word)
    }
}

impl Vocabulary for FailureClass {
    fn word(self) -> &'static str {
        match self {
            FailureClass::Success => "success",
            FailureClass::NodeFault => "node_fault",
            FailureClass::WorkloadFailure => "workload_failure",
            FailureClass::OutOfMemory => "out_of_memory",
            FailureClass::Preempted => "preempted",
            FailureClass::TimeLimit => "time_limit",
            FailureClass::Hang => "hang",
            FailureClass::CancelledExternally => "cancelled_externally",
            FailureClass::CancelledByShepherd => "cancelled_by_shepherd",
            FailureClass::Rejected => "rejected",
            FailureClass::Unknown => "unknown",
            FailureClass::NeverStarted => "never_started",
        }
    }
    fn parse(word: &str) -> Option<Self> {
        by_serde(word)
    }
}

impl Vocabulary for Blame {
    fn word(self) -> &'static str {
        match self {
            Blame::Node => "node",
            Blame::Workload => "workload",
            Blame::None => "none",
        }
    }
    fn parse(word: &str) -> Option<Self> {
        by_serde(word)
    }
}

impl Vocabulary for ProbeStatus {
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn parse(word: &str) -> Option<Self> {
        by_serde(word)
    }
}

impl DocStatus {
    /// The run reached an end (completed, failed, stopped, expired).
    pub fn is_ended(self) -> bool {
        matches!(self, DocStatus::Run(s) if s.is_terminal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each word is the one serde writes in state files, and reads back.
    fn round_trips<T>(all: &[T])
    where
        T: Vocabulary + Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        for v in all {
            let serde_word = serde_json::to_value(v).unwrap();
            assert_eq!(serde_word.as_str(), Some(v.word()), "{v:?}");
            assert_eq!(T::parse(v.word()), Some(*v));
            let w: Word<T> = serde_json::from_value(serde_word.clone()).unwrap();
            assert_eq!(w, Word::Known(*v));
            assert_eq!(serde_json::to_value(&w).unwrap(), serde_word);
        }
    }

    #[test]
    fn words_are_the_serde_names_of_state_files() {
        use FailureClass::*;
        round_trips(&[
            Success,
            NodeFault,
            WorkloadFailure,
            OutOfMemory,
            Preempted,
            TimeLimit,
            Hang,
            CancelledExternally,
            CancelledByShepherd,
            Rejected,
            FailureClass::Unknown,
            NeverStarted,
        ]);
        round_trips(&[Blame::Node, Blame::Workload, Blame::None]);
        round_trips(&[
            AttemptPhase::Submitting,
            AttemptPhase::Pending,
            AttemptPhase::Running,
            AttemptPhase::Ended,
        ]);
        round_trips(&[
            ProbeStatus::Healthy,
            ProbeStatus::Faulty,
            ProbeStatus::Inconclusive,
        ]);
        use RunStatus::*;
        round_trips(&[
            Queued, Submitting, Pending, Running, Paused, Stopping, Expiring, Completed, Failed,
            Stopped, Expired,
        ]);
    }

    #[test]
    fn a_word_from_a_newer_shepherd_is_kept_as_it_came() {
        let w: Word<DocStatus> = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(w, Word::Unknown("hibernating".into()));
        assert_eq!(w.to_string(), "hibernating");
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"hibernating\"");
        let e: Word<DocStatus> = serde_json::from_str("\"error\"").unwrap();
        assert_eq!(e, Word::Known(DocStatus::Error));
        let r: Word<DocStatus> = serde_json::from_str("\"stopped\"").unwrap();
        assert!(r.known().is_some_and(DocStatus::is_ended));
    }
}
