//! Issue 9, "Credentials go only to the host they are for": plain http only to this machine,
//! host names that do not resolve, secrets kept out of `--help` and errors.

use serde_json::json;

use crate::support::bitbucket::{Fault, RepoOpts, Route};
use crate::support::harness::{SECRET, TestEnv};
use crate::support::readback::entry;
use crate::support::trap::Trap;

/// A non-loopback host that never resolves (RFC 2606 `.invalid`): a refusal that names it must
/// come from the URL check, since no connection to it can ever be made.
const REMOTE_HTTP: &str = "http://example.invalid:9000";

/// Arguments, extra environment, and the option or variable the error must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

/// Every URL the tool dials, given as plain http to a host that is not this machine, is
/// refused before any connection with exit 2 and one line naming the option or variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_another_host_is_refused_before_any_connection() {
    let mut env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    env.simple_repo("acme", "api", "main");
    let dest = env.path().join("dest");
    let dest = dest.to_str().unwrap();
    let api = format!("{REMOTE_HTTP}/2.0");
    let token = format!("{REMOTE_HTTP}/site/oauth2/access_token");
    let ping = format!("{REMOTE_HTTP}/ping/secret-ping-id");
    let cases: Vec<Case> = vec![
        (
            vec![
                "backup",
                "-o",
                "acme",
                "--dest",
                dest,
                "--bitbucket-api-url",
                &api,
            ],
            vec![],
            "--bitbucket-api-url",
        ),
        (
            vec!["list", "-o", "acme"],
            vec![("BITBUCKET_TOKEN_URL", &token)],
            "BITBUCKET_TOKEN_URL",
        ),
        (
            vec!["login"],
            vec![("BITBUCKET_API_URL", &api)],
            "BITBUCKET_API_URL",
        ),
        (
            vec![
                "backup",
                "-o",
                "acme",
                "--dest",
                "s3://b",
                "--s3-endpoint",
                REMOTE_HTTP,
            ],
            vec![],
            "--s3-endpoint",
        ),
        (
            vec!["snapshots", "-o", "acme", "--dest", "s3://b"],
            vec![("AWS_ENDPOINT_URL_S3", REMOTE_HTTP)],
            "AWS_ENDPOINT_URL_S3",
        ),
        (
            vec!["verify", "-o", "acme", "--dest", "s3://b"],
            vec![("AWS_ENDPOINT_URL", REMOTE_HTTP)],
            "AWS_ENDPOINT_URL",
        ),
        (
            vec![
                "backup",
                "-o",
                "acme",
                "--dest",
                dest,
                "--pushgateway",
                REMOTE_HTTP,
            ],
            vec![],
            "--pushgateway",
        ),
        (
            vec!["backup", "-o", "acme", "--dest", dest],
            vec![("GIT_OFFSITE_HEALTHCHECK_URL", &ping)],
            "GIT_OFFSITE_HEALTHCHECK_URL",
        ),
    ];
    for (args, vars, names) in cases {
        let before = env.emu.stats();
        let saved = env.envs.clone();
        for (k, v) in &vars {
            env.set_env(k, v);
        }
        let run = env.run(&args).await;
        env.envs = saved;
        let ctx = format!("{args:?} {vars:?}");
        run.expect_code(2);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{ctx}: {}", run.stderr);
        let line = errors[0];
        assert!(
            line.contains("insecure")
                && line.contains(names)
                && line.contains("--allow-insecure-http"),
            "{ctx}: {line}"
        );
        assert!(!line.contains("secret-ping-id"), "{ctx}: {line}");
        assert_eq!(
            env.emu.stats(),
            before,
            "{ctx}: nothing may be dialed before the check"
        );
        assert!(
            !std::path::Path::new(dest).exists(),
            "{ctx}: nothing written"
        );
    }
    // The same backup against the loopback emulator needs no flag.
    env.run(&["backup", "-o", "acme", "--dest", dest])
        .await
        .expect_code(0);
}

/// With `--allow-insecure-http` (or its variable) the URL passes the check and the next one
/// applies: the host name must resolve, and a name that does not is a configuration error at
/// once, not a minute of retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_accepts_insecure_urls_and_unresolvable_hosts_fail_at_once() {
    let mut env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    let api = format!("{REMOTE_HTTP}/2.0");
    for (flag, var) in [(Some("--allow-insecure-http"), None), (None, Some("1"))] {
        match var {
            Some(v) => env.set_env("GIT_OFFSITE_ALLOW_INSECURE_HTTP", v),
            None => env.remove_env("GIT_OFFSITE_ALLOW_INSECURE_HTTP"),
        }
        let mut args = vec!["list", "-o", "acme", "--bitbucket-api-url", &api];
        args.extend(flag);
        let started = std::time::Instant::now();
        let run = env.run(&args).await;
        run.expect_code(2);
        assert!(!run.stderr.contains("insecure"), "{}", run.stderr);
        assert!(
            run.stderr.contains("does not resolve")
                && run.stderr.contains("example.invalid")
                && run.stderr.contains("--bitbucket-api-url"),
            "{}",
            run.stderr
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no retries: {:?}",
            started.elapsed()
        );
        assert_eq!(env.emu.stats().token_requests, 0);
    }
    // An https URL with a name that does not resolve: the same error, no flag needed.
    env.remove_env("GIT_OFFSITE_ALLOW_INSECURE_HTTP");
    let run = env
        .run(&[
            "list",
            "-o",
            "acme",
            "--bitbucket-token-url",
            "https://no-such-host.invalid/site/oauth2/access_token",
        ])
        .await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("does not resolve") && run.stderr.contains("--bitbucket-token-url"),
        "{}",
        run.stderr
    );
}

