//! The wire side of the fault layer: which S3 operation a request is, S3's XML error answers,
//! and the socket tricks faults need (a reset instead of a clean close).

use std::os::fd::RawFd;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};

/// `SO_LINGER` 0: closing the socket sends RST instead of FIN, as a crashed peer's kernel does.
pub(super) fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the live socket of the connection this request arrived on; the option
    // value is a properly sized `linger`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// An S3-style XML error. The request body is read first: answering before the client has
/// sent it makes the client see a broken pipe instead of the status.
pub(super) async fn refuse(
    req: Request<Incoming>,
    status: StatusCode,
    code: &str,
    message: &str,
    bucket_region: Option<&str>,
) -> Response<s3s::Body> {
    let head = req.method() == Method::HEAD;
    drain(req.into_body()).await;
    error_response(status, code, message, bucket_region, head)
}

/// The answer S3 gives for an error: `<Error><Code>…</Code><Message>…</Message></Error>`, no
/// body for a HEAD.
pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    bucket_region: Option<&str>,
    head: bool,
) -> Response<s3s::Body> {
    let body = if head {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        )
    };
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/xml");
    if let Some(r) = bucket_region {
        resp = resp.header("x-amz-bucket-region", r);
    }
    resp.body(s3s::Body::from(body)).unwrap()
}

/// An injected `500 InternalError`, which the SDK retries.
pub(super) async fn internal_error(req: Request<Incoming>) -> Response<s3s::Body> {
    let msg = "We encountered an internal error. Please try again. (injected)";
    refuse(
        req,
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        msg,
        None,
    )
    .await
}

pub(super) async fn drain(body: Incoming) {
    use hyper::body::Body as _;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
}

/// The first header that asks for or carries a flexible checksum.
pub(super) fn checksum_header(headers: &hyper::HeaderMap) -> Option<String> {
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("x-amz-checksum-")
            || n == "x-amz-sdk-checksum-algorithm"
            || n == "x-amz-trailer"
        {
            return Some(n.to_string());
        }
        if n == "content-encoding" && value.to_str().is_ok_and(|v| v.contains("aws-chunked")) {
            return Some("content-encoding: aws-chunked".into());
        }
    }
    None
}

/// The S3 operation of a path-style request.
pub(super) fn operation(method: &Method, uri: &Uri) -> &'static str {
    let path = uri.path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, k)| !k.is_empty());
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .map(|p| p.split('=').next().unwrap_or(""))
        .collect();
    let q = |name: &str| query.contains(&name);
    match (method.as_str(), has_key) {
        ("PUT", true) if q("partNumber") && q("uploadId") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("PUT", false) => "CreateBucket",
        ("POST", true) if q("uploads") => "CreateMultipartUpload",
        ("POST", true) if q("uploadId") => "CompleteMultipartUpload",
        ("POST", false) if q("delete") => "DeleteObjects",
        ("DELETE", true) if q("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("DELETE", false) => "DeleteBucket",
        ("GET", false) if q("uploads") => "ListMultipartUploads",
        ("GET", false) if q("object-lock") => "GetObjectLockConfiguration",
        ("GET", false) if q("list-type") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("GET", true) if q("uploadId") => "ListParts",
        ("GET", true) => "GetObject",
        ("HEAD", false) => "HeadBucket",
        ("HEAD", true) => "HeadObject",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_recognised_from_path_style_requests() {
        let op = |m: Method, u: &str| operation(&m, &u.parse::<Uri>().unwrap());
        assert_eq!(
            op(Method::PUT, "/b/k/x.bundle?partNumber=2&uploadId=u"),
            "UploadPart"
        );
        assert_eq!(op(Method::PUT, "/b/k/x.bundle"), "PutObject");
        assert_eq!(op(Method::POST, "/b/k?uploads"), "CreateMultipartUpload");
        assert_eq!(
            op(Method::POST, "/b/k?uploadId=u"),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            op(Method::DELETE, "/b/k?uploadId=u"),
            "AbortMultipartUpload"
        );
        assert_eq!(
            op(Method::GET, "/b?uploads&prefix=x"),
            "ListMultipartUploads"
        );
        assert_eq!(op(Method::GET, "/b?list-type=2&prefix=x"), "ListObjectsV2");
        assert_eq!(
            op(Method::GET, "/b?object-lock"),
            "GetObjectLockConfiguration"
        );
        assert_eq!(op(Method::HEAD, "/b"), "HeadBucket");
        assert_eq!(op(Method::HEAD, "/b/"), "HeadBucket");
        assert_eq!(op(Method::HEAD, "/b/k"), "HeadObject");
        assert_eq!(op(Method::GET, "/b/k?x-id=GetObject"), "GetObject");
    }
}
