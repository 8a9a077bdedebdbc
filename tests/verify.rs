//! `verify` end to end: real backups (local directory and S3) checked at every level, then
//! damaged in each way a check exists for, and each damage must fail (exit 5) naming the
//! repository.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::harness::TestEnv;
use crate::support::readback::{
    DAY1, DAY2, Dest, OWNER, entry_mut, fix_entry, fixtures, rewrite_header, sha256_hex,
};
use crate::support::s3::TestS3;

/// One table row: repository (`-` for a date folder), date, result, detail.
#[derive(Debug, Clone)]
struct Row {
    repository: String,
    date: String,
    result: String,
    detail: String,
}

/// The table's rows (by column position of the header), and the summary line.
fn parse(stdout: &str) -> (Vec<Row>, String) {
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().expect("a summary line").to_string();
    let header = lines.remove(0);
    let col = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    let (date, result, detail) = (col("DATE"), col("RESULT"), col("DETAIL"));
    let rows = lines
        .iter()
        .map(|l| {
            // The repository column holds ASCII slugs in these tests, so byte offsets work.
            Row {
                repository: l[..date].trim().to_string(),
                date: l[date..result].trim().to_string(),
                result: l[result..detail].trim().to_string(),
                detail: l[detail..].to_string(),
            }
        })
        .collect();
    (rows, summary)
}

