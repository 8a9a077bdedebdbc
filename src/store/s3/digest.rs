//! Upload integrity: a `Content-MD5` on every PutObject and UploadPart, and a store's
//! `BadDigest` answer treated as what it is, bytes damaged on the way, which are sent again.
//!
//! S3 hashes what it received and, when that is not the `Content-MD5` the request named,
//! answers `400 BadDigest` and stores nothing, so a part or object corrupted in flight (a bad
//! NIC, a proxy, memory) never becomes a stored bundle that only a restore finds out about.
//! `Content-MD5` is the checksum every S3-compatible store accepts (and the one S3 demands
//! under Object Lock); the flexible `x-amz-checksum-*` headers are not: the client stays at
//! `RequestChecksumCalculation::WhenRequired` (see `s3.rs`). Hashing each part separately
//! means CreateMultipartUpload declares no checksum algorithm, which would oblige Complete to
//! list every part's checksum.
//!
//! The hash needs the bytes before the request, so a file range is read once to hash it
//! (1 MiB at a time, off the async threads) and again, by the SDK, to send it: memory stays at
//! one buffer per part in flight, not the part size.
//!
//! [`CorruptedInFlight`] tells the SDK's retry strategy that `BadDigest` (and its SigV4
//! sibling `XAmzContentSHA256Mismatch`, the answer to a signed body that changed) is transient,
//! so the request is re-sent under the client's one retry policy (attempts, backoff, retry
//! quota), exactly like a 500; every body we send can be rebuilt for that. When every attempt
//! is damaged, the error names the cause (`errors.rs`) and the upload is aborted as any failed
//! one is. The header is computed once, so a file that changes after it was hashed fails on
//! every attempt: the store never keeps bytes other than those hashed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use aws_sdk_s3::config::interceptors::InterceptorContext;
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::operation::upload_part::UploadPartError;
use base64::Engine;
use md5::{Digest, Md5};

use crate::store::{Source, StoreError};

/// S3 error codes that mean the bytes that arrived are not the bytes sent.
const CORRUPTED_IN_FLIGHT: &[&str] = &["BadDigest", "XAmzContentSHA256Mismatch"];

/// Whether an S3 error code says the request body was damaged on the way.
pub(super) fn corrupted_in_flight(code: Option<&str>) -> bool {
    code.is_some_and(|c| CORRUPTED_IN_FLIGHT.contains(&c))
}

/// The `Content-MD5` header value of `data`.
pub(super) fn content_md5(data: &[u8]) -> String {
    encode(Md5::digest(data).as_slice())
}

/// The `Content-MD5` of the `len` bytes at `offset` of `source`.
pub(super) async fn source_md5(
    source: &Source,
    offset: u64,
    len: u64,
) -> Result<String, StoreError> {
    let (head, file_offset, file_len) = source.slice(offset, len);
    let path = source.path.clone();
    let digest = tokio::task::spawn_blocking(move || {
        let mut md5 = Md5::new();
        md5.update(&head);
        hash_file_range(&mut md5, &path, file_offset, file_len).map(|()| md5.finalize())
    })
    .await
    .map_err(|e| StoreError::Io {
        context: "cannot hash",
        path: source.path.display().to_string(),
        source: std::io::Error::other(e),
    })?
    .map_err(|e| StoreError::Io {
        context: "cannot read",
        path: source.path.display().to_string(),
        source: e,
    })?;
    Ok(encode(digest.as_slice()))
}

fn encode(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn hash_file_range(md5: &mut Md5, path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut rest = file.take(len);
    // At most 1 MiB, and no more than the range: hashing a 600-byte bundle should not allocate
    // (and zero) a whole MiB per upload in flight (+10 MiB RSS at --jobs 16, tests/scale.rs).
    let mut buf = vec![0u8; len.min(1024 * 1024) as usize];
    let mut seen = 0u64;
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        seen += n as u64;
    }
    if seen < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the file ended after {} of the expected {} bytes",
                offset + seen,
                offset + len
            ),
        ));
    }
    Ok(())
}

/// Marks an upload the store found damaged (see the module docs) as a transient error; has no
/// opinion on anything else, so the SDK's own classifiers decide the rest.
#[derive(Debug, Default)]
pub(super) struct CorruptedInFlight;

impl ClassifyRetry for CorruptedInFlight {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        // Only uploads carry a body the store hashes.
        let code = err.as_operation_error().and_then(|e| {
            (e.downcast_ref::<PutObjectError>().and_then(|e| e.code()))
                .or_else(|| e.downcast_ref::<UploadPartError>().and_then(|e| e.code()))
        });
        if corrupted_in_flight(code) {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "upload damaged in flight (BadDigest)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_covers_exactly_the_slice_over_head_and_file_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"world!").unwrap();
        let source = Source {
            head: bytes::Bytes::from_static(b"hello "),
            path: path.clone(),
            len: 6,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(source_md5(&source, 0, 12)).unwrap(),
            content_md5(b"hello world!")
        );
        assert_eq!(
            rt.block_on(source_md5(&source, 3, 6)).unwrap(),
            content_md5(b"lo wor")
        );
        // RFC 1321: MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let short = Source::file(&path, 10);
        let err = rt.block_on(source_md5(&short, 0, 10)).unwrap_err();
        assert!(err.to_string().contains("ended after 6"), "{err}");
    }

    #[test]
    fn only_digest_mismatches_count_as_damage_in_flight() {
        assert!(corrupted_in_flight(Some("BadDigest")));
        assert!(corrupted_in_flight(Some("XAmzContentSHA256Mismatch")));
        for other in [
            None,
            Some("InvalidDigest"),
            Some("AccessDenied"),
            Some("InternalError"),
        ] {
            assert!(!corrupted_in_flight(other), "{other:?}");
        }
    }
}
