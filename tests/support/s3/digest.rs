//! `Content-MD5` checked the way S3 checks it, and request bodies damaged in flight on demand.
//!
//! s3s-fs 0.14.1 compares `Content-MD5` on PutObject only after it has moved the new object
//! into place, so its `BadDigest` leaves the damaged bytes stored (over the previous object),
//! and it never compares it on UploadPart. S3 stores nothing when the digest does not match.
//! So the fault layer checks every PutObject and UploadPart body itself as it streams through
//! to s3s-fs: when the last declared byte arrives and the MD5 of what arrived is not the
//! header's, the body ends in an error instead of that last chunk. s3s-fs then drops its temp
//! file, storing nothing, and the layer answers `400 BadDigest` with S3's XML error, code and
//! message as AWS words them (AWS S3 API reference, "Error responses"). A `Content-MD5` that is
//! not 16 bytes of base64 gets `400 InvalidDigest`, also as on AWS. Nothing is buffered.
//!
//! [`TestS3::flip_a_byte`] damages bodies on their way in: one byte (the middle of the first
//! chunk) is inverted before the check, as a faulty NIC, proxy or RAM would. Every body that
//! reached its end is recorded ([`TestS3::uploads_checked`]) with the MD5 of the bytes the
//! client sent, so a test can tell a correct header from a merely present one.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use md5::{Digest, Md5};

use super::TestS3;
use super::wire::{drain, error_response};

/// How often [`TestS3::flip_a_byte`] damages a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    /// The next matching request only; the SDK's re-send of it arrives intact.
    Once,
    /// Every matching request until [`TestS3::clear_faults`].
    Always,
}

/// One PutObject or UploadPart body as the server received it.
#[derive(Debug, Clone)]
pub struct CheckedUpload {
    /// As the fault layer counts it: `PutObject`, `UploadPart` or `LockObject`.
    pub op: &'static str,
    /// The request path: `/<bucket>/<key>`.
    pub path: String,
    /// An UploadPart's part number.
    pub part: Option<usize>,
    /// The request's `Content-MD5` header.
    pub content_md5: Option<String>,
    /// `Content-MD5` of the bytes the client sent (before any flip).
    pub sent_md5: String,
    /// A byte was flipped on the way in.
    pub flipped: bool,
    /// The layer answered `400 BadDigest`.
    pub bad_digest: bool,
}

struct Rule {
    op: &'static str,
    path_part: String,
    left: Option<usize>,
}

#[derive(Default)]
pub(super) struct Digests {
    rules: Mutex<Vec<Rule>>,
    checked: Mutex<Vec<CheckedUpload>>,
}

impl Digests {
    pub(super) fn clear_flips(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub(super) fn clear_recorded(&self) {
        self.checked.lock().unwrap().clear();
    }

    /// Whether this request's body is to be damaged, using up a [`Flip::Once`].
    fn take_flip(&self, op: &str, path: &str) -> bool {
        let mut rules = self.rules.lock().unwrap();
        let Some(rule) = rules
            .iter_mut()
            .find(|r| r.op == op && path.contains(&r.path_part) && r.left != Some(0))
        else {
            return false;
        };
        if let Some(n) = &mut rule.left {
            *n -= 1;
        }
        true
    }
}

impl TestS3 {
    /// Damages the body of `op` requests (`"PutObject"` or `"UploadPart"`) whose path contains
    /// `path_part`: one byte inverted on the way in, after the client hashed it.
    pub fn flip_a_byte(&self, op: &'static str, path_part: &str, how: Flip) {
        assert!(
            matches!(op, "PutObject" | "UploadPart"),
            "{op} has no body to damage"
        );
        self.faults().digests.rules.lock().unwrap().push(Rule {
            op,
            path_part: path_part.to_string(),
            left: (how == Flip::Once).then_some(1),
        });
    }

