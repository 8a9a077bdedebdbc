//! Reading HTTP answers with a size cap: the one place a body is read into memory.
//!
//! A server (a broken proxy, a compromised host, a misconfigured URL pointing at a file
//! server) can answer with a body of any size, or one that never ends. `Response::bytes()`
//! would buffer all of it until memory runs out or the request timeout trips. So every body
//! is read chunk by chunk and the read stops at a cap chosen for what the answer can
//! reasonably hold:
//!
//! - [`read_capped`] for answers that are used (an API page, a token answer): over the cap is
//!   an error ([`BodyError::TooLarge`]) rather than a silently cut document. A declared
//!   `Content-Length` over the cap fails before a byte is read.
//! - [`read_prefix`] for answers that are only quoted (error bodies): the first `cap` bytes,
//!   the rest left unread. The quote then goes through [`crate::text::quote`].

use bytes::{Bytes, BytesMut};

/// One page of a listing API. A Bitbucket page of 100 repositories is ~100–300 KiB; long
/// descriptions could make it a few times that. 8 MiB leaves ample room and still bounds the
/// memory a hostile server can make one request take.
pub const PAGE_CAP: usize = 8 << 20;
/// An OAuth token answer: a few hundred bytes in practice (a JSON object with a token, its
/// scopes and lifetime).
pub const TOKEN_CAP: usize = 64 << 10;
/// An error body or a monitoring service's answer, read only to quote its start.
pub const ERROR_CAP: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The answer is (or says it is) larger than the cap.
    #[error("the answer is larger than {}; refusing to read more", show(*cap))]
    TooLarge { cap: usize },
    /// The connection broke off while the body streamed in (worth a retry).
    #[error("reading the answer failed: {0}")]
    Transport(String),
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to exceed `cap` bytes.
pub async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let (body, complete) = read_up_to(resp, cap).await?;
    if !complete {
        return Err(BodyError::TooLarge { cap });
    }
    Ok(body)
}

/// At most the first `cap` bytes of the body; the rest is never read.
pub async fn read_prefix(resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    Ok(read_up_to(resp, cap).await?.0)
}

/// Reads chunks until the body ends (`true`) or more than `cap` bytes arrived (`false`, the
/// body cut to `cap`). Memory held: at most `cap` plus one chunk.
async fn read_up_to(mut resp: reqwest::Response, cap: usize) -> Result<(Bytes, bool), BodyError> {
    let mut buf = BytesMut::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| BodyError::Transport(crate::error::chain(&e.without_url())))?;
        let Some(chunk) = chunk else {
            return Ok((buf.freeze(), true));
        };
        if buf.len() + chunk.len() > cap {
            let room = cap - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf.freeze(), false));
        }
        buf.extend_from_slice(&chunk);
    }
}

fn show(bytes: usize) -> String {
    bytesize::ByteSize::b(bytes as u64)
        .display()
        .iec()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_shown_in_binary_units() {
        let e = BodyError::TooLarge { cap: PAGE_CAP };
        assert_eq!(
            e.to_string(),
            "the answer is larger than 8.0 MiB; refusing to read more"
        );
    }
}
