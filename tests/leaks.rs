//! Issue 9, the marker-secret leak scan: every command and path run with a marker consumer
//! secret, and afterwards none of it, nor any access token the emulator issued, may appear in
//! any output, file written, stored object or metadata, or request to monitoring. The one
//! place the secret is meant to be is the credentials file `login` writes (mode 0600).
//!
//! Not covered here: a panic (no hook can make the release binary panic on purpose), and the
//! system log (the tool writes none).

use std::path::{Path, PathBuf};

use crate::support::bitbucket::{Fault, Route, TokenScope};
use crate::support::harness::{Run, SECRET, TestEnv};
use crate::support::s3::TestS3;
use crate::support::trap::Trap;

/// Everything a run can show or leave behind, as text.
struct Evidence(Vec<(String, String)>);

impl Evidence {
    fn run(&mut self, what: &str, run: &Run) {
        self.0.push((format!("{what}: stdout"), run.stdout.clone()));
        self.0.push((format!("{what}: stderr"), run.stderr.clone()));
    }

    fn files(&mut self, dir: &Path, skip: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if skip.contains(&p) {
                continue;
            }
            if p.is_dir() {
                self.files(&p, skip);
            } else if let Ok(bytes) = std::fs::read(&p) {
                self.0.push((
                    p.display().to_string(),
                    String::from_utf8_lossy(&bytes).into(),
                ));
            }
        }
    }

    /// Panics naming every place a secret showed up.
    fn assert_clean(&self, secrets: &[String]) {
        assert!(secrets.len() > 1, "the scan needs the issued tokens too");
        let hits: Vec<String> = self
            .0
            .iter()
            .flat_map(|(place, text)| {
                secrets
                    .iter()
                    .filter(|s| text.contains(s.as_str()))
                    .map(move |s| format!("{place} holds {}…", &s[..8]))
            })
            .collect();
        assert!(hits.is_empty(), "secrets leaked:\n{}", hits.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output_file_object_or_monitoring_request() {
    let mut env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    let monitor = Trap::start();
    env.simple_repo("acme", "api", "main");
    env.simple_repo("acme", "web", "trunk");
    env.simple_repo("acme", "broken", "main");
    for (k, v) in s3.env() {
        env.set_env(&k, &v);
    }
    let local = env.path().join("dest");
    let local = local.to_str().unwrap().to_string();
    let s3_dest = format!("s3://{}/git", s3.bucket);
    let metrics = env.path().join("metrics.prom");
    let metrics = metrics.to_str().unwrap().to_string();
    let hc = format!("{}/ping/abc", monitor.base_url());
    let restored = env.path().join("restored");
    let restored = restored.to_str().unwrap().to_string();
    let mut ev = Evidence(Vec::new());

    // Success, verbose, trace, JSON; on disk and in S3; metrics file, push and healthcheck.
    let report = [
        "--metrics-file",
        &metrics,
        "--pushgateway",
        &monitor.base_url(),
        "--healthcheck-url",
        &hc,
    ];
    let runs: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "backup -v",
            vec!["-v", "backup", "-o", "acme", "--dest", &local],
            None,
        ),
        (
            "backup -vv",
            vec!["-vv", "backup", "-o", "acme", "--dest", &local, "--full"],
            None,
        ),
        (
            "backup trace json s3",
            vec![
                "--log-format",
                "json",
                "backup",
                "-o",
                "acme",
                "--dest",
                &s3_dest,
            ],
            Some("trace"),
        ),
        (
            "backup trace text s3 + monitoring",
            [
                &["backup", "-o", "acme", "--dest", &s3_dest, "--full"][..],
                &report[..],
            ]
            .concat(),
            Some("trace"),
        ),
        ("list", vec!["-vv", "list", "-o", "acme"], Some("trace")),
        ("list json", vec!["list", "-o", "acme", "--json"], None),
        (
            "dry run",
            vec!["backup", "-o", "acme", "--dest", &local, "--dry-run"],
            Some("trace"),
        ),
        (
            "snapshots",
            vec!["snapshots", "-o", "acme", "--dest", &s3_dest],
            Some("trace"),
        ),
        (
            "verify",
            vec!["-vv", "verify", "-o", "acme", "--dest", &s3_dest],
            None,
        ),
        (
            "restore",
            vec![
                "restore", "-o", "acme", "--dest", &s3_dest, "--all", "--to", &restored,
            ],
            Some("trace"),
        ),
        ("login", vec!["-vv", "login", "-o", "acme"], Some("trace")),
    ];
    for (what, args, rust_log) in &runs {
        match rust_log {
            Some(l) => env.set_env("RUST_LOG", l),
            None => env.remove_env("RUST_LOG"),
        }
        let run = env.run(args).await;
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        ev.run(what, &run);
    }
    env.remove_env("RUST_LOG");

    // Failures: a repository the server refuses, a token refused mid-run, a wrong secret.
    env.emu.fail_repo("acme", "broken", 500);
    env.emu.push_fault(Route::Git, Fault::ExpireTokens);
    env.set_env("RUST_LOG", "trace");
    let run = env
        .run(
            &[
                &[
                    "backup",
                    "-o",
                    "acme",
                    "--dest",
                    &local,
                    "--full",
                    "--retries",
                    "0",
                ][..],
                &report[..],
            ]
            .concat(),
        )
        .await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    ev.run("backup with a failure", &run);
    env.set_env("BITBUCKET_CONSUMER_SECRET", &format!("{SECRET}-wrong"));
    let run = env.run(&["backup", "-o", "acme", "--dest", &local]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("backup with a wrong secret", &run);
    let run = env.run(&["--log-format", "json", "login"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("login with a wrong secret", &run);
    env.set_env("BITBUCKET_CONSUMER_SECRET", SECRET);
    env.remove_env("RUST_LOG");

    // Files written (the stored credentials excepted), objects and their metadata, and
    // every request the monitoring endpoints received.
    let credentials = PathBuf::from(&env.envs["HOME"]).join(".config/git-offsite/credentials.toml");
    ev.files(
        env.path(),
        &[credentials.clone(), env.path().join("fixtures")],
    );
    for key in s3.keys().await {
        let body = s3.get(&key).await;
        let meta = s3.metadata(&key).await;
        ev.0.push((format!("s3 {key}"), String::from_utf8_lossy(&body).into()));
        ev.0.push((format!("s3 {key} metadata"), format!("{meta:?}")));
    }
    let monitored = monitor.requests();
    assert!(
        monitored.len() >= 4,
        "push and pings arrived: {monitored:?}"
    );
    for (i, r) in monitored.iter().enumerate() {
        ev.0.push((format!("monitoring request {i}"), r.clone()));
    }

    let mut secrets = vec![SECRET.to_string()];
    secrets.extend(env.emu.issued_tokens());
    ev.assert_clean(&secrets);
}

/// IRSA, the default deployment: the SDK exchanges a web-identity token at STS. Under
/// `RUST_LOG=trace` the SDK logs request bodies; the token must still reach STS (here a fake
/// one on loopback) and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_identity_token_goes_to_sts_only() {
    let mut env = TestEnv::new().await;
    let sts = Trap::start();
    let token = "marker-web-identity-token-51b0e2";
    let token_file = env.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    for (k, v) in [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/git-offsite"),
        ("AWS_ROLE_SESSION_NAME", "leak-test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_STS", &sts.base_url()),
        ("RUST_LOG", "trace"),
    ] {
        env.set_env(k, v);
    }
    for format in ["text", "json"] {
        let run = env
            .run(&[
                "--log-format",
                format,
                "snapshots",
                "-o",
                "acme",
                "--dest",
                "s3://bucket",
                "--s3-endpoint",
                "http://127.0.0.1:9",
            ])
            .await;
        assert_ne!(run.code, 0, "no credentials: {}", run.stderr);
        assert!(
            sts.requests().iter().any(|r| r.contains(token)),
            "the token should have gone to STS: {:?}\n{}",
            sts.requests(),
            run.stderr
        );
        assert!(!run.stderr.contains(token), "{format}: {}", run.stderr);
        assert!(!run.stdout.contains(token), "{format}: {}", run.stdout);
    }
}

/// The same scan for Bitbucket's token kinds: an access token and a user's API token, under
/// trace logs, in `backup`, `list` and `login`, and when refused (revoked mid-run, revoked,
/// wrong email). Neither may show up anywhere but the credentials file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_or_api_token_reaches_any_output_or_file() {
    const ACCESS: &str = "ATCTT3-leak-marker-access-9f1c";
    const API: &str = "ATATT3-leak-marker-api-4b7e";
    const EMAIL: &str = "leak@example.com";
    let mut env = TestEnv::new().await;
    env.remove_env("BITBUCKET_CONSUMER_KEY");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    env.simple_repo("acme", "api", "main");
    env.simple_repo("acme", "web", "trunk");
    env.emu
        .add_access_token(ACCESS, TokenScope::Workspace("acme".into()));
    env.emu.add_api_token(EMAIL, API, "leaker");
    let local = env.path().join("dest");
    let local = local.to_str().unwrap().to_string();
    let mut ev = Evidence(Vec::new());
    env.set_env("RUST_LOG", "trace");
    env.set_env("BITBUCKET_ACCESS_TOKEN", ACCESS);
    for (what, args) in [
        (
            "access: backup",
            vec!["-vv", "backup", "-o", "acme", "--dest", &local],
        ),
        ("access: list", vec!["list", "-o", "acme", "--json"]),
        ("access: login", vec!["-vv", "login", "-o", "acme"]),
    ] {
        let run = env.run(&args).await;
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        ev.run(what, &run);
    }
    env.remove_env("BITBUCKET_ACCESS_TOKEN");
    env.set_env("BITBUCKET_API_TOKEN", API);
    env.set_env("BITBUCKET_EMAIL", EMAIL);
    for (what, args) in [
        (
            "api: backup",
            vec!["-vv", "backup", "-o", "acme", "--dest", &local, "--full"],
        ),
        ("api: login", vec!["-vv", "login", "-o", "acme"]),
    ] {
        let run = env.run(&args).await;
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        ev.run(what, &run);
    }

    // Refused: revoked while the run clones, then refused by the API, then a wrong email.
    env.emu.push_fault(Route::Git, Fault::RevokeTokens);
    let args = [
        "backup",
        "-o",
        "acme",
        "--dest",
        &local,
        "--full",
        "--retries",
        "0",
    ];
    let run = env.run(&args).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("api: revoked mid-run", &run);
    let run = env.run(&args).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("api: revoked", &run);
    env.emu.add_api_token(EMAIL, API, "leaker");
    env.set_env("BITBUCKET_EMAIL", "someone-else@example.com");
    let run = env
        .run(&["--log-format", "json", "login", "-o", "acme"])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("api: wrong email", &run);
    env.remove_env("BITBUCKET_API_TOKEN");
    env.remove_env("BITBUCKET_EMAIL");
    env.set_env("BITBUCKET_ACCESS_TOKEN", ACCESS);
    let run = env.run(&args).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    ev.run("access: revoked", &run);
    env.remove_env("RUST_LOG");

    let credentials = PathBuf::from(&env.envs["HOME"]).join(".config/git-offsite/credentials.toml");
    let stored = std::fs::read_to_string(&credentials).unwrap();
    assert!(stored.contains(API), "login stored the API token");
    ev.files(env.path(), &[credentials, env.path().join("fixtures")]);
    ev.assert_clean(&[ACCESS.to_string(), API.to_string()]);
}
