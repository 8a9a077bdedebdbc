//! The HTTP layer in front of s3s-fs: it acts like the S3-compatible stores that broke on the
//! SDK's defaults, injects faults, and counts what it sees.
//!
//! - *strict* (on by default): any `x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm`,
//!   `x-amz-trailer` header or `Content-Encoding: aws-chunked` gets `501 NotImplemented`, as
//!   R2 and B2 answered in 2025. A test passing against it proves we send checksums only where
//!   S3 requires them;
//! - failing UploadParts with 500 (every one from the n-th on, or only the n-th), slowing them
//!   down, failing DeleteObjects requests from the n-th on, answering everything with 403 or
//!   with a wrong-region 301;
//! - counting requests per operation (copies apart from uploads, run-lock requests apart as
//!   `LockObject`) and UploadParts in flight, and recording every request's headers per
//!   operation;
//! - conditional writes (`If-None-Match`, `If-Match`): s3s-fs honours both but checks and
//!   writes in two steps, so the layer runs them one at a time, which makes them atomic as on
//!   AWS (412 PreconditionFailed for the loser);
//! - every PutObject and UploadPart body checked against its `Content-MD5` as S3 checks it,
//!   and bodies damaged in flight on demand (`digest.rs`).
//!
//! Which operation a request is and S3's error answers are `wire.rs`'s.
//!
//! The test's own requests (the helper access key) pass through untouched, so they neither
//! count nor trip faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use s3s::service::S3Service;

use super::digest::{self, Digests, Forward};
use super::wire::{checksum_header, internal_error, operation, refuse, reset_on_close};
use super::{HELPER_ACCESS_KEY, TestS3};

impl TestS3 {
    pub(super) fn faults(&self) -> &Faults {
        &self
            .local
            .as_ref()
            .expect(
                "fault injection needs the in-process S3 server; check can_inject_faults() first",
            )
            .faults
    }

    /// From now on, the `nth` UploadPart (1-based) and every later one answers 500, so the
    /// SDK's retries fail too. Until [`Self::clear_faults`].
    pub fn fail_upload_part(&self, nth: usize) {
        let f = self.faults();
        f.fail_parts_from.store(
            f.parts_seen.load(Ordering::SeqCst) + nth.max(1),
            Ordering::SeqCst,
        );
    }

    /// Only the `nth` UploadPart from now on answers 500; a retry of it succeeds.
    pub fn fail_upload_part_once(&self, nth: usize) {
        let f = self.faults();
        f.fail_part_once.store(
            f.parts_seen.load(Ordering::SeqCst) + nth.max(1),
            Ordering::SeqCst,
        );
    }