    /// Every PutObject and UploadPart body received in full so far, in order.
    pub fn uploads_checked(&self) -> Vec<CheckedUpload> {
        self.faults().digests.checked.lock().unwrap().clone()
    }
}

/// A request ready for s3s-fs, and for a PutObject or UploadPart the check of its body.
pub(super) enum Forward {
    Plain(Request<s3s::Body>),
    Hashed(Request<s3s::Body>, Arc<Mutex<Option<CheckedUpload>>>),
    /// The request is answered here (`InvalidDigest`).
    Answered(hyper::Response<s3s::Body>),
}

/// Wraps the body of a PutObject or UploadPart (`upload`: not a copy) in the digest check.
pub(super) async fn check(
    digests: &Arc<Digests>,
    op: &'static str,
    upload: bool,
    req: Request<Incoming>,
) -> Forward {
    if !upload {
        return Forward::Plain(req.map(s3s::Body::from));
    }
    let path = req.uri().path().to_string();
    let part = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix("partNumber="))
            .and_then(|n| n.parse().ok())
    });
    let content_md5 = req
        .headers()
        .get("content-md5")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expected = match content_md5.as_deref().map(decode) {
        None => None,
        Some(Some(md5)) => Some(md5),
        Some(None) => {
            drain(req.into_body()).await;
            let msg = "The Content-MD5 you specified was invalid.";
            return Forward::Answered(error_response(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                msg,
                None,
                false,
            ));
        }
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let verdict = Arc::new(Mutex::new(None));
    let flip = digests.take_flip(op, &path);
    let body = Hashed {
        record: Some(CheckedUpload {
            op,
            path,
            part,
            content_md5,
            sent_md5: String::new(),
            flipped: false,
            bad_digest: false,
        }),
        expected,
        declared,
        seen: 0,
        flip,
        sent: Md5::new(),
        received: Md5::new(),
        verdict: verdict.clone(),
        digests: digests.clone(),
    };
    let req = req.map(|inner| {
        s3s::Body::http_body(Inner {
            inner,
            hashed: body,
        })
    });
    Forward::Hashed(req, verdict)
}

/// The answer to a request whose body arrived with a digest other than its `Content-MD5`.
pub(super) fn bad_digest() -> hyper::Response<s3s::Body> {
    let msg = "The Content-MD5 you specified did not match what we received.";
    error_response(StatusCode::BAD_REQUEST, "BadDigest", msg, None, false)
}

fn decode(content_md5: &str) -> Option<[u8; 16]> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(content_md5)
        .ok()?;
    raw.try_into().ok()
}

fn encode(md5: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

struct Inner {
    inner: Incoming,
    hashed: Hashed,
}

/// What a body has shown so far; decides when its last byte arrives.
struct Hashed {
    /// Taken when the verdict is in.
    record: Option<CheckedUpload>,
    expected: Option<[u8; 16]>,
    /// `Content-Length`, when sent.
    declared: Option<u64>,
    seen: u64,
    flip: bool,
    sent: Md5,
    received: Md5,
    verdict: Arc<Mutex<Option<CheckedUpload>>>,
    digests: Arc<Digests>,
}

impl Hashed {
    /// Passes a chunk on (damaged, if a flip is due) and hashes it both ways.
    fn chunk(&mut self, data: Bytes) -> Bytes {
        self.sent.update(&data);
        self.seen += data.len() as u64;
        let data = if self.flip && !data.is_empty() {
            self.flip = false;
            if let Some(r) = &mut self.record {
                r.flipped = true;
            }
            let mut bytes = data.to_vec();
            let mid = bytes.len() / 2;
            bytes[mid] = !bytes[mid];
            Bytes::from(bytes)
        } else {
            data
        };
        self.received.update(&data);
        data
    }

    /// At the body's end: records it; `false` when the digest does not match.
    fn finish(&mut self) -> bool {
        let Some(mut record) = self.record.take() else {
            return true;
        };
        record.sent_md5 = encode(&std::mem::take(&mut self.sent).finalize());
        let received: [u8; 16] = std::mem::take(&mut self.received).finalize().into();
        let ok = self.expected.is_none_or(|e| e == received);
        record.bad_digest = !ok;
        self.digests.checked.lock().unwrap().push(record.clone());
        *self.verdict.lock().unwrap() = Some(record);
        ok
    }

    fn complete(&self) -> bool {
        self.declared.is_some_and(|n| self.seen >= n)
    }
}

impl Body for Inner {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => Frame::data(this.hashed.chunk(data)),
                    Err(other) => other,
                };
                // Judged with the last declared byte, so the error stops s3s-fs (and s3s's own
                // payload hash) before either accepts the body.
                if this.hashed.complete() && !this.hashed.finish() {
                    return Poll::Ready(Some(Err("BadDigest: Content-MD5 mismatch".into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                if !this.hashed.finish() {
                    return Poll::Ready(Some(Err("BadDigest: Content-MD5 mismatch".into())));
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.hashed.record.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
