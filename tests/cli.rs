//! The command line contract: usage errors, credentials precedence, `list`, `login`.

use serde_json::Value;

use crate::support::bitbucket::RepoOpts;
use crate::support::git::empty_repo;
use crate::support::harness::{KEY, SECRET, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_one_line_error_naming_what_to_fix_with_exit_2() {
    let env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    for (args, needle) in [
        (
            &["backup", "--owner", "acme", "--date", "24/11/2026"][..],
            "--date",
        ),
        (
            &["backup", "--owner", "acme", "--dest", "gs://bucket"][..],
            "--dest",
        ),
        (&["backup", "--owner", "acme", "--jobs", "0"][..], "--jobs"),
        (
            &["backup", "--owner", "acme", "--jobs", "33"][..],
            "at most 32",
        ),
        (
            &["backup", "--owner", "acme", "--parts-in-flight", "1000"][..],
            "--parts-in-flight",
        ),
        (
            &["verify", "--owner", "acme", "--jobs", "10000"][..],
            "--jobs",
        ),
        (
            &["backup", "--owner", "acme", "--s3-timeout", "0s"][..],
            "--s3-timeout",
        ),
        (
            &["backup", "--owner", "acme", "--part-size", "1MiB"][..],
            "--part-size",
        ),
        (
            &["backup", "--owner", "acme", "--include", "a["][..],
            "--include",
        ),
        (&["backup", "--owner", "a/b"][..], "--owner"),
        (
            &["backup", "--owner", "acme", "--retry-delay", "soon"][..],
            "--retry-delay",
        ),
        (
            &[
                "backup",
                "--owner",
                "acme",
                "--bitbucket-api-url",
                "ftp://x",
            ][..],
            "--bitbucket-api-url",
        ),
        (&["backup"][..], "--owner"),
        (
            &["list", "--owner", "acme", "--provider", "gitlub"][..],
            "gitlub",
        ),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let run = env.run(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{args:?} should name {needle}: {}",
            run.stderr
        );
        if !matches!(args[0], "frobnicate") && args.len() > 1 {
            let error_lines: Vec<_> = run
                .stderr
                .lines()
                .filter(|l| l.starts_with("error"))
                .collect();
            assert_eq!(error_lines.len(), 1, "{args:?}: {}", run.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_off_a_terminal_name_the_flags_and_variables() {
    let mut env = TestEnv::new().await;
    env.remove_env("BITBUCKET_CONSUMER_KEY");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    let run = env.run(&["list", "--owner", "acme"]).await;
    run.expect_code(2);
    for needle in [
        "--consumer-key",
        "--consumer-secret",
        "BITBUCKET_CONSUMER_KEY",
        "BITBUCKET_CONSUMER_SECRET",
        "login",
    ] {
        assert!(
            run.stderr.contains(needle),
            "missing {needle}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_file_and_node_script_aliases_work() {
    let mut env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    env.set_env("BITBUCKET_CONSUMER_KEY", "wrong-key-from-env");
    let secret_file = env.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();

    // Flag beats env for the key; the secret comes from the file.
    let run = env
        .run(&[
            "list",
            "--owner",
            "acme",
            "--consumerKey",
            KEY,
            "--consumer-secret-file",
            secret_file.to_str().unwrap(),
        ])
        .await;
    run.expect_code(0);
    assert!(run.stdout.contains("api"));

    let dest = env.path().join("legacy");
    env.run(&[
        "backup",
        "--owner",
        "acme",
        "--backupFolder",
        dest.to_str().unwrap(),
        "--consumerKey",
        KEY,
        "--consumerSecret",
        SECRET,
    ])
    .await
    .expect_code(0);
    assert!(dest.join("acme").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_slug_size_update_and_default_branch() {
    let env = TestEnv::new().await;
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    env.simple_repo("acme", "api", "develop");
    env.emu.add_repo(
        "acme",
        "void",
        &empty_repo(&fixtures, "void"),
        RepoOpts::default(),
    );

    let run = env.run(&["list", "--owner", "acme", "--json"]).await;
    run.expect_code(0);
    let repos: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(repos.len(), 2);
    let api = repos.iter().find(|r| r["slug"] == "api").unwrap();
    assert_eq!(api["default_branch"], "develop");
    assert_eq!(api["full_name"], "acme/api");
    assert!(api["size"].is_u64() && api["updated_on"].is_string());
    assert!(
        api["clone_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1")
    );
    assert!(
        !api["clone_url"].as_str().unwrap().contains('@'),
        "user info must be stripped"
    );
    let void = repos.iter().find(|r| r["slug"] == "void").unwrap();
    assert!(void["default_branch"].is_null());

    let run = env.run(&["list", "--owner", "acme"]).await;
    run.expect_code(0);
    let header = run.stdout.lines().next().unwrap();
    for col in ["SLUG", "SIZE", "UPDATED", "DEFAULT BRANCH"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("api") && l.ends_with("develop"))
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("void") && l.ends_with("(empty)"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_then_stores_credentials_with_mode_0600() {
    let env = TestEnv::new().await;
    env.emu.add_workspace("acme");
    let run = env.run(&["login", "--owner", "acme"]).await;
    run.expect_code(0);
    let stored = env.path().join("home/.config/git-offsite/credentials.toml");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(text.contains(KEY) && text.contains(SECRET));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(!run.stderr.contains(SECRET));

    // A later run without any flag or env uses the stored credentials.
    let mut env = env;
    env.remove_env("BITBUCKET_CONSUMER_KEY");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    env.run(&["list", "--owner", "acme"]).await.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_comes_from_the_flag_else_the_source() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    let run = env
        .run(&[
            "list",
            "--owner",
            "acme",
            "--provider",
            "bitbucket",
            "--json",
        ])
        .await;
    run.expect_code(0);
    assert!(run.stdout.contains("acme/api"), "{}", run.stdout);
    // A source naming an unknown host is refused before anything is dialed.
    let config = env.path().join("hosts.toml");
    std::fs::write(
        &config,
        "[[source]]\nowner = \"acme\"\nprovider = \"gitlub\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let run = env.run(&["--config", cfg, "list"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("gitlub") && run.stderr.contains("`bitbucket`"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_wrong_secret_exits_3_and_shows_the_consent_url() {
    let mut env = TestEnv::new().await;
    env.set_env("BITBUCKET_CONSUMER_SECRET", "not-the-secret-91b");
    let run = env.run(&["login"]).await;
    run.expect_code(3);
    assert!(!run.stderr.contains("not-the-secret-91b"));
    assert!(
        run.stderr.contains(&format!(
            "oauth2/authorize?client_id={KEY}&response_type=code"
        )),
        "{}",
        run.stderr
    );
    assert!(
        !env.path()
            .join("home/.config/git-offsite/credentials.toml")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_shows_examples() {
    let env = TestEnv::new().await;
    let run = env.run(&["--help"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("Examples:") && run.stdout.contains("git-offsite backup --owner acme")
    );
    let run = env.run(&["backup", "--help"]).await;
    run.expect_code(0);
    for flag in [
        "--dest",
        "--jobs",
        "--date",
        "--include",
        "--exclude",
        "--dry-run",
        "--consumer-secret-file",
        "--s3-endpoint",
    ] {
        assert!(run.stdout.contains(flag), "{flag} missing from help");
    }
    assert!(
        !run.stdout.contains(SECRET),
        "env values must not show in --help"
    );
}

/// Two owners in one run from a config file, credentials referenced (never written) in it;
/// flags still win over the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_backs_up_several_owners_and_flags_win() {
    let mut env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    env.simple_repo("acme", "api-old", "main");
    env.simple_repo("labs", "lab", "main");
    env.remove_env("BITBUCKET_CONSUMER_KEY");
    env.remove_env("BITBUCKET_CONSUMER_SECRET");
    env.set_env("ACME_SECRET", SECRET);
    std::fs::write(env.path().join("secret.txt"), SECRET).unwrap();
    let dest = env.path().join("from-file");
    let config = env.path().join("git-offsite.toml");
    std::fs::write(
        &config,
        format!(
            r#"dest = "{}"
jobs = 2
log_format = "json"

[bitbucket]
consumer_key = "{KEY}"
consumer_secret_file = "secret.txt"

[[source]]
owner = "acme"
exclude = ["*-old"]
consumer_secret_env = "ACME_SECRET"

[[source]]
owner = "labs"
"#,
            dest.display()
        ),
    )
    .unwrap();

    let run = env
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "backup",
            "--date",
            "2026-11-24",
        ])
        .await;
    run.expect_code(0);
    assert!(
        run.stderr.lines().all(|l| l.starts_with('{')),
        "log_format from the file:\n{}",
        run.stderr
    );
    assert!(dest.join("acme/2026-11-24/api.bundle").is_file());
    assert!(
        !dest.join("acme/2026-11-24/api-old.bundle").exists(),
        "the source's exclude"
    );
    assert!(dest.join("acme/2026-11-24/manifest.json").is_file());
    assert!(dest.join("labs/2026-11-24/lab.bundle").is_file());
    assert!(dest.join("labs/2026-11-24/manifest.json").is_file());

    // Flags beat the file: one owner, another destination, text logs.
    let other = env.path().join("from-flags");
    env.set_env("GIT_OFFSITE_CONFIG", config.to_str().unwrap());
    let run = env
        .run(&[
            "backup",
            "--owner",
            "labs",
            "--dest",
            other.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .await;
    run.expect_code(0);
    assert!(!run.stderr.starts_with('{'));
    assert!(other.join("labs").is_dir() && !other.join("acme").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_mistakes_name_the_file_line_and_key() {
    let env = TestEnv::new().await;
    let config = env.path().join("bad.toml");
    std::fs::write(&config, "dest = \"./b\"\n\n[s3]\npart_sise = \"8MiB\"\n").unwrap();
    let run = env
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "backup",
            "--owner",
            "acme",
        ])
        .await;
    run.expect_code(2);
    let line = run.stderr.trim();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.contains("bad.toml") && line.contains("line 4") && line.contains("part_sise"),
        "{line}"
    );

    std::fs::write(
        &config,
        "[bitbucket]\nconsumer_secret = \"pasted-secret-123\"\n",
    )
    .unwrap();
    let run = env
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "list",
            "--owner",
            "acme",
        ])
        .await;
    run.expect_code(2);
    assert!(
        run.stderr.contains("consumer_secret_file") && !run.stderr.contains("pasted-secret-123"),
        "{}",
        run.stderr
    );

    let run = env
        .run(&[
            "--config",
            env.path().join("missing.toml").to_str().unwrap(),
            "list",
        ])
        .await;
    run.expect_code(2);
    assert!(run.stderr.contains("missing.toml"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_page_are_generated() {
    let env = TestEnv::new().await;
    let run = env.run(&["completions", "bash"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("complete -F _git__offsite")
            && run.stdout.contains("--consumer-secret-file"),
        "{}",
        run.stdout
    );
    let run = env.run(&["completions", "zsh"]).await;
    run.expect_code(0);
    assert!(run.stdout.starts_with("#compdef git-offsite"));
    let run = env.run(&["man"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains(".TH git-offsite") && run.stdout.contains("backup"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
}

/// On a terminal (a pseudo-terminal from `script`), a backup draws progress bars; off a
/// terminal (CI, Kubernetes) the same run prints plain log lines and no terminal escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_only_on_a_terminal() {
    use crate::support::bitbucket::{Fault, Route};
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the test needs `script` (util-linux) to get a pseudo-terminal");
    }
    let mut env = TestEnv::new().await;
    for slug in ["api", "web", "docs"] {
        env.simple_repo("acme", slug, "main");
    }
    env.set_env("TERM", "xterm-256color");
    let slow = |env: &TestEnv| {
        for _ in 0..6 {
            env.emu.push_fault(
                Route::Git,
                Fault::Delay(std::time::Duration::from_millis(250)),
            );
        }
    };
    slow(&env);
    let dest = env.path().join("tty");
    let cmdline = format!(
        "{} backup --owner acme --dest {} --jobs 1",
        env!("CARGO_BIN_EXE_git-offsite"),
        dest.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env_clear()
        .envs(&env.envs)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("uploaded,") && screen.contains("/s"),
        "no overall bar:\n{screen}"
    );
    assert!(screen.contains('\u{1b}'), "no terminal drawing:\n{screen}");

    slow(&env);
    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            env.path().join("plain").to_str().unwrap(),
            "--jobs",
            "1",
        ])
        .await;
    run.expect_code(0);
    assert!(
        !run.stderr.contains("uploaded,") && !run.stderr.contains('\u{1b}'),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("uploaded"),
        "plain log lines expected:\n{}",
        run.stderr
    );
}
