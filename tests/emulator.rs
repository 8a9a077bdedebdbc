//! The Bitbucket emulator's own behaviour, checked with reqwest and the git CLI, so that the
//! product's tests can trust it: token grants and errors, pagination, auth failures, scripted
//! faults, and clones through `git http-backend`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::bitbucket::{
    ConsumerOpts, Emulator, Fault, INVALID_CLIENT, PUBLIC_CONSUMER, RATE_LIMIT_BODY, RepoOpts,
    Route, TOKEN_EXPIRED, TOKEN_INVALID,
};
use crate::support::git::{empty_repo, git, git_output, rich_repo, show_refs, simple_repo};

const KEY: &str = "emu-key";
const SECRET: &str = "emu-secret";

fn client() -> reqwest::Client {
    // No proxy: the machine's proxy settings must not swallow loopback requests.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn emulator(opts: ConsumerOpts) -> Emulator {
    let emu = Emulator::start().await;
    emu.add_consumer(KEY, SECRET, opts);
    emu
}

async fn grant(
    emu: &Emulator,
    key: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let resp = client()
        .post(emu.token_url())
        .basic_auth(key, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn access_token(emu: &Emulator) -> String {
    let (status, body) = grant(emu, KEY, SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn get_json(url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let resp = get(url, token).await;
    (resp.status(), resp.json().await.unwrap())
}

fn api_error(message: &str) -> Value {
    json!({"type": "error", "error": {"message": message}})
}

/// Adds `n` repositories `repo-000`… to `workspace`, all served from one small bare repository.
fn add_many(emu: &Emulator, fixtures: &Path, workspace: &str, n: usize) {
    let source = simple_repo(fixtures, &format!("{workspace}-source"), "main");
    for i in 0..n {
        let opts = RepoOpts {
            // Explicit, so adding hundreds of repositories runs no git commands.
            mainbranch: Some("main".into()),
            ..RepoOpts::default()
        };
        emu.add_repo(workspace, &format!("repo-{i:03}"), &source, opts);
    }
}

fn basic_header(user: &str, password: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {creds}")
}

#[tokio::test]
async fn token_grants_answer_like_bitbucket() {
    let emu = emulator(ConsumerOpts::default()).await;
    let (status, body) = grant(&emu, KEY, SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK);
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["access_token", "scope", "expires_in", "token_type", "state",]),
        "since 2026-05-04: `scope`, and no refresh token"
    );
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["state"], "client_credentials");
    assert_eq!(body["scope"], "repository");
    let first = body["access_token"].as_str().unwrap().to_owned();

    let (status, renewed) = grant(&emu, KEY, SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_ne!(renewed["access_token"], first.as_str());
    let url = format!("{}/repositories/acme", emu.api_url());
    emu.add_workspace("acme");
    assert_eq!(
        get(&url, renewed["access_token"].as_str()).await.status(),
        StatusCode::OK
    );

    let stats = emu.stats();
    assert_eq!(
        (
            stats.token_requests,
            stats.token_client_credentials,
            stats.token_refresh
        ),
        (2, 2, 0)
    );
    assert_eq!(stats.tokens_issued, 2);
}

#[tokio::test]
async fn token_errors_are_bitbucket_verbatim() {
    let emu = emulator(ConsumerOpts::default()).await;
    emu.add_consumer(
        "public",
        "s",
        ConsumerOpts {
            public: true,
            ..ConsumerOpts::default()
        },
    );
    emu.add_consumer(
        "nocallback",
        "s",
        ConsumerOpts {
            authorised: false,
            ..ConsumerOpts::default()
        },
    );
    let cc = [("grant_type", "client_credentials")];
    let invalid = json!({"error_description": INVALID_CLIENT, "error": "unauthorized_client"});

    assert_eq!(
        grant(&emu, KEY, "wrong", &cc).await,
        (StatusCode::BAD_REQUEST, invalid.clone())
    );
    assert_eq!(
        grant(&emu, "nobody", SECRET, &cc).await,
        (StatusCode::BAD_REQUEST, invalid)
    );
    assert_eq!(
        grant(&emu, "public", "s", &cc).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error_description": PUBLIC_CONSUMER, "error": "invalid_grant"})
        )
    );
    assert!(
        PUBLIC_CONSUMER
            .starts_with(r#"Cannot use client_credentials with a consumer marked as "public""#)
    );
    let (status, body) = grant(&emu, "nocallback", "s", &cc).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = grant(&emu, KEY, SECRET, &[]).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error_description": "Unsupported grant type: None", "error": "invalid_grant"})
        )
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "made-up"),
    ];
    let (status, body) = grant(&emu, KEY, SECRET, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Client credentials in the form instead of Basic auth are refused.
    let resp = client()
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", KEY),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(emu.stats().tokens_issued, 0);
}

