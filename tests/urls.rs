//! `--provider urls` end to end against a plain git server (`support::plain_git`, real
//! `git http-backend`, no API): public repositories backed up and restored ref for ref,
//! netrc credentials sent to their own host only, and the configuration errors of a URL list.

use std::path::Path;

use crate::restore::assert_restored;
use crate::support::consistency::assert_consistent;
use crate::support::git::{rich_repo, simple_repo};
use crate::support::harness::{Run, TestEnv};
use crate::support::plain_git::PlainGit;
use crate::support::readback::{DAY1, Dest, OWNER};
use crate::support::s3::TestS3;

const TOKEN: &str = "netrc-token-7c1e0b";

/// `backup --provider urls --owner acme --dest <dest> --date DAY1 <args…>`.
async fn backup(env: &TestEnv, dest: &Dest<'_>, args: &[&str]) -> Run {
    let d = dest.arg();
    let mut all = vec![
        "backup",
        "--provider",
        "urls",
        "--owner",
        OWNER,
        "--dest",
        &d,
        "--date",
        DAY1,
    ];
    all.extend_from_slice(args);
    dest.run(env, &all).await
}

fn fixtures(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_repositories_back_up_and_restore_ref_for_ref() {
    let env = TestEnv::new().await;
    let server = PlainGit::start("127.0.0.1").await;
    let dir = fixtures(&env);
    let rich = rich_repo(&dir, "rich");
    let simple = simple_repo(&dir, "simple", "develop");
    let rich_url = server.serve("team", "rich", &rich);
    let simple_url = server.serve("team", "simple", &simple);
    let list = write(
        &env.path().join("repos.txt"),
        &format!("# the team's repositories\n\n{simple_url}   renamed  # a slug of our own\n"),
    );
    let s3 = TestS3::start().await;
    let dest = Dest::S3(&s3);

    backup(&env, &dest, &["--url", &rich_url, "--url-file", &list])
        .await
        .expect_code(0);
    let checked = assert_consistent(&dest, &env.path().join("scratch"), &[]).await;
    let restorable: Vec<_> = checked.restorable_on(DAY1).into_iter().collect();
    assert_eq!(restorable, ["renamed", "rich"]);
    let manifest = dest.manifest(DAY1).await;
    assert_eq!(manifest["provider"], "urls", "{manifest}");
    assert!(server.credentials_seen().is_empty(), "no credentials exist");

    for (slug, source, branch) in [("rich", &rich, "trunk"), ("renamed", &simple, "develop")] {
        let to = env.path().join("restored").join(slug);
        dest.read_command(
            &env,
            "restore",
            &["--repo", slug, "--to", to.to_str().unwrap()],
        )
        .await
        .expect_code(0);
        assert_restored(&to, source, branch, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netrc_credentials_go_to_their_own_host_only() {
    let env = TestEnv::new().await;
    // Two hosts on this machine: `localhost` has a netrc entry, `127.0.0.1` has none.
    let own = PlainGit::start("localhost").await;
    let other = PlainGit::start("127.0.0.1").await;
    let dir = fixtures(&env);
    let private_url = own.serve("team", "private", &simple_repo(&dir, "private", "main"));
    own.require("team", "private", "backup-bot", TOKEN);
    let elsewhere_url = other.serve("team", "elsewhere", &simple_repo(&dir, "elsewhere", "main"));
    other.require("team", "elsewhere", "someone", "else");
    let netrc = write(
        &env.path().join("netrc"),
        &format!("machine localhost\n  login backup-bot\n  password {TOKEN}\n"),
    );
    let dest = Dest::Local(env.path().join("dest"));

    let run = backup(
        &env,
        &dest,
        &[
            "--url",
            &private_url,
            "--url",
            &elsewhere_url,
            "--netrc",
            &netrc,
            "-v",
        ],
    )
    .await;
    run.expect_code(5);
    assert!(
        run.stderr.contains("elsewhere")
            && run
                .stderr
                .contains("requires credentials and none are configured"),
        "{}",
        run.stderr
    );
    let seen = own.credentials_seen();
    let entry = ("backup-bot".to_string(), TOKEN.to_string());
    assert!(
        !seen.is_empty() && seen.iter().all(|c| *c == entry),
        "the netrc entry, to its own host: {seen:?}"
    );
    assert!(
        other.credentials_seen().is_empty(),
        "nothing sent to the other host"
    );
    let checked = assert_consistent(&dest, &env.path().join("scratch"), &[]).await;
    assert_eq!(
        checked.restorable_on(DAY1).into_iter().collect::<Vec<_>>(),
        ["private"]
    );
    let manifest = TestEnv::local_manifest(&env.path().join("dest"), OWNER, DAY1);
    for text in [run.stdout, run.stderr, manifest.to_string()] {
        assert!(!text.contains(TOKEN), "the netrc password leaked: {text}");
    }

    // A wrong password fails that repository as refused, once renewed (the netrc cannot be).
    let wrong = write(
        &env.path().join("wrong"),
        "machine localhost login backup-bot password nope\n",
    );
    let dest2 = Dest::Local(env.path().join("dest2"));
    let run = backup(&env, &dest2, &["--url", &private_url, "--netrc", &wrong]).await;
    run.expect_code(5);
    assert!(
        run.stderr.contains("refused the credentials"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_list_is_a_configuration_error_before_any_connection() {
    let env = TestEnv::new().await;
    let server = PlainGit::start("127.0.0.1").await;
    let dir = fixtures(&env);
    let url = server.serve("team", "one", &simple_repo(&dir, "one", "main"));
    let dest = Dest::Local(env.path().join("dest"));
    let with_password = url.replace("http://", "http://bot:hunter2@");
    let list = write(
        &env.path().join("list"),
        &format!("{url}\nhttp://git.example.com/a.git\n"),
    );
    let bad_netrc = write(
        &env.path().join("netrc"),
        "machine x login y password hunter2 port 2\n",
    );
    for (args, needle) in [
        (vec![], "--url-file"),
        (vec!["--url", with_password.as_str()], "--netrc"),
        (vec!["--url-file", list.as_str()], "line 2"),
        (vec!["--url", "https://h/a?ref=x"], "query"),
        (vec!["--url-file", "/nonexistent/list"], "--url-file"),
        (
            vec!["--url", url.as_str(), "--netrc", bad_netrc.as_str()],
            "line 1",
        ),
    ] {
        let run = backup(&env, &dest, &args).await;
        run.expect_code(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("hunter2"), "{args:?}: {}", run.stderr);
        let errors = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count();
        assert_eq!(errors, 1, "one error line: {args:?}: {}", run.stderr);
    }
    assert_eq!(server.stats().requests, 0, "nothing was dialed");
    assert!(
        !env.path().join("dest").join(OWNER).exists(),
        "nothing was written"
    );

    let run = env
        .run(&["login", "--provider", "urls", "--url", &url])
        .await;
    run.expect_code(2);
    assert!(run.stderr.contains("--netrc"), "{}", run.stderr);
}

/// The README's first command as a newcomer runs it — `backup --provider urls --owner demo
/// --url URL`, no `--dest`, no config — against a local server instead of github.com (the
/// tests have no network): the bundle lands in `./backup` of the working directory and stock
/// git reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_command_backs_up_into_dot_backup() {
    let env = TestEnv::new().await;
    let server = PlainGit::start("127.0.0.1").await;
    let url = server.serve(
        "octocat",
        "Hello-World",
        &simple_repo(&fixtures(&env), "hello", "master"),
    );
    let cwd = env.path().join("newcomer");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = env
        .command(&[
            "backup",
            "--provider",
            "urls",
            "--owner",
            "demo",
            "--url",
            &url,
        ])
        .current_dir(&cwd)
        .output()
        .await
        .unwrap();
    let run = Run::from_output(out);
    run.expect_code(0);
    let owner = cwd.join("backup").join("demo");
    let dates: Vec<_> = std::fs::read_dir(&owner).unwrap().flatten().collect();
    assert_eq!(dates.len(), 1, "one date folder in {}", owner.display());
    let folder = dates[0].path();
    assert!(
        folder.join("manifest.json").is_file(),
        "{}",
        folder.display()
    );
    let bundle = folder.join("Hello-World.bundle");
    let scratch = env.path().join("scratch");
    crate::support::git::git(env.path(), &["init", "--quiet", scratch.to_str().unwrap()]);
    crate::support::git::git(
        &scratch,
        &["bundle", "verify", "--quiet", bundle.to_str().unwrap()],
    );
}
