//! Property tests of the readers of bytes the tool did not write itself: bundle headers,
//! manifests and Bitbucket listing pages. Each reader gets arbitrary and garbled input (it
//! must answer with a clean one-line error, never a panic) and generated valid values (they
//! must read back as written). A few hundred cases each, so the suite stays fast; the fuzz
//! targets in `fuzz/` check the same properties for as long as one lets them run.

mod header;
mod manifest;
mod page;

use proptest::prelude::*;

/// A few hundred cases: seconds, not minutes, in the normal suite.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    }
}

/// `valid`, damaged the way a broken download or a hostile store damages bytes: bytes
/// flipped, dropped, inserted, or the whole cut short.
fn garbled(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    let edits = prop::collection::vec((0..len, any::<u8>(), 0..4u8), 1..6);
    (Just(valid), edits, 0..=len).prop_map(|(mut bytes, edits, keep)| {
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, byte),
                _ => bytes.insert(at, b"\n\"{}[]:,\\ 0-@"[byte as usize % 13]),
            }
        }
        if keep < bytes.len() && keep % 3 == 0 {
            bytes.truncate(keep);
        }
        bytes
    })
}

/// The error text a user would see: one line, with no control characters from the input.
fn one_line(text: &str) {
    assert!(!text.chars().any(char::is_control), "{text:?}");
}