#[tokio::test]
async fn listing_pages_like_bitbucket() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    add_many(&emu, fixtures.path(), "big", 205);
    let token = access_token(&emu).await;
    let base = format!("{}/repositories/big", emu.api_url());

    // Follow `next` verbatim, as clients must.
    let mut url = Some(format!("{base}?pagelen=100"));
    let mut pages = Vec::new();
    let mut slugs = Vec::new();
    while let Some(u) = url.take() {
        let (status, page) = get_json(&u, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            (page["pagelen"].as_u64(), page["size"].as_u64()),
            (Some(100), Some(205))
        );
        slugs.extend(
            page["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["slug"].as_str().unwrap().to_owned()),
        );
        url = page["next"].as_str().map(str::to_owned);
        pages.push(page);
    }
    let expected: Vec<String> = (0..205).map(|i| format!("repo-{i:03}")).collect();
    assert_eq!(slugs, expected, "every repository exactly once, in order");
    let lens: Vec<usize> = pages
        .iter()
        .map(|p| p["values"].as_array().unwrap().len())
        .collect();
    assert_eq!(lens, [100, 100, 5]);
    assert_eq!(pages[0]["next"], format!("{base}?pagelen=100&page=2"));
    assert_eq!(pages[0].get("previous"), None);
    assert_eq!(pages[1]["previous"], format!("{base}?pagelen=100&page=1"));
    assert_eq!(pages[2]["page"], 3);
    assert_eq!(pages[2].get("next"), None);
    assert_eq!(emu.stats().list_requests, 3);

    // Defaults: 10 per page, and a `next` that only carries `page`.
    let (_, page) = get_json(&base, Some(&token)).await;
    assert_eq!(
        (
            page["pagelen"].as_u64(),
            page["values"].as_array().unwrap().len()
        ),
        (Some(10), 10)
    );
    assert_eq!(page["next"], format!("{base}?page=2"));
    let (_, last) = get_json(&format!("{base}?page=21"), Some(&token)).await;
    assert_eq!(
        (last["values"].as_array().unwrap().len(), last.get("next")),
        (5, None)
    );

    for (query, message) in [
        ("page=22", "Invalid page"),
        ("page=0", "Invalid page"),
        ("pagelen=101", "Invalid pagelen"),
        ("pagelen=0", "Invalid pagelen"),
        ("pagelen=ten", "Invalid pagelen"),
    ] {
        let (status, body) = get_json(&format!("{base}?{query}"), Some(&token)).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, api_error(message)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn repository_fields_match_bitbucket() {
    let emu = emulator(ConsumerOpts {
        username: "alice".into(),
        ..ConsumerOpts::default()
    })
    .await;
    let fixtures = tempfile::tempdir().unwrap();
    let api = simple_repo(fixtures.path(), "api", "develop");
    emu.add_repo(
        "acme",
        "api",
        &api,
        RepoOpts {
            language: "rust".into(),
            ..RepoOpts::default()
        },
    );
    emu.add_repo(
        "acme",
        "void",
        &empty_repo(fixtures.path(), "void"),
        RepoOpts::default(),
    );
    let hg = RepoOpts {
        scm: "hg".into(),
        is_private: false,
        ..RepoOpts::default()
    };
    emu.add_repo("acme", "legacy", Path::new("/nonexistent"), hg);
    let token = access_token(&emu).await;
    let (status, page) = get_json(
        &format!("{}/repositories/acme?pagelen=100", emu.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let values = page["values"].as_array().unwrap();
    let (repo, void, legacy) = (&values[0], &values[1], &values[2]);

    let authority = emu.base_url().trim_start_matches("http://").to_owned();
    assert_eq!(repo["type"], "repository");
    assert_eq!(
        (
            repo["full_name"].as_str(),
            repo["slug"].as_str(),
            repo["name"].as_str()
        ),
        (Some("acme/api"), Some("api"), Some("api"))
    );
    let uuid = repo["uuid"].as_str().unwrap();
    assert!(
        uuid.len() == 38 && uuid.starts_with('{') && uuid.ends_with('}'),
        "{uuid}"
    );
    assert_eq!(
        (repo["scm"].as_str(), repo["is_private"].as_bool()),
        (Some("git"), Some(true))
    );
    assert!(repo["size"].as_u64().unwrap() > 0);
    assert_eq!(repo["language"], "rust");
    for field in ["created_on", "updated_on"] {
        let ts = repo[field].as_str().unwrap();
        // 2019-03-08T12:35:03.023481+00:00
        assert_eq!(
            (ts.len(), &ts[10..11], &ts[19..20], &ts[26..]),
            (32, "T", ".", "+00:00"),
            "{ts}"
        );
    }
    assert_eq!(
        repo["mainbranch"],
        json!({"type": "branch", "name": "develop"})
    );
    assert_eq!(repo["workspace"]["slug"], "acme");
    assert_eq!(repo["workspace"]["type"], "workspace");
    assert_eq!(repo["project"]["type"], "project");
    assert_eq!(
        repo["links"]["clone"],
        json!([
            {"name": "https", "href": format!("http://alice@{authority}/acme/api.git")},
            {"name": "ssh", "href": "git@127.0.0.1:acme/api.git"},
        ])
    );
    assert_eq!(
        repo["links"]["self"]["href"],
        format!("{}/repositories/acme/api", emu.api_url())
    );
    assert_eq!(
        repo["links"]["html"]["href"],
        format!("{}/acme/api", emu.base_url())
    );
    assert_eq!(void["mainbranch"], Value::Null);
    assert_eq!(
        (legacy["scm"].as_str(), legacy["is_private"].as_bool()),
        (Some("hg"), Some(false))
    );

    // The workspace's `{uuid}` works wherever its slug does.
    let ws_uuid = repo["workspace"]["uuid"].as_str().unwrap();
    let (status, by_uuid) = get_json(
        &format!(
            "{}/repositories/{}",
            emu.api_url(),
            ws_uuid.replace('{', "%7B").replace('}', "%7D")
        ),
        Some(&token),
    )
    .await;
    assert_eq!(
        (status, by_uuid["size"].as_u64()),
        (StatusCode::OK, Some(3))
    );
}

#[tokio::test]
async fn listing_refuses_missing_unknown_and_expired_tokens() {
    let emu = emulator(ConsumerOpts::default()).await;
    emu.add_consumer(
        "short",
        "s",
        ConsumerOpts {
            token_ttl: Duration::from_secs(1),
            ..ConsumerOpts::default()
        },
    );
    emu.add_workspace("acme");
    let url = format!("{}/repositories/acme", emu.api_url());

    assert_eq!(get(&url, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_json(&url, Some("not-a-token")).await,
        (StatusCode::UNAUTHORIZED, api_error(TOKEN_INVALID))
    );
    let token = access_token(&emu).await;
    assert_eq!(get(&url, Some(&token)).await.status(), StatusCode::OK);
    emu.expire_tokens();
    assert_eq!(
        get_json(&url, Some(&token)).await,
        (StatusCode::UNAUTHORIZED, api_error(TOKEN_EXPIRED))
    );
    // A fresh grant works again.
    assert_eq!(
        get(&url, Some(&access_token(&emu).await)).await.status(),
        StatusCode::OK
    );

    // Tokens expire on their own after the consumer's TTL.
    let (_, body) = grant(&emu, "short", "s", &[("grant_type", "client_credentials")]).await;
    assert_eq!(body["expires_in"], 1);
    let short = body["access_token"].as_str().unwrap();
    assert_eq!(get(&url, Some(short)).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get_json(&url, Some(short)).await,
        (StatusCode::UNAUTHORIZED, api_error(TOKEN_EXPIRED))
    );
    assert_eq!(emu.stats().unauthorized, 4);
}

#[tokio::test]
async fn unknown_and_empty_workspaces() {
    let emu = emulator(ConsumerOpts::default()).await;
    emu.add_workspace("empty");
    let token = access_token(&emu).await;
    let (status, body) = get_json(
        &format!("{}/repositories/nope", emu.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            api_error("No workspace with identifier 'nope'.")
        )
    );
    let (status, body) = get_json(
        &format!("{}/repositories/empty?pagelen=100", emu.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"pagelen": 100, "size": 0, "page": 1, "values": []})
    );
    let (status, body) = get_json(&format!("{}/workspaces", emu.api_url()), Some(&token)).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (StatusCode::NOT_FOUND, &json!("Resource not found"))
    );
}

#[tokio::test]
async fn faults_are_served_in_order_per_route() {
    let emu = emulator(ConsumerOpts::default()).await;
    emu.add_workspace("acme");
    emu.push_fault(Route::Token, Fault::RateLimit { retry_after: None });
    let (status, _) = {
        let resp = client()
            .post(emu.token_url())
            .basic_auth(KEY, Some(SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let token = access_token(&emu).await;
    let url = format!("{}/repositories/acme", emu.api_url());

    emu.push_fault(
        Route::List,
        Fault::RateLimit {
            retry_after: Some(3),
        },
    );
    emu.push_fault(Route::List, Fault::RateLimit { retry_after: None });
    emu.push_fault(Route::List, Fault::Status(503));
    emu.push_fault(Route::List, Fault::ExpireTokens);
    let resp = get(&url, Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(resp.text().await.unwrap(), RATE_LIMIT_BODY);
    let resp = get(&url, Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(
        get(&url, Some(&token)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get_json(&url, Some(&token)).await,
        (StatusCode::UNAUTHORIZED, api_error(TOKEN_EXPIRED))
    );
    assert_eq!(
        get(&url, Some(&access_token(&emu).await)).await.status(),
        StatusCode::OK
    );

    let stats = emu.stats();
    assert_eq!(
        (stats.rate_limited, stats.server_errors, stats.unauthorized),
        (3, 1, 1)
    );
    assert_eq!(stats.list_requests, 5);
}

#[tokio::test]
async fn pagination_quirks_next_loop_and_lying_size() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    add_many(&emu, fixtures.path(), "loopy", 25);
    emu.loop_next("loopy", 3, 1);
    emu.lie_about_size("loopy", 7);
    let token = access_token(&emu).await;
    let base = format!("{}/repositories/loopy", emu.api_url());
    let (_, page3) = get_json(&format!("{base}?page=3"), Some(&token)).await;
    assert_eq!(page3["values"].as_array().unwrap().len(), 5);
    assert_eq!(page3["next"], format!("{base}?page=1"));
    assert_eq!(page3["size"], 7);
}

#[tokio::test]
async fn git_clone_mirror_through_http_backend() {
    let emu = emulator(ConsumerOpts {
        username: "alice".into(),
        ..ConsumerOpts::default()
    })
    .await;
    let fixtures = tempfile::tempdir().unwrap();
    let rich = rich_repo(fixtures.path(), "rich");
    emu.add_repo("acme", "rich", &rich, RepoOpts::default());
    let token = access_token(&emu).await;
    let (_, page) = get_json(
        &format!("{}/repositories/acme", emu.api_url()),
        Some(&token),
    )
    .await;
    assert_eq!(page["values"][0]["mainbranch"]["name"], "trunk");
    // The listed link, user info and all, as a client gets it.
    let href = page["values"][0]["links"]["clone"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = basic_header("x-token-auth", &token);
    let expected = show_refs(&rich);
    assert!(expected.len() > 300, "{} refs", expected.len());

    for (name, protocol) in [("v2", "2"), ("v0", "0")] {
        let dest = fixtures.path().join(format!("mirror-{name}.git"));
        let version = format!("protocol.version={protocol}");
        let http_header = format!("http.extraHeader={auth}");
        let dest_arg = dest.to_str().unwrap();
        git(
            fixtures.path(),
            &[
                "-c",
                &version,
                "-c",
                &http_header,
                "clone",
                "--mirror",
                "-q",
                &href,
                dest_arg,
            ],
        );
        assert_eq!(show_refs(&dest), expected, "protocol {protocol}");
        git(&dest, &["fsck", "--strict", "--no-dangling"]);
    }
    let stats = emu.stats();
    assert!(stats.git_requests >= 4, "{stats:?}");
    // A clone asking for 150+ distinct commits sends a large enough request for git to gzip it.
    assert!(stats.git_gzip_requests >= 1, "{stats:?}");
    assert_eq!(stats.unauthorized, 0);
}

#[tokio::test]
async fn git_refuses_missing_wrong_and_expired_credentials() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    emu.add_repo(
        "acme",
        "api",
        &simple_repo(fixtures.path(), "api", "main"),
        RepoOpts::default(),
    );
    let token = access_token(&emu).await;
    let refs = format!(
        "{}/info/refs?service=git-upload-pack",
        emu.git_url("acme", "api")
    );
    let info_refs = |user: Option<(&str, String)>| {
        let mut req = client().get(&refs);
        if let Some((user, password)) = user {
            req = req.basic_auth(user, Some(password));
        }
        req.send()
    };

    let resp = info_refs(None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Basic realm="Bitbucket.org HTTP""#
    );
    assert_eq!(
        info_refs(Some(("alice", token.clone())))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let bearer = client()
        .get(&refs)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);
    let ok = info_refs(Some(("x-token-auth", token.clone())))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );

    let dest = fixtures.path().join("anon.git");
    let out = git_output(
        fixtures.path(),
        &[
            "clone",
            "--mirror",
            "-q",
            &emu.git_url("acme", "api"),
            dest.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "clone without credentials must fail");

    emu.expire_tokens();
    assert_eq!(
        info_refs(Some(("x-token-auth", token)))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(emu.stats().unauthorized >= 5);
}

#[tokio::test]
async fn git_faults_and_failing_repositories() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    let source = simple_repo(fixtures.path(), "src", "main");
    emu.add_repo("acme", "ok", &source, RepoOpts::default());
    emu.add_repo("acme", "broken", &source, RepoOpts::default());
    emu.add_repo(
        "acme",
        "legacy",
        Path::new("/nonexistent"),
        RepoOpts {
            scm: "hg".into(),
            ..RepoOpts::default()
        },
    );
    emu.fail_repo("acme", "broken", 500);
    let token = emu.mint_token(KEY);
    let status = |slug: &'static str| {
        let url = format!(
            "{}/info/refs?service=git-upload-pack",
            emu.git_url("acme", slug)
        );
        let req = client()
            .get(url)
            .basic_auth("x-token-auth", Some(token.clone()));
        async move { req.send().await.unwrap().status() }
    };

    assert_eq!(status("broken").await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        status("broken").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "permanent"
    );
    assert_eq!(status("missing").await, StatusCode::NOT_FOUND);
    assert_eq!(
        status("legacy").await,
        StatusCode::NOT_FOUND,
        "hg is listed, never served"
    );
    emu.push_fault(
        Route::repo("acme", "ok"),
        Fault::RateLimit {
            retry_after: Some(1),
        },
    );
    emu.push_fault(Route::Git, Fault::Status(502));
    assert_eq!(status("ok").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status("ok").await, StatusCode::BAD_GATEWAY);
    assert_eq!(status("ok").await, StatusCode::OK);

    let http_header = format!("http.extraHeader={}", basic_header("x-token-auth", &token));
    let dest = fixtures.path().join("broken.git");
    let out = git_output(
        fixtures.path(),
        &[
            "-c",
            &http_header,
            "clone",
            "--mirror",
            "-q",
            &emu.git_url("acme", "broken"),
            dest.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("500"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = emu.stats();
    assert_eq!(
        (stats.server_errors, stats.rate_limited),
        (4, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn counts_concurrent_git_requests() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    emu.add_repo(
        "acme",
        "api",
        &simple_repo(fixtures.path(), "api", "main"),
        RepoOpts::default(),
    );
    let token = emu.mint_token(KEY);
    for _ in 0..3 {
        emu.push_fault(Route::Git, Fault::Delay(Duration::from_millis(300)));
    }
    let url = format!(
        "{}/info/refs?service=git-upload-pack",
        emu.git_url("acme", "api")
    );
    let one = || {
        client()
            .get(&url)
            .basic_auth("x-token-auth", Some(&token))
            .send()
    };
    let (a, b, c) = tokio::join!(one(), one(), one());
    for resp in [a, b, c] {
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(emu.stats().max_concurrent_git, 3);
}

#[tokio::test]
async fn drop_stops_the_server() {
    let emu = emulator(ConsumerOpts::default()).await;
    let url = emu.token_url();
    drop(emu);
    assert!(client().post(url).send().await.is_err());
}

#[test]
fn fixtures_are_rich_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let rich = rich_repo(dir.path(), "rich");
    let refs = show_refs(&rich);
    assert_eq!(refs["HEAD"], "refs/heads/trunk");
    for name in [
        "refs/heads/feature/ünïcødé",
        "refs/notes/commits",
        "refs/custom/x",
        "refs/tags/v2.0-ünï",
        "refs/heads/topic/149",
        "refs/tags/lw-149",
    ] {
        assert!(refs.contains_key(name), "{name} missing");
    }
    assert!(!refs.contains_key("refs/heads/main") && !refs.contains_key("refs/heads/master"));
    assert_eq!(
        git(&rich, &["cat-file", "-t", "refs/tags/v1.0"]).trim(),
        "tag"
    );
    assert_eq!(
        git(&rich, &["cat-file", "-t", "refs/tags/v1.0-signed-off^{}"]).trim(),
        "commit"
    );
    let blob_size: u64 = git(&rich, &["cat-file", "-s", "trunk:assets/blob.bin"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(blob_size, 4 * 1024 * 1024);
    let parents = git(&rich, &["rev-list", "--parents", "-n1", "trunk"]);
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "trunk tip is a merge"
    );
    git(&rich, &["fsck", "--strict", "--no-dangling"]);

    // Same call, same object ids: fixtures can be compared across runs and machines.
    assert_eq!(show_refs(&rich_repo(dir.path(), "again")), refs);

    let simple = simple_repo(dir.path(), "simple", "develop");
    let refs = show_refs(&simple);
    assert_eq!(refs.len(), 2);
    assert_eq!(refs["HEAD"], "refs/heads/develop");
    assert_eq!(
        git(&simple, &["rev-list", "--count", "develop"]).trim(),
        "3"
    );

    let empty = empty_repo(dir.path(), "empty");
    assert_eq!(
        show_refs(&empty).into_iter().collect::<Vec<_>>(),
        [("HEAD".to_owned(), "refs/heads/main".to_owned())]
    );
}

/// Peak resident memory of this process (the emulator runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
#[ignore = "slow: builds and clones a 256 MiB pack; run with --ignored"]
async fn streams_large_packs_without_buffering() {
    let emu = emulator(ConsumerOpts::default()).await;
    let fixtures = tempfile::tempdir().unwrap();
    let big = crate::support::git::big_repo(fixtures.path(), "big", 256 << 20);
    emu.add_repo("acme", "big", &big, RepoOpts::default());
    let token = emu.mint_token(KEY);
    let before = peak_rss_kib();
    let http_header = format!("http.extraHeader={}", basic_header("x-token-auth", &token));
    let dest = fixtures.path().join("clone.git");
    let dest_arg = dest.to_str().unwrap();
    let url = emu.git_url("acme", "big");
    git(
        fixtures.path(),
        &[
            "-c",
            &http_header,
            "clone",
            "--mirror",
            "-q",
            &url,
            dest_arg,
        ],
    );
    assert_eq!(show_refs(&dest), show_refs(&big));
    let grown = peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grown} KiB while serving a 256 MiB pack");
    assert!(
        grown < 64 * 1024,
        "emulator grew by {grown} KiB serving a 256 MiB pack"
    );
}
