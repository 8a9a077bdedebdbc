//! Request bodies for uploads: a byte range of a [`Source`], which the SDK can size and, on a
//! retry, rebuild from the start without anything buffered in memory.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::{ByteStream, Length, SdkBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::store::{Source, StoreError};

/// The `len` bytes at `offset` of `source`: a plain file body when they lie in the file, the
/// in-memory head followed by the file range when they start in the head.
pub(super) async fn source_body(
    source: &Source,
    offset: u64,
    len: u64,
) -> Result<ByteStream, StoreError> {
    let (head, file_offset, file_len) = source.slice(offset, len);
    if head.is_empty() {
        return file_body(&source.path, file_offset, file_len).await;
    }
    if file_len == 0 {
        return Ok(ByteStream::from(head));
    }
    let rest = file_body(&source.path, file_offset, file_len)
        .await?
        .into_inner();
    // Checked here rather than per attempt: a path body is rebuilt by re-opening the file.
    if rest.try_clone().is_none() {
        return Err(StoreError::Io {
            context: "cannot re-read",
            path: source.path.display().to_string(),
            source: std::io::Error::other("the file body cannot be replayed"),
        });
    }
    let total = head.len() as u64 + file_len;
    Ok(ByteStream::new(SdkBody::retryable(move || {
        SdkBody::from_body_1_x(Prefixed {
            head: Some(head.clone()),
            rest: rest.try_clone().expect("checked above: path bodies replay"),
            remaining: total,
        })
    })))
}

/// A retryable, size-hinted body: the SDK re-opens the file at `offset` on every attempt.
pub(super) async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<ByteStream, StoreError> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| {
            // The SDK's own wording ("`Length::Exact` was larger than …") means nothing to a user.
            let source = match std::fs::metadata(path) {
                Ok(m) if m.len() < offset + len => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended after {} of the expected {} bytes",
                        m.len(),
                        offset + len
                    ),
                ),
                _ => std::io::Error::other(e),
            };
            StoreError::Io {
                context: "cannot read",
                path: path.display().to_string(),
                source,
            }
        })
}

/// `head`, then everything `rest` yields; sized, so the request carries a Content-Length.
struct Prefixed {
    head: Option<Bytes>,
    rest: SdkBody,
    remaining: u64,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            self.remaining -= head.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        let polled = Pin::new(&mut self.rest).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.remaining = self.remaining.saturating_sub(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
