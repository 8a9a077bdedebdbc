//! Git smart HTTP for every host emulator: `git http-backend` behind three axum routes, repository
//! fixtures served in place, and counters for assertions.
//!
//! Why its own module: each host (Bitbucket today, others and a plain-URL server later) puts its
//! own authentication, faults and listing in front, but the git half must be the same everywhere,
//! so that a clone that works against one emulator exercises the same protocol against another.
//! Why `git http-backend`: it is the real smart-HTTP server, so protocol v0/v1/v2, gzip request
//! bodies and chunked uploads behave as they do in production git servers; this module only
//! streams the CGI input and output both ways, never buffering more than one 64 KiB chunk (a
//! benchmark serves a 500 MiB pack).
//!
//! A host's flow for one request: [`routes`] hands it a [`GitRequest`]; it calls
//! [`GitHttp::begin`] (counts the request and keeps it "in flight" until the response body ends),
//! applies its faults and authentication, then [`GitHttp::serve`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::git::git_output;

/// Which smart-HTTP endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET …/info/refs?service=…`
    InfoRefs,
    /// `POST …/git-upload-pack` (fetch and clone).
    UploadPack,
    /// `POST …/git-receive-pack` (push).
    ReceivePack,
}

impl Endpoint {
    fn tail(self) -> &'static str {
        match self {
            Endpoint::InfoRefs => "info/refs",
            Endpoint::UploadPack => "git-upload-pack",
            Endpoint::ReceivePack => "git-receive-pack",
        }
    }
}

/// One git request as a host sees it: `/{owner}/{repo}/…`, `{repo}` with or without `.git`.
#[derive(Debug)]
pub struct GitRequest {
    pub owner: String,
    /// The repository's slug, `.git` stripped.
    pub slug: String,
    pub endpoint: Endpoint,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Option<Body>,
}

impl GitRequest {
    /// The `service=` of an `info/refs` request.
    pub fn service(&self) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.into_owned())
    }

    /// Whether this request reads (`git-upload-pack`, its ref advertisement included).
    pub fn is_fetch(&self) -> bool {
        match self.endpoint {
            Endpoint::InfoRefs => self.service().as_deref() == Some("git-upload-pack"),
            Endpoint::UploadPack => true,
            Endpoint::ReceivePack => false,
        }
    }

    /// Whether this request pushes (`git-receive-pack`, its ref advertisement included).
    pub fn is_push(&self) -> bool {
        match self.endpoint {
            Endpoint::InfoRefs => self.service().as_deref() == Some("git-receive-pack"),
            Endpoint::UploadPack => false,
            Endpoint::ReceivePack => true,
        }
    }

    /// `Authorization: Basic` user and password.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        basic_auth(&self.headers)
    }
}

/// `Authorization: Basic` user and password of any request.
pub fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The three smart-HTTP routes, each calling `handler(state, request)`. Merge them into the
/// host's router before `with_state`.
pub fn routes<S, H, F>(handler: H) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    H: Fn(S, GitRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let route = |endpoint: Endpoint| {
        let handler = handler.clone();
        move |State(s): State<S>,
              UrlPath((owner, repo)): UrlPath<(String, String)>,
              RawQuery(query): RawQuery,
              headers: HeaderMap,
              body: Body| {
            let slug = repo.strip_suffix(".git").unwrap_or(&repo).to_owned();
            let body = (endpoint != Endpoint::InfoRefs).then_some(body);
            handler(
                s,
                GitRequest {
                    owner,
                    slug,
                    endpoint,
                    query: query.unwrap_or_default(),
                    headers,
                    body,
                },
            )
        }
    };
    Router::new()
        .route("/{owner}/{repo}/info/refs", get(route(Endpoint::InfoRefs)))
        .route(
            "/{owner}/{repo}/git-upload-pack",
            post(route(Endpoint::UploadPack)),
        )
        .route(
            "/{owner}/{repo}/git-receive-pack",
            post(route(Endpoint::ReceivePack)),
        )
}

/// Counters, read with [`GitHttp::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitStats {
    /// Every git request, and those whose body came gzip-encoded.
    pub requests: u64,
    pub gzip_requests: u64,
    /// `POST git-upload-pack` requests, faulted or not: the negotiation that sends a pack (with
    /// protocol v0, which libgit2 speaks, a ref listing alone is only the `info/refs` GET).
    pub pack_requests: u64,
    /// 5xx the CGI answered, or 500s for a CGI that gave no answer.
    pub server_errors: u64,
    /// Most git requests in flight at once (a request ends when its body has been streamed).
    pub max_concurrent: u64,
    /// Most `POST git-upload-pack` requests in flight at once: repositories being cloned.
    pub max_concurrent_packs: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    gzip_requests: AtomicU64,
    pack_requests: AtomicU64,
    server_errors: AtomicU64,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
    packs_in_flight: AtomicU64,
    max_concurrent_packs: AtomicU64,
}

