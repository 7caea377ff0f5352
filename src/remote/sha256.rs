//! The SHA-256 digest of the binary copied to a remote, to check that it
//! arrived intact: the remote's `sha256sum` must print the digest computed
//! here (the `sha2` crate; only the hex rendering and streaming are ours).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// The SHA-256 digest of everything `reader` yields, as 64 lowercase hex
/// digits (what `sha256sum` prints).
pub fn hex_digest(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_sha256sum_across_block_boundaries() {
        // What the remote checks the copy with; lengths around the padding
        // edges, read in odd chunks.
        for len in [0usize, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let reader = std::io::Read::chain(&data[..len / 3], &data[len / 3..]);
            let ours = hex_digest(reader).unwrap();
            let out = std::process::Command::new("sha256sum")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(&data)?;
                    c.wait_with_output()
                })
                .unwrap();
            let theirs = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                ours,
                theirs.split_whitespace().next().unwrap(),
                "length {len}"
            );
        }
        assert_eq!(
            hex_digest(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