/// `--help` shows which variables are read, never their values (a healthcheck URL is a
/// credential, a Pushgateway URL can hold a password); an invalid monitoring URL is not
/// quoted in the error either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_errors_do_not_show_secret_urls() {
    let mut env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    let marker = "marker-ping-id-7c1e";
    env.set_env(
        "GIT_OFFSITE_HEALTHCHECK_URL",
        &format!("https://hc-ping.example/{marker}"),
    );
    env.set_env(
        "GIT_OFFSITE_PUSHGATEWAY",
        &format!("https://user:{marker}@push.example"),
    );
    for args in [&["backup", "--help"][..], &["help", "backup"][..]] {
        let run = env.run(args).await;
        run.expect_code(0);
        assert!(
            run.stdout.contains("GIT_OFFSITE_HEALTHCHECK_URL"),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains(marker), "{args:?}: {}", run.stdout);
    }
    let dest = env.path().join("dest");
    for (var, value) in [
        (
            "GIT_OFFSITE_HEALTHCHECK_URL",
            format!("hc-ping.example/{marker}"),
        ),
        (
            "GIT_OFFSITE_PUSHGATEWAY",
            format!("ftp://user:{marker}@push.example"),
        ),
    ] {
        env.set_env(var, &value);
        let run = env
            .run(&["backup", "-o", "acme", "--dest", dest.to_str().unwrap()])
            .await;
        run.expect_code(2);
        assert!(run.stderr.contains(var), "{}", run.stderr);
        assert!(!run.stderr.contains(marker), "{}", run.stderr);
        env.remove_env(var);
    }
}

const DATE: &str = "2026-11-24";

fn manifest(dest: &std::path::Path) -> serde_json::Value {
    TestEnv::local_manifest(dest, "acme", DATE)
}

/// A hostile API answer whose clone link points at a second local server: the token must not
/// arrive there. The repository fails with a clear reason, the others are backed up, and the
/// exit code says a repository failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_link_on_another_host_gets_no_token() {
    let env = TestEnv::new().await;
    let trap = Trap::start();
    env.simple_repo("acme", "good", "main");
    let source = env.simple_repo("acme", "lure", "main");
    env.emu.add_repo(
        "acme",
        "lure",
        &source,
        RepoOpts {
            patch: Some(json!({"links": {"clone": [
                {"name": "https", "href": format!("{}/acme/lure.git", trap.base_url())}
            ]}})),
            ..RepoOpts::default()
        },
    );
    let (run, dest) = env.backup_dated("acme", DATE).await;
    run.expect_code(5);
    assert!(trap.requests().is_empty(), "{:?}", trap.requests());
    let m = manifest(&dest);
    assert_eq!(entry(&m, "good")["status"], "ok");
    let lure = entry(&m, "lure");
    assert_eq!(lure["status"], "failed");
    let error = lure["error"].as_str().unwrap();
    assert!(
        error.contains("not on the git host") && error.contains(&trap.base_url()),
        "{error}"
    );
    assert!(run.stderr.contains("acme/lure"), "{}", run.stderr);
}

/// The git host answers the first request with a redirect to another host (a compromised
/// server, a hijacked path): neither the full fetch nor the incremental ref listing sends
/// credentials there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_gets_no_token() {
    let env = TestEnv::new().await;
    let trap = Trap::start();
    env.simple_repo("acme", "api", "main");
    let dest = env.path().join("dest");
    let args = [
        "backup",
        "-o",
        "acme",
        "--dest",
        dest.to_str().unwrap(),
        "--retries",
        "0",
    ];
    let target = format!(
        "{}/acme/api.git/info/refs?service=git-upload-pack",
        trap.base_url()
    );
    // First run: the full fetch. Second run: the refs-only comparison with the first.
    for _ in 0..2 {
        env.emu
            .push_fault(Route::repo("acme", "api"), Fault::Redirect(target.clone()));
        let run = env.run(&args).await;
        assert!(trap.authorized().is_empty(), "{:?}", trap.authorized());
        assert!(
            !trap.requests().iter().any(|r| r.contains(SECRET)),
            "{:?}",
            trap.requests()
        );
        assert!(matches!(run.code, 0 | 5), "{}", run.stderr);
    }
}

/// The user's `~/.gitconfig` rewrites the git host's URL to another server (`insteadOf`) and
/// adds a header: libgit2 must read none of it, so the clone goes where the listing said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_git_config_cannot_redirect_a_clone() {
    let env = TestEnv::new().await;
    let trap = Trap::start();
    env.simple_repo("acme", "api", "main");
    let home = std::path::PathBuf::from(&env.envs["HOME"]);
    let config = format!(
        "[url \"{trap}/\"]\n\tinsteadOf = {emu}/\n[http]\n\textraHeader = X-Leak: 1\n",
        trap = trap.base_url(),
        emu = env.emu.base_url()
    );
    std::fs::write(home.join(".gitconfig"), &config).unwrap();
    std::fs::create_dir_all(home.join(".config/git")).unwrap();
    std::fs::write(home.join(".config/git/config"), &config).unwrap();
    let (run, dest) = env.backup_dated("acme", DATE).await;
    run.expect_code(0);
    assert!(trap.requests().is_empty(), "{:?}", trap.requests());
    assert_eq!(entry(&manifest(&dest), "api")["status"], "ok");
}