/// Adds one to a counter (every emulator's counters are plain atomics).
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

/// The git side of one emulator: `<root>/repos/<owner>/<slug>.git` served by `git http-backend`
/// with `<root>/home` as its `HOME`.
pub struct GitHttp {
    root: PathBuf,
    /// Announced to the CGI as `SERVER_SOFTWARE`.
    server_name: &'static str,
    counters: Arc<Counters>,
}

impl GitHttp {
    /// Creates `home/` and `repos/` under `root` (which the caller owns and deletes).
    pub fn new(root: &Path, server_name: &'static str) -> GitHttp {
        for dir in ["home", "repos"] {
            std::fs::create_dir_all(root.join(dir)).expect("git http dirs");
        }
        GitHttp {
            root: root.to_owned(),
            server_name,
            counters: Arc::default(),
        }
    }

    /// Where `<owner>/<slug>` lives on disk (a symlink for served fixtures).
    pub fn repo_path(&self, owner: &str, slug: &str) -> PathBuf {
        self.root
            .join("repos")
            .join(owner)
            .join(format!("{slug}.git"))
    }

    /// Serves `source` (a bare repository, in place through a symlink, so later changes to it
    /// are visible to clients) as `<owner>/<slug>`; replaces an earlier one. Returns `source`
    /// canonicalized.
    pub fn link_repo(&self, owner: &str, slug: &str, source: &Path) -> PathBuf {
        let source = source
            .canonicalize()
            .unwrap_or_else(|e| panic!("repository source {source:?}: {e}"));
        let link = self.repo_path(owner, slug);
        std::fs::create_dir_all(link.parent().expect("owner dir")).expect("owner dir");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&source, &link).expect("symlink repository");
        source
    }

    /// Stops serving `<owner>/<slug>` (the source repository stays).
    pub fn unlink_repo(&self, owner: &str, slug: &str) {
        let _ = std::fs::remove_file(self.repo_path(owner, slug));
    }

    /// A new empty bare repository at `<owner>/<slug>.git`, e.g. a push target.
    pub fn init_bare(&self, owner: &str, slug: &str) -> PathBuf {
        let path = self.repo_path(owner, slug);
        let dir = path.parent().expect("owner dir");
        std::fs::create_dir_all(dir).expect("owner dir");
        let out = git_output(
            dir,
            &[
                "init",
                "--quiet",
                "--bare",
                path.to_str().expect("UTF-8 path"),
            ],
        );
        assert!(
            out.status.success(),
            "git init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Counts `req` and keeps it in flight until the guard (handed to [`GitHttp::serve`], or
    /// dropped with an early answer) goes away.
    pub fn begin(&self, req: &GitRequest) -> InFlight {
        let c = &self.counters;
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_concurrent.fetch_max(now, Ordering::SeqCst);
        bump(&c.requests);
        let pack = req.endpoint == Endpoint::UploadPack;
        if pack {
            bump(&c.pack_requests);
            let now = c.packs_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_concurrent_packs.fetch_max(now, Ordering::SeqCst);
        }
        let gzip = req
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"gzip");
        if gzip {
            bump(&c.gzip_requests);
        }
        InFlight {
            counters: self.counters.clone(),
            pack,
        }
    }

    /// Runs `git http-backend` for an authorised request; a CGI that cannot answer becomes a
    /// counted 500 saying why.
    pub async fn serve(&self, req: GitRequest, guard: InFlight) -> Response {
        self.run_cgi(req, guard).await.unwrap_or_else(|message| {
            bump(&self.counters.server_errors);
            (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
        })
    }

    pub fn stats(&self) -> GitStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        GitStats {
            requests: get(&c.requests),
            gzip_requests: get(&c.gzip_requests),
            pack_requests: get(&c.pack_requests),
            server_errors: get(&c.server_errors),
            max_concurrent: get(&c.max_concurrent),
            max_concurrent_packs: get(&c.max_concurrent_packs),
        }
    }

    /// Streams the request body into the CGI and its output back out.
    async fn run_cgi(&self, req: GitRequest, guard: InFlight) -> Result<Response, String> {
        let home = self.root.join("home");
        let path_info = format!("/{}/{}.git/{}", req.owner, req.slug, req.endpoint.tail());
        let method = if req.body.is_some() { "POST" } else { "GET" };
        let user = req.basic_auth().map(|(user, _)| user).unwrap_or_default();
        let mut cmd = Command::new(git_program());
        cmd.arg("http-backend")
            // Only what the CGI needs: no user/system git config, no inherited GIT_* variables.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", self.root.join("repos"))
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("SERVER_SOFTWARE", self.server_name)
            .env("REMOTE_ADDR", "127.0.0.1")
            // http-backend refuses receive-pack without an authenticated user.
            .env(
                "REMOTE_USER",
                if user.is_empty() { "anonymous" } else { &user },
            )
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path_info)
            .env("QUERY_STRING", &req.query)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let header_env = [
            (header::CONTENT_TYPE, "CONTENT_TYPE"),
            // Absent for chunked uploads; http-backend then reads to EOF.
            (header::CONTENT_LENGTH, "CONTENT_LENGTH"),
            // http-backend inflates gzip bodies itself when told.
            (header::CONTENT_ENCODING, "HTTP_CONTENT_ENCODING"),
            // `version=2` switches upload-pack to protocol v2.
            (HeaderName::from_static("git-protocol"), "HTTP_GIT_PROTOCOL"),
        ];
        for (name, var) in header_env {
            if let Some(v) = req.headers.get(&name).and_then(|v| v.to_str().ok()) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn git http-backend: {e}\n"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let body = req.body;
        tokio::spawn(async move {
            if let Some(body) = body {
                let mut chunks = body.into_data_stream();
                while let Some(Ok(chunk)) = chunks.next().await {
                    if stdin.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            // Dropping stdin is the EOF http-backend waits for.
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        let mut out =
            BufReader::with_capacity(64 * 1024, child.stdout.take().expect("piped stdout"));
        let mut status = StatusCode::OK;
        let mut response_headers = HeaderMap::new();
        loop {
            let mut line = String::new();
            let n = out
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read CGI headers: {e}\n"))?;
            if n == 0 {
                let _ = child.wait().await;
                let err = stderr.await.unwrap_or_default();
                return Err(format!("git http-backend ended without a response: {err}"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("bad CGI header line {line:?}\n"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split(' ').next().unwrap_or_default();
                status = code
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("bad CGI status {value:?}\n"))?;
            } else if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response_headers.append(name, value);
            }
        }
        if status.is_server_error() {
            bump(&self.counters.server_errors);
        }
        let body = CgiBody {
            out,
            child,
            _guard: guard,
            done: false,
        };
        let stream = futures::stream::unfold(body, |mut b| async move {
            if b.done {
                return None;
            }
            let mut buf = BytesMut::with_capacity(64 * 1024);
            match b.out.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = b.child.wait().await;
                    None
                }
                Ok(_) => Some((Ok(buf.freeze()), b)),
                Err(e) => {
                    b.done = true;
                    Some((Err(e), b))
                }
            }
        });
        let mut resp = Response::new(Body::from_stream(stream));
        *resp.status_mut() = status;
        *resp.headers_mut() = response_headers;
        Ok(resp)
    }
}

/// A git request in flight, from [`GitHttp::begin`] until its response body is done.
pub struct InFlight {
    counters: Arc<Counters>,
    pack: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.pack {
            self.counters.packs_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// `git` as an absolute path, found once on `PATH`. A bare `git` together with the `PATH` the
/// CGI environment sets makes std fall back from `posix_spawn` to `fork`, which copies the page
/// tables of this (large, multi-threaded) test process for every request: measurable CPU in
/// the benchmark, where the emulator shares the machine with the contenders.
fn git_program() -> &'static Path {
    static GIT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    GIT.get_or_init(|| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("git"))
            .find(|candidate| {
                use std::os::unix::fs::PermissionsExt;
                candidate
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .unwrap_or_else(|| PathBuf::from("git"))
    })
}

/// The rest of a CGI response; owns the child so that a dropped connection kills it.
struct CgiBody {
    out: BufReader<ChildStdout>,
    child: Child,
    _guard: InFlight,
    done: bool,
}

/// HEAD's branch of a bare repository, or `None` when it has no refs (an empty repository).
pub fn head_branch(repo: &Path) -> Option<String> {
    let refs = git_output(repo, &["for-each-ref", "--count=1", "--format=%(refname)"]);
    if !refs.status.success() || refs.stdout.is_empty() {
        return None;
    }
    let head = git_output(repo, &["symbolic-ref", "--short", "-q", "HEAD"]);
    head.status
        .success()
        .then(|| String::from_utf8_lossy(&head.stdout).trim().to_owned())
}
