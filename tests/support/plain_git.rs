//! A plain git server for `--provider urls`: no API, only real smart HTTP through
//! [`super::git_http`] (`git http-backend`), as gitolite, cgit or a bare `git http-backend`
//! behind a web server serve it. A repository may require HTTP Basic with one user and password
//! (401 with `WWW-Authenticate` otherwise, which is what makes libgit2 ask for credentials);
//! every Basic credential received is recorded, so a test can prove where a password went.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tempfile::TempDir;

use super::git_http::{self, GitHttp, GitRequest, GitStats};

type Key = (String, String);

#[derive(Default)]
struct Access {
    /// `(owner, slug)` → the one `(user, password)` it accepts.
    required: BTreeMap<Key, (String, String)>,
    /// Every Basic `(user, password)` any request carried, in order.
    seen: Vec<(String, String)>,
}

#[derive(Clone)]
struct Shared {
    git: Arc<GitHttp>,
    access: Arc<Mutex<Access>>,
}

/// The server, on `host` (`127.0.0.1` or `localhost`) and a free port, served by the test's
/// runtime until dropped.
pub struct PlainGit {
    base: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
    _root: TempDir,
}

impl PlainGit {
    pub async fn start(host: &str) -> PlainGit {
        let root = tempfile::Builder::new()
            .prefix("plain-git-")
            .tempdir()
            .expect("plain git root");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Shared {
            git: Arc::new(GitHttp::new(root.path(), "plain-git")),
            access: Arc::default(),
        };
        let app = git_http::routes(serve).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("plain git server");
        });
        PlainGit {
            base: format!("http://{host}:{port}"),
            shared,
            task,
            _root: root,
        }
    }

    /// Serves the bare repository `source` as `<owner>/<slug>.git`; its clone URL.
    pub fn serve(&self, owner: &str, slug: &str, source: &Path) -> String {
        self.shared.git.link_repo(owner, slug, source);
        format!("{}/{owner}/{slug}.git", self.base)
    }

    /// From now on `<owner>/<slug>` answers only Basic `user:password`.
    pub fn require(&self, owner: &str, slug: &str, user: &str, password: &str) {
        self.shared
            .access
            .lock()
            .unwrap()
            .required
            .insert((owner.into(), slug.into()), (user.into(), password.into()));
    }

    /// Every Basic credential received so far.
    pub fn credentials_seen(&self) -> Vec<(String, String)> {
        self.shared.access.lock().unwrap().seen.clone()
    }

    pub fn stats(&self) -> GitStats {
        self.shared.git.stats()
    }
}

impl Drop for PlainGit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(s: Shared, req: GitRequest) -> Response {
    let guard = s.git.begin(&req);
    let sent = req.basic_auth();
    let required = {
        let mut access = s.access.lock().unwrap();
        if let Some(c) = &sent {
            access.seen.push(c.clone());
        }
        access
            .required
            .get(&(req.owner.clone(), req.slug.clone()))
            .cloned()
    };
    if let Some(want) = required
        && sent.as_ref() != Some(&want)
    {
        let mut resp = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"git\""),
        );
        return resp;
    }
    if !req.is_fetch() {
        return (StatusCode::FORBIDDEN, "read-only\n").into_response();
    }
    s.git.serve(req, guard).await
}