/// Rows by repository (of a single snapshot).
fn by_repo(rows: &[Row]) -> BTreeMap<String, Row> {
    rows.iter()
        .map(|r| (r.repository.clone(), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_backup_verifies_at_every_level_on_both_stores() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let s3 = TestS3::start().await;
    let local = Dest::Local(env.path().join("backups"));
    let remote = Dest::S3(&s3);
    for dest in [&local, &remote] {
        dest.backup(&env, DAY1).await;
        for level in ["--quick", "--standard", "--deep"] {
            let args: &[&str] = match level {
                "--standard" => &["--jobs", "2"],
                l => &[l][..],
            };
            let run = dest.read_command(&env, "verify", args).await;
            run.expect_code(0);
            let (rows, summary) = parse(&run.stdout);
            let rows = by_repo(&rows);
            assert_eq!(rows.len(), 4, "{}", run.stdout);
            for slug in sources.keys() {
                let row = &rows[slug];
                assert_eq!(row.result, "ok", "{level} {slug}: {row:?}");
                assert_eq!(row.date, DAY1);
                match (level, dest) {
                    ("--quick", Dest::Local(_)) => {
                        assert!(
                            row.detail.contains("size only (no metadata on this store)"),
                            "{row:?}"
                        )
                    }
                    ("--quick", Dest::S3(_)) => {
                        assert!(row.detail.contains("sha256 metadata match"), "{row:?}")
                    }
                    ("--deep", _) => assert!(
                        row.detail.contains("SHA-256") && row.detail.contains("all present"),
                        "{row:?}"
                    ),
                    _ => assert!(row.detail.contains("SHA-256 and"), "{row:?}"),
                }
            }
            assert_eq!(rows["hollow"].result, "ok");
            assert_eq!(rows["hollow"].detail, "empty repository: no bundle");
            assert!(summary.starts_with("OK: 4 ok, 0 failed"), "{summary}");
        }
    }
    // The rich repository's walk really went through its history and its 4 MiB blob.
    let deep = remote
        .read_command(&env, "verify", &["--deep", "--repo", "rich"])
        .await;
    let (rows, _) = parse(&deep.expect_code(0).stdout);
    assert_eq!(rows.len(), 1, "--repo selects: {}", deep.stdout);
    assert!(rows[0].detail.contains("tags"), "{:?}", rows[0]);

    if s3.can_inject_faults() {
        // --quick reads the manifest and HEADs the bundles: no bundle is downloaded.
        let (gets, heads) = (s3.requests("GetObject"), s3.requests("HeadObject"));
        remote
            .read_command(&env, "verify", &["--quick"])
            .await
            .expect_code(0);
        assert_eq!(
            s3.requests("GetObject") - gets,
            1,
            "only the manifest is downloaded"
        );
        assert_eq!(s3.requests("HeadObject") - heads, 3, "one HEAD per bundle");
        let gets = s3.requests("GetObject");
        remote
            .read_command(&env, "verify", &[])
            .await
            .expect_code(0);
        assert_eq!(
            s3.requests("GetObject") - gets,
            4,
            "the manifest and 3 bundles"
        );
    }
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

/// A flipped byte, a truncated object, a missing object and a header whose refs differ from
/// the manifest each fail, named in the table and on stderr; the others still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_damage_fails_naming_the_repository() {
    let env = TestEnv::new().await;
    for slug in ["flipped", "truncated", "missing", "refs", "fine"] {
        env.simple_repo(OWNER, slug, "main");
    }
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;
    let key = |slug: &str| dest.key(DAY1, &format!("{slug}.bundle"));
    let Dest::Local(root) = &dest else {
        unreachable!()
    };

    let mut bytes = dest.read(&key("flipped")).await;
    let at = bytes.len() - 30; // inside the pack, before its trailing checksum
    bytes[at] ^= 0x01;
    dest.write(&key("flipped"), bytes, None).await;
    let bytes = dest.read(&key("truncated")).await;
    dest.write(&key("truncated"), bytes[..bytes.len() - 7].to_vec(), None)
        .await;
    std::fs::remove_file(root.join(key("missing"))).unwrap();
    // The header gains a ref the manifest does not have; size and sha256 are made to match,
    // so only the refs comparison can see it.
    let mut manifest = dest.manifest(DAY1).await;
    let bytes = dest.read(&key("refs")).await;
    let bytes = rewrite_header(&bytes, |lines| {
        let main = lines[0].split(' ').next().unwrap().to_string();
        lines.insert(0, format!("{main} refs/heads/sneaky"));
    });
    fix_entry(entry_mut(&mut manifest, "refs"), &bytes);
    dest.write(&key("refs"), bytes, None).await;
    dest.write_manifest(DAY1, &manifest).await;

    let expect = [
        ("flipped", "SHA-256 mismatch"),
        ("truncated", "the manifest says"),
        ("missing", "bundle missing"),
        ("refs", "not in the manifest: refs/heads/sneaky"),
    ];
    // --deep makes every check the standard level makes, and says the same.
    let run = dest.read_command(&env, "verify", &["--deep"]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    for (slug, why) in expect {
        assert_eq!(
            rows[slug].result, "FAILED",
            "--deep {slug}: {:?}",
            rows[slug]
        );
        assert!(
            rows[slug].detail.contains(why),
            "--deep {slug}: {:?}",
            rows[slug]
        );
    }
    assert_eq!(rows["fine"].result, "ok");

    let run = dest.read_command(&env, "verify", &[]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    for (slug, why) in expect {
        assert_eq!(rows[slug].result, "FAILED", "{slug}: {:?}", rows[slug]);
        assert!(rows[slug].detail.contains(why), "{slug}: {:?}", rows[slug]);
        assert!(
            run.stderr.contains(slug),
            "stderr names {slug}:\n{}",
            run.stderr
        );
    }
    assert_eq!(rows["fine"].result, "ok");
    assert!(
        run.stderr
            .contains("4 of 5 repositories failed verification"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("FAILED: 1 ok, 4 failed")
    );

    // --quick sees what size and existence can show, and says that it only checked the size.
    let run = dest.read_command(&env, "verify", &["--quick"]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    assert_eq!(rows["truncated"].result, "FAILED");
    assert_eq!(rows["missing"].result, "FAILED");
    assert_eq!(
        rows["flipped"].result, "ok",
        "same size: {:?}",
        rows["flipped"]
    );
    assert!(rows["flipped"].detail.contains("size only"));
}

/// On S3, --quick catches a size mismatch from HEAD alone (the object keeps its sha256
/// metadata, as a cut-off copy would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_catches_a_wrong_size_on_s3_without_downloading() {
    let env = TestEnv::new().await;
    env.simple_repo(OWNER, "api", "main");
    env.simple_repo(OWNER, "web", "main");
    let s3 = TestS3::start().await;
    let dest = Dest::S3(&s3);
    dest.backup(&env, DAY1).await;
    let key = dest.key(DAY1, "api.bundle");
    let bytes = dest.read(&key).await;
    let sha = sha256_hex(&bytes);
    dest.write(&key, bytes[..bytes.len() - 1].to_vec(), Some(&sha))
        .await;

    let gets = s3.can_inject_faults().then(|| s3.requests("GetObject"));
    let run = dest.read_command(&env, "verify", &["--quick"]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    assert_eq!(rows["api"].result, "FAILED");
    assert!(
        rows["api"].detail.contains("bytes, the manifest says"),
        "{:?}",
        rows["api"]
    );
    assert_eq!(rows["web"].result, "ok");
    assert!(run.stderr.contains("api"), "{}", run.stderr);
    if let Some(gets) = gets {
        assert_eq!(
            s3.requests("GetObject") - gets,
            1,
            "only the manifest was downloaded"
        );
    }

    // A sha256 metadata that disagrees with the manifest is caught the same way.
    let key = dest.key(DAY1, "web.bundle");
    let bytes = dest.read(&key).await;
    dest.write(&key, bytes, Some(&"0".repeat(64))).await;
    let run = dest.read_command(&env, "verify", &["--quick"]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    assert_eq!(rows["web"].result, "FAILED", "{:?}", rows["web"]);
    assert!(
        rows["web"].detail.contains("sha256 metadata") && rows["web"].detail.contains("differs"),
        "{:?}",
        rows["web"]
    );
}

/// A bundle whose header names an object its pack does not have, with the manifest made to
/// agree (size, sha256, refs): only --deep can see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_catches_a_ref_to_an_object_missing_from_the_pack() {
    let env = TestEnv::new().await;
    env.simple_repo(OWNER, "api", "main");
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;
    let key = dest.key(DAY1, "api.bundle");
    let ghost = "0123456789abcdef0123456789abcdef01234567";
    let bytes = rewrite_header(&dest.read(&key).await, |lines| {
        lines.insert(0, format!("{ghost} refs/heads/ghost"));
    });
    let mut manifest = dest.manifest(DAY1).await;
    let e = entry_mut(&mut manifest, "api");
    fix_entry(e, &bytes);
    e["refs"]["refs/heads/ghost"] = ghost.into();
    dest.write(&key, bytes, None).await;
    dest.write_manifest(DAY1, &manifest).await;

    dest.read_command(&env, "verify", &[]).await.expect_code(0);
    let run = dest.read_command(&env, "verify", &["--deep"]).await;
    run.expect_code(5);
    let rows = by_repo(&parse(&run.stdout).0);
    assert_eq!(rows["api"].result, "FAILED");
    assert!(
        rows["api"].detail.contains("refs/heads/ghost")
            && rows["api"].detail.contains("not in the pack"),
        "{:?}",
        rows["api"]
    );
    assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_one_object_with_every_result() {
    let env = TestEnv::new().await;
    fixtures(&env);
    let dest = Dest::Local(env.path().join("backups"));
    dest.backup(&env, DAY1).await;
    let run = dest.read_command(&env, "verify", &["--json"]).await;
    run.expect_code(0);
    let v: Value = serde_json::from_str(&run.stdout).expect("one JSON document on stdout");
    assert_eq!(v["owner"], OWNER);
    assert_eq!(v["destination"], dest.arg());
    assert_eq!(v["level"], "standard");
    assert_eq!(v["ok"], true);
    assert_eq!(v["snapshots"], serde_json::json!([DAY1]));
    assert_eq!(
        v["summary"],
        serde_json::json!({"ok": 4, "failed": 0, "skipped": 0})
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let rich = results.iter().find(|r| r["repository"] == "rich").unwrap();
    assert_eq!(rich["date"], DAY1);
    assert_eq!(rich["result"], "ok");
    assert_eq!(rich["key"], dest.key(DAY1, "rich.bundle"));
    assert!(rich["detail"].as_str().unwrap().contains("SHA-256"));
    let hollow = results
        .iter()
        .find(|r| r["repository"] == "hollow")
        .unwrap();
    assert!(hollow.get("key").is_none(), "{hollow}");

    // Failures: still one JSON object, `ok: false`, exit 5.
    let key = dest.key(DAY1, "api.bundle");
    let Dest::Local(root) = &dest else {
        unreachable!()
    };
    std::fs::remove_file(root.join(&key)).unwrap();
    let run = dest
        .read_command(&env, "verify", &["--json", "--quick"])
        .await;
    run.expect_code(5);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["level"], "quick");
    assert_eq!(v["summary"]["failed"], 1);
    let api = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repository"] == "api")
        .unwrap();
    assert_eq!(api["result"], "failed");
}

/// `--date all` over two snapshots and an interrupted run; `unchanged` entries verified through
/// a key in an earlier folder; failed entries, keys outside the owner's folder, named dates
/// without a manifest and dates that do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_references_and_untrusted_manifests() {
    let env = TestEnv::new().await;
    for slug in ["api", "web", "evil"] {
        env.simple_repo(OWNER, slug, "main");
    }
    let dest = Dest::Local(env.path().join("backups"));
    let Dest::Local(root) = &dest else {
        unreachable!()
    };
    dest.backup(&env, DAY1).await;
    dest.backup(&env, DAY2).await;
    // An interrupted run: a bundle, no manifest.
    let day3 = "2026-11-26";
    let bundle = dest.read(&dest.key(DAY1, "api.bundle")).await;
    dest.write(&dest.key(day3, "api.bundle"), bundle.clone(), None)
        .await;

    let run = dest.read_command(&env, "verify", &["--date", "all"]).await;
    run.expect_code(0);
    let (rows, summary) = parse(&run.stdout);
    assert_eq!(
        rows.len(),
        7,
        "3 repositories × 2 days + the interrupted day:\n{}",
        run.stdout
    );
    for day in [DAY1, DAY2] {
        assert_eq!(
            rows.iter()
                .filter(|r| r.date == day && r.result == "ok")
                .count(),
            3
        );
    }
    let skipped: Vec<&Row> = rows.iter().filter(|r| r.result == "skipped").collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0].repository.as_str(), skipped[0].date.as_str()),
        ("-", day3)
    );
    assert!(summary.contains("6 ok, 0 failed, 1 skipped"), "{summary}");

    // latest: the newest complete snapshot, with the newer interrupted one shown as skipped.
    let run = dest.read_command(&env, "verify", &[]).await;
    run.expect_code(0);
    let (rows, _) = parse(&run.stdout);
    assert!(
        rows.iter()
            .all(|r| r.date == DAY2 || (r.date == day3 && r.result == "skipped"))
    );

    // Named explicitly, the interrupted day is a failure naming it; a day with nothing is exit 2.
    let run = dest.read_command(&env, "verify", &["--date", day3]).await;
    run.expect_code(5);
    assert!(run.stderr.contains(day3), "{}", run.stderr);
    let run = dest
        .read_command(&env, "verify", &["--date", "2020-01-01"])
        .await;
    run.expect_code(2);
    assert!(run.stderr.contains("2020-01-01"), "{}", run.stderr);

    // Day 2 rewritten by hand: `api` unchanged, referring to day 1's bundle (its own copy is
    // gone, so only the reference can pass); `web` failed in the backup; `evil` points outside
    // the owner's folder at a perfectly good bundle, which must not be read.
    let mut manifest = dest.manifest(DAY2).await;
    let day1 = dest.manifest(DAY1).await;
    let mut api = day1["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["slug"] == "api")
        .unwrap()
        .clone();
    api["status"] = "unchanged".into();
    api["since"] = DAY1.into();
    *entry_mut(&mut manifest, "api") = api;
    std::fs::remove_file(root.join(dest.key(DAY2, "api.bundle"))).unwrap();
    let web = entry_mut(&mut manifest, "web");
    web["status"] = "failed".into();
    web["error"] = "mirror: the server hung up".into();
    let outside = "elsewhere/2026-11-24/evil.bundle";
    let evil_key = dest.key(DAY2, "evil.bundle");
    std::fs::create_dir_all(root.join("elsewhere/2026-11-24")).unwrap();
    std::fs::copy(root.join(&evil_key), root.join(outside)).unwrap();
    entry_mut(&mut manifest, "evil")["key"] = outside.into();
    dest.write_manifest(DAY2, &manifest).await;

    for level in ["--quick", "--deep"] {
        let run = dest
            .read_command(&env, "verify", &["--date", DAY2, level])
            .await;
        run.expect_code(5);
        let rows = by_repo(&parse(&run.stdout).0);
        assert_eq!(rows["api"].result, "ok", "{level}: {:?}", rows["api"]);
        assert!(
            rows["api"]
                .detail
                .contains(&format!("the bundle of {DAY1}")),
            "{:?}",
            rows["api"]
        );
        assert_eq!(rows["web"].result, "FAILED");
        assert!(
            rows["web"]
                .detail
                .contains("failed in backup: mirror: the server hung up")
        );
        assert_eq!(rows["evil"].result, "FAILED");
        assert!(
            rows["evil"].detail.contains("outside"),
            "{:?}",
            rows["evil"]
        );
        assert!(
            run.stderr.contains("web") && run.stderr.contains("evil"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("2 of 3 repositories failed"),
            "{}",
            run.stderr
        );
    }

    // A destination that cannot be read is exit 4.
    let missing = env.path().join("no-such-backups");
    let run = env
        .run(&[
            "verify",
            "--owner",
            OWNER,
            "--dest",
            missing.to_str().unwrap(),
        ])
        .await;
    run.expect_code(4);
    assert!(!missing.exists(), "verify must not create the destination");
}