    /// Every UploadPart waits this long before the server reads it.
    pub fn slow_upload_parts(&self, delay: Duration) {
        self.faults()
            .part_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request for `op` (`"PutObject"`, `"UploadPart"`, …) is read up to its headers and
    /// then never answered: a server that stops answering. Until [`Self::clear_faults`].
    pub fn hang(&self, op: &'static str) {
        *self.faults().hang.lock().unwrap() = Some(op);
    }

    /// The next `times` requests for `op` answer `503 SlowDown` (S3's throttling answer, which
    /// the SDK backs off and retries).
    pub fn slow_down(&self, op: &'static str, times: usize) {
        self.script(op, Scripted::SlowDown, times);
    }

    /// The next `times` requests for `op` are read up to their headers and then the connection
    /// is reset (RST, no answer): a load balancer or a crashing server hanging up.
    pub fn reset_connections(&self, op: &'static str, times: usize) {
        self.script(op, Scripted::Reset, times);
    }

    fn script(&self, op: &'static str, fault: Scripted, times: usize) {
        let mut s = self.faults().scripted.lock().unwrap();
        s.entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// A server restart: every connection is cut (requests in flight get no answer), the port
    /// refuses connections for `down`, then the same service (same on-disk root, open
    /// multipart uploads included, as s3s-fs keeps them on disk) listens on the same address.
    pub async fn restart(&self, down: Duration) {
        let local = self
            .local
            .as_ref()
            .expect("a restart needs the in-process S3 server");
        local.server.lock().unwrap().abort();
        tokio::time::sleep(down).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(local.addr).expect("rebinding the S3 port");
        let listener = socket.listen(1024).unwrap();
        let serving = tokio::spawn(serve(listener, local.faults.clone(), local.service.clone()));
        *local.server.lock().unwrap() = serving;
        local.faults.restarts.fetch_add(1, Ordering::SeqCst);
    }

    /// How often [`Self::restart`] ran.
    pub fn restarts(&self) -> usize {
        self.faults().restarts.load(Ordering::SeqCst)
    }

    /// Scripted faults served so far, as `"<op>: <fault>"`.
    pub fn scripted_served(&self) -> Vec<String> {
        self.faults().served.lock().unwrap().clone()
    }

    /// Every GetObject of a `.bundle` key waits this long before it is answered (manifests
    /// are not delayed): a slow download to interrupt.
    pub fn slow_bundle_downloads(&self, delay: Duration) {
        self.faults()
            .bundle_get_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on, the `nth` DeleteObjects request (1-based) and every later one answers 500,
    /// so the SDK's retries fail too. Until [`Self::clear_faults`].
    pub fn fail_delete_objects(&self, nth: usize) {
        let f = self.faults();
        f.fail_deletes_from.store(
            f.deletes_seen.load(Ordering::SeqCst) + nth.max(1),
            Ordering::SeqCst,
        );
    }

    /// From now on every PutObject of a `.bundle` key succeeds but leaves half the object
    /// stored (a store that loses data after acknowledging it). Until [`Self::clear_faults`].
    pub fn truncate_bundle_puts(&self) {
        let local = self
            .local
            .as_ref()
            .expect("fault injection needs the in-process S3 server");
        *local.faults.truncate_bundles.lock().unwrap() = Some(local.root.join(&self.bucket));
    }

    /// Every request answers 403 AccessDenied.
    pub fn deny_all(&self, on: bool) {
        self.faults().deny_all.store(on, Ordering::SeqCst);
    }

    /// Every request answers 301 with `x-amz-bucket-region: <region>`.
    pub fn wrong_region(&self, bucket_region: Option<&str>) {
        *self.faults().wrong_region.lock().unwrap() = bucket_region.map(str::to_owned);
    }

    pub fn set_strict(&self, on: bool) {
        self.faults().strict.store(on, Ordering::SeqCst);
    }

    pub fn clear_faults(&self) {
        let f = self.faults();
        f.deny_all.store(false, Ordering::SeqCst);
        f.fail_parts_from.store(0, Ordering::SeqCst);
        f.fail_part_once.store(0, Ordering::SeqCst);
        f.fail_deletes_from.store(0, Ordering::SeqCst);
        f.part_delay_ms.store(0, Ordering::SeqCst);
        f.bundle_get_delay_ms.store(0, Ordering::SeqCst);
        *f.wrong_region.lock().unwrap() = None;
        *f.hang.lock().unwrap() = None;
        f.scripted.lock().unwrap().clear();
        *f.truncate_bundles.lock().unwrap() = None;
        f.digests.clear_flips();
    }

    /// Requests seen for `op` (`"UploadPart"`, `"PutObject"`, …), faulted ones included.
    pub fn requests(&self, op: &str) -> usize {
        self.faults()
            .counts
            .lock()
            .unwrap()
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    /// The most UploadParts the server saw at once.
    pub fn max_parts_in_flight(&self) -> usize {
        self.faults().max_parts_in_flight.load(Ordering::SeqCst)
    }

    /// The headers of every request for `op` (`"PutObject"`, `"CopyObject"`, …) so far, in
    /// order, faulted ones included.
    pub fn headers(&self, op: &str) -> Vec<hyper::HeaderMap> {
        self.faults()
            .headers
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Every operation seen with its headers, in order.
    pub fn all_headers(&self) -> Vec<(&'static str, hyper::HeaderMap)> {
        self.faults().headers.lock().unwrap().clone()
    }

    /// Forgets the recorded headers, request counts and checked uploads.
    pub fn clear_recorded(&self) {
        let f = self.faults();
        f.headers.lock().unwrap().clear();
        f.counts.lock().unwrap().clear();
        f.digests.clear_recorded();
    }

    /// What strict mode refused, as `"<op>: <header>"`.
    pub fn checksum_rejections(&self) -> Vec<String> {
        self.faults().rejected.lock().unwrap().clone()
    }
}

#[derive(Default)]
pub(super) struct Faults {
    strict: AtomicBool,
    deny_all: AtomicBool,
    wrong_region: Mutex<Option<String>>,
    /// The operation whose requests are never answered.
    hang: Mutex<Option<&'static str>>,
    /// One-shot faults per operation, served in order ([`TestS3::slow_down`], …).
    scripted: Mutex<HashMap<&'static str, VecDeque<Scripted>>>,
    served: Mutex<Vec<String>>,
    restarts: AtomicUsize,
    /// UploadParts seen so far; the fail markers are absolute positions in this count (0 = off).
    parts_seen: AtomicUsize,
    fail_parts_from: AtomicUsize,
    fail_part_once: AtomicUsize,
    /// DeleteObjects requests seen so far, and the first to fail (0 = off).
    deletes_seen: AtomicUsize,
    fail_deletes_from: AtomicUsize,
    part_delay_ms: AtomicU64,
    /// Delay before a GetObject of a `.bundle` key is answered.
    bundle_get_delay_ms: AtomicU64,
    parts_in_flight: AtomicUsize,
    max_parts_in_flight: AtomicUsize,
    counts: Mutex<BTreeMap<&'static str, usize>>,
    headers: Mutex<Vec<(&'static str, hyper::HeaderMap)>>,
    rejected: Mutex<Vec<String>>,
    /// With the bucket's directory: every PutObject of a bundle is acknowledged and then cut
    /// to half its size on disk.
    truncate_bundles: Mutex<Option<PathBuf>>,
    /// Held across every conditional write (see [`handle`]).
    conditional: tokio::sync::Mutex<()>,
    /// Content-MD5 checks and damaged bodies (`digest.rs`).
    pub(super) digests: Arc<Digests>,
}

impl Faults {
    /// Strict checksum checking on, no faults.
    pub(super) fn strict() -> Self {
        let f = Faults::default();
        f.strict.store(true, Ordering::Relaxed);
        f
    }
}

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    faults: Arc<Faults>,
    service: S3Service,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (faults, service) = (faults.clone(), service.clone());
        let fd = stream.as_raw_fd();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                handle(faults.clone(), service.clone(), req, fd)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

type HttpResult = Result<Response<s3s::Body>, s3s::HttpError>;

/// `fd` is the connection's socket, valid while hyper serves the connection.
async fn handle(
    faults: Arc<Faults>,
    service: S3Service,
    req: Request<Incoming>,
    fd: RawFd,
) -> HttpResult {
    let is_helper = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(&format!("Credential={HELPER_ACCESS_KEY}/")));
    if is_helper {
        return service.call(req.map(s3s::Body::from)).await;
    }
    // A copy is a PUT like the upload it mirrors; only its header tells them apart.
    let op = match (
        operation(req.method(), req.uri()),
        req.headers().contains_key("x-amz-copy-source"),
    ) {
        ("PutObject", true) => "CopyObject",
        ("UploadPart", true) => "UploadPartCopy",
        // The run lock's small requests (and its probe), apart from the backup's own.
        (op, _) if req.uri().path().contains("/.lock-") && op.ends_with("Object") => "LockObject",
        (op, _) => op,
    };
    *faults.counts.lock().unwrap().entry(op).or_default() += 1;
    faults
        .headers
        .lock()
        .unwrap()
        .push((op, req.headers().clone()));

    if *faults.hang.lock().unwrap() == Some(op) {
        std::future::pending::<()>().await;
    }
    let scripted = (faults.scripted.lock().unwrap())
        .get_mut(op)
        .and_then(VecDeque::pop_front);
    if let Some(fault) = scripted {
        faults
            .served
            .lock()
            .unwrap()
            .push(format!("{op}: {fault:?}"));
        match fault {
            Scripted::SlowDown => {
                let msg = "Please reduce your request rate.";
                return Ok(
                    refuse(req, StatusCode::SERVICE_UNAVAILABLE, "SlowDown", msg, None).await,
                );
            }
            Scripted::Reset => {
                reset_on_close(fd);
                // An error from the service makes hyper drop the connection unanswered.
                return Err(s3s::HttpError::new("injected connection reset".into()));
            }
        }
    }
    if faults.deny_all.load(Ordering::SeqCst) {
        return Ok(refuse(
            req,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied",
            None,
        )
        .await);
    }
    let region = faults.wrong_region.lock().unwrap().clone();
    if let Some(region) = region {
        let msg = "The bucket you are attempting to access must be addressed using the specified endpoint.";
        return Ok(refuse(
            req,
            StatusCode::MOVED_PERMANENTLY,
            "PermanentRedirect",
            msg,
            Some(&region),
        )
        .await);
    }
    if faults.strict.load(Ordering::SeqCst)
        && let Some(header) = checksum_header(req.headers())
    {
        faults
            .rejected
            .lock()
            .unwrap()
            .push(format!("{op}: {header}"));
        let msg = format!("Header '{header}' with value '…' not implemented");
        return Ok(refuse(
            req,
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            &msg,
            None,
        )
        .await);
    }
    let delay = faults.bundle_get_delay_ms.load(Ordering::SeqCst);
    if op == "GetObject" && delay > 0 && req.uri().path().ends_with(".bundle") {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if op == "DeleteObjects" {
        let n = faults.deletes_seen.fetch_add(1, Ordering::SeqCst) + 1;
        let from = faults.fail_deletes_from.load(Ordering::SeqCst);
        if from != 0 && n >= from {
            return Ok(internal_error(req).await);
        }
    }
    // s3s-fs checks `If-None-Match` / `If-Match` and then writes, so two concurrent
    // conditional writes can both pass the check. S3 evaluates the precondition atomically
    // (one wins, the other gets 412 PreconditionFailed): serialising them here gives s3s-fs
    // that semantics without changing its answers.
    let conditional = matches!(
        operation(req.method(), req.uri()),
        "PutObject" | "CompleteMultipartUpload"
    ) && (req.headers().contains_key(hyper::header::IF_NONE_MATCH)
        || req.headers().contains_key(hyper::header::IF_MATCH));
    if conditional {
        let _one_at_a_time = faults.conditional.lock().await;
        return forward(&faults, &service, op, req).await;
    }
    let truncate = faults.truncate_bundles.lock().unwrap().clone();
    if let Some(bucket_dir) = truncate
        && op == "PutObject"
        && req.uri().path().ends_with(".bundle")
    {
        // The store acknowledges the write and keeps a shorter object, as a broken backend
        // or a full disk behind a gateway might.
        let path = req.uri().path().trim_start_matches('/').to_string();
        let resp = forward(&faults, &service, op, req).await;
        if let Some(key) = path.split_once('/').map(|(_, k)| k) {
            let file = bucket_dir.join(key);
            if let Ok(bytes) = std::fs::read(&file) {
                let _ = std::fs::write(&file, &bytes[..bytes.len() / 2]);
            }
        }
        return resp;
    }
    if op != "UploadPart" {
        return forward(&faults, &service, op, req).await;
    }

    let n = faults.parts_seen.fetch_add(1, Ordering::SeqCst) + 1;
    let from = faults.fail_parts_from.load(Ordering::SeqCst);
    if (from != 0 && n >= from) || faults.fail_part_once.load(Ordering::SeqCst) == n {
        return Ok(internal_error(req).await);
    }
    let now = faults.parts_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    faults.max_parts_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(&faults.parts_in_flight);
    let delay = faults.part_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    forward(&faults, &service, op, req).await
}

/// Hands the request to s3s-fs, a PutObject's or UploadPart's body through the digest check
/// (`digest.rs`): a body that arrived damaged is answered `400 BadDigest`, with nothing stored.
async fn forward(
    faults: &Arc<Faults>,
    service: &S3Service,
    op: &'static str,
    req: Request<Incoming>,
) -> HttpResult {
    let upload = matches!(
        operation(req.method(), req.uri()),
        "PutObject" | "UploadPart"
    ) && !req.headers().contains_key("x-amz-copy-source");
    match digest::check(&faults.digests, op, upload, req).await {
        Forward::Plain(req) => service.call(req).await,
        Forward::Answered(resp) => Ok(resp),
        Forward::Hashed(req, verdict) => {
            let resp = service.call(req).await;
            match &*verdict.lock().unwrap() {
                Some(v) if v.bad_digest => Ok(digest::bad_digest()),
                _ => resp,
            }
        }
    }
}

/// A one-shot fault for one request of an operation.
#[derive(Debug, Clone, Copy)]
enum Scripted {
    SlowDown,
    Reset,
}

/// Counts down when the request ends, also if the client hangs up mid-way.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
