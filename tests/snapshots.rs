//! `snapshots`: what an operator sees first on a restore day. Real backups made by the binary
//! into the local-directory store and the test S3 server, plus an interrupted run (bundles, no
//! manifest) and a damaged manifest, which must be shown, never hidden.

use serde_json::Value;

use crate::support::harness::TestEnv;
use crate::support::s3::TestS3;

async fn two_days_of_backups(env: &TestEnv, dest: &str, s3: Option<&TestS3>) {
    for date in ["2026-11-24", "2026-11-25"] {
        let mut cmd = env.command(&["backup", "--owner", "acme", "--dest", dest, "--date", date]);
        if let Some(s3) = s3 {
            cmd.envs(s3.env());
        }
        let out = cmd.output().await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn row<'a>(rows: &'a Value, date: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["date"] == date)
        .unwrap_or_else(|| panic!("no row for {date}: {rows}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_incomplete_and_unreadable_folders_of_a_directory() {
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    env.simple_repo("acme", "web", "develop");
    let fixtures = env.path().join("fixtures");
    let empty = crate::support::git::empty_repo(&fixtures, "hollow");
    env.emu.add_repo(
        "acme",
        "hollow",
        &empty,
        crate::support::bitbucket::RepoOpts::default(),
    );
    let dest = env.path().join("dest");
    let dest_s = dest.to_str().unwrap();
    two_days_of_backups(&env, dest_s, None).await;

    // An interrupted run: one bundle, no manifest. A damaged manifest beside a bundle.
    let day = |d: &str| dest.join("acme").join(d);
    std::fs::create_dir_all(day("2026-11-26")).unwrap();
    std::fs::copy(
        day("2026-11-25").join("api.bundle"),
        day("2026-11-26").join("api.bundle"),
    )
    .unwrap();
    std::fs::create_dir_all(day("2026-11-27")).unwrap();
    std::fs::write(
        day("2026-11-27").join("manifest.json"),
        b"{\"format\": 1, trunc",
    )
    .unwrap();
    // Not a date folder: ignored.
    std::fs::create_dir_all(dest.join("acme").join("notes")).unwrap();
    std::fs::write(dest.join("acme").join("notes").join("x"), b"x").unwrap();

    let run = env
        .run(&["snapshots", "--owner", "acme", "--dest", dest_s, "--json"])
        .await;
    run.expect_code(0);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let dates: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        ["2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"],
        "oldest first, non-date folders left out"
    );
    let bundle_size = |d: &str, slug: &str| {
        std::fs::metadata(day(d).join(format!("{slug}.bundle")))
            .unwrap()
            .len()
    };
    let first = row(&rows, "2026-11-24");
    assert_eq!(first["state"], "complete");
    assert_eq!(
        (first["ok"].as_u64(), first["empty"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(first["failed"], 0);
    let both = bundle_size("2026-11-24", "api") + bundle_size("2026-11-24", "web");
    assert_eq!(first["bytes_restorable"], both);
    assert!(first["bytes_written"].as_u64().unwrap() <= both);
    let interrupted = row(&rows, "2026-11-26");
    assert_eq!(interrupted["state"], "incomplete");
    assert_eq!(
        interrupted["bytes_written"],
        bundle_size("2026-11-26", "api")
    );
    assert_eq!(interrupted["bytes_restorable"], 0);
    assert!(
        interrupted["error"].as_str().unwrap().contains("1 bundles"),
        "{interrupted}"
    );
    let damaged = row(&rows, "2026-11-27");
    assert_eq!(damaged["state"], "unreadable");
    assert!(
        damaged["error"].as_str().unwrap().contains("manifest.json"),
        "{damaged}"
    );

    // The table a person reads: one line per date, problems spelled out.
    let run = env
        .run(&["snapshots", "--owner", "acme", "--dest", dest_s])
        .await;
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 rows:\n{}", run.stdout);
    assert!(lines[0].starts_with("DATE") && lines[0].contains("RESTORES"));
    assert!(lines[3].contains("2026-11-26") && lines[3].contains("incomplete"));
    assert!(lines[4].contains("unreadable"));
    assert!(
        run.stderr.contains("4 snapshots") && run.stderr.contains("2 not complete"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_bucket_with_a_prefix_and_the_errors_an_operator_can_hit() {
    let env = TestEnv::new().await;
    let s3 = TestS3::start().await;
    env.simple_repo("acme", "api", "main");
    let dest = format!("s3://{}/{}/git", s3.bucket, s3.prefix);
    two_days_of_backups(&env, &dest, Some(&s3)).await;

    let mut cmd = env.command(&["snapshots", "--owner", "acme", "--dest", &dest, "--json"]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    let size = s3
        .get(&format!("{}/git/acme/2026-11-25/api.bundle", s3.prefix))
        .await
        .len() as u64;
    assert_eq!(row(&rows, "2026-11-25")["bytes_restorable"], size);
    assert_eq!(row(&rows, "2026-11-25")["state"], "complete");

    // Another owner has nothing there: an empty list, not an error.
    let mut cmd = env.command(&["snapshots", "--owner", "other", "--dest", &dest, "--json"]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        Value::Array(vec![])
    );

    // A missing bucket is the destination's fault (4); no owner is a usage error (2).
    let mut cmd = env.command(&[
        "snapshots",
        "--owner",
        "acme",
        "--dest",
        "s3://no-such-bucket-here/git",
    ]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no-such-bucket-here"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one error line: {stderr}"
    );
    let run = env.run(&["snapshots", "--dest", &dest]).await;
    run.expect_code(2);
    assert!(run.stderr.contains("--owner"), "{}", run.stderr);
}
