//! `prune` against both stores (a directory and the real test S3 server): the keep rules
//! over 60 daily snapshots (expected dates worked out by hand from the calendar), and the
//! hazards on real backups made with the binary — a referenced bundle and a vanished
//! repository's last bundle survive (and restore with stock git), an interrupted folder goes,
//! `--dry-run` removes nothing, a second prune changes nothing, and a DeleteObjects failure
//! part-way leaves every kept snapshot restorable.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use git_offsite::layout::OwnerLayout;
use git_offsite::manifest::{FORMAT, Manifest, RepoEntry, Status, Summary};
use git_offsite::prune::{PruneOptions, prune};
use git_offsite::retention::{Count, Policy};
use git_offsite::store::fs::FsStore;
use git_offsite::store::{PutOptions, Store};
use serde_json::Value;

use crate::support::git::{commit_on, show_refs};
use crate::support::harness::TestEnv;
use crate::support::readback::{Dest, OWNER, entry};
use crate::support::s3::TestS3;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn store_of(dest: &Dest<'_>) -> (Arc<dyn Store>, OwnerLayout) {
    match dest {
        Dest::Local(p) => (
            Arc::new(FsStore::new(p.clone())),
            OwnerLayout::new(None, OWNER).unwrap(),
        ),
        Dest::S3(s3) => (
            Arc::new(s3.store()),
            OwnerLayout::new(Some(&s3.prefix), OWNER).unwrap(),
        ),
    }
}

/// Every key of the owner, sorted.
async fn keys(dest: &Dest<'_>) -> Vec<String> {
    let (store, owner) = store_of(dest);
    store
        .list(owner.folder())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}

/// Date folders that still hold anything.
async fn dates(dest: &Dest<'_>) -> BTreeSet<String> {
    let (_, owner) = store_of(dest);
    keys(dest)
        .await
        .iter()
        .map(|k| {
            k[owner.folder().len()..]
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A complete snapshot of one small repository for `date`, written straight into the store.
async fn put_snapshot(store: &dyn Store, owner: &OwnerLayout, date: NaiveDate) {
    let run = owner.run(date);
    let key = run.bundle("api").unwrap();
    let bytes = Bytes::from(format!("bundle of {date}"));
    let entries = vec![RepoEntry {
        slug: "api".into(),
        full_name: "acme/api".into(),
        status: Status::Ok,
        key: Some(key.to_string()),
        size: Some(bytes.len() as u64),
        sha256: None,
        head: Some("refs/heads/main".into()),
        refs: Default::default(),
        error: None,
        since: None,
        duration_ms: 1,
        encryption: None,
    }];
    store
        .put(&key, bytes, &PutOptions::default())
        .await
        .unwrap();
    let m = Manifest {
        format: FORMAT,
        tool: "test".into(),
        provider: "bitbucket".into(),
        owner: OWNER.into(),
        date,
        started_at: chrono::Utc::now(),
        finished_at: chrono::Utc::now(),
        summary: Summary::of(&entries),
        repositories: entries,
    };
    store
        .put(&run.manifest(), m.to_json().into(), &PutOptions::default())
        .await
        .unwrap();
}

/// 2025-11-15 (a Saturday) to 2026-01-13 (a Tuesday), pruned on 2026-01-14 with
/// `--keep-daily 7 --keep-weekly 4 --keep-monthly 3`. By hand: daily keeps 01-13 … 01-07;
/// weekly keeps the newest of the ISO weeks 2026-W03 (01-13), W02 (Sunday 01-11), W01
/// (2025-12-29 … 2026-01-04: Sunday 01-04) and 2025-W52 (Sunday 12-28); monthly keeps 01-13,
/// 12-31 and 11-30. Eleven dates.
async fn sixty_daily_snapshots(dest: Dest<'_>) {
    let (store, owner) = store_of(&dest);
    let first = d("2025-11-15");
    for n in 0..60 {
        put_snapshot(store.as_ref(), &owner, first + chrono::Days::new(n)).await;
    }
    let before = keys(&dest).await;
    assert_eq!(before.len(), 120);
    let mut opts = PruneOptions {
        policy: Policy {
            daily: Some(Count::N(7)),
            weekly: Some(Count::N(4)),
            monthly: Some(Count::N(3)),
            ..Policy::default()
        },
        today: d("2026-01-14"),
        dry_run: true,
        forget_vanished_after: None,
    };
    let dry = prune(store.as_ref(), &owner, &opts).await.unwrap();
    assert_eq!(keys(&dest).await, before, "a dry run removes nothing");
    assert_eq!(
        dry.folders
            .iter()
            .filter(|f| f.objects_removed == 2)
            .count(),
        49
    );

    opts.dry_run = false;
    let report = prune(store.as_ref(), &owner, &opts).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let want: BTreeSet<String> = [
        "2025-11-30",
        "2025-12-28",
        "2025-12-31",
        "2026-01-04",
        "2026-01-07",
        "2026-01-08",
        "2026-01-09",
        "2026-01-10",
        "2026-01-11",
        "2026-01-12",
        "2026-01-13",
    ]
    .map(String::from)
    .into();
    assert_eq!(dates(&dest).await, want);
    assert_eq!(keys(&dest).await.len(), 22, "each kept folder whole");
    let row = |date: &str| report.folders.iter().find(|f| f.date == d(date)).unwrap();
    assert_eq!(row("2026-01-13").reasons, ["daily", "weekly", "monthly"]);
    assert_eq!(row("2026-01-04").reasons, ["weekly"]);
    assert_eq!(row("2025-11-15").objects_removed, 2);
    assert_eq!(
        report.bytes_freed(),
        report.folders.iter().map(|f| f.bytes_freed).sum::<u64>()
    );
    assert!(report.bytes_freed() > 0);

    // Again: the same eleven are what the rules keep, nothing more goes.
    let again = prune(store.as_ref(), &owner, &opts).await.unwrap();
    assert!(again.folders.iter().all(|f| f.objects_removed == 0));
    assert_eq!(dates(&dest).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_daily_snapshots_keep_what_restics_rules_give_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    sixty_daily_snapshots(Dest::Local(dir.path().join("dest"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_daily_snapshots_keep_what_restics_rules_give_on_s3() {
    let s3 = TestS3::start().await;
    sixty_daily_snapshots(Dest::S3(&s3)).await;
}

const D1: &str = "2026-11-01";
const D2: &str = "2026-11-02";
const D3: &str = "2026-11-03";
const D4: &str = "2026-11-04";
const D5: &str = "2026-11-05";

/// Real backups in reference mode: `api` changes every day, `web` never (so every later
/// snapshot references D1's bundle), `old` is deleted at the host after D2. D3 is an
/// interrupted run (a bundle, no manifest).
async fn history(env: &TestEnv, dest: &Dest<'_>) -> (std::path::PathBuf, std::path::PathBuf) {
    let api = env.simple_repo(OWNER, "api", "main");
    let web = env.simple_repo(OWNER, "web", "main");
    let old = env.simple_repo(OWNER, "old", "main");
    for date in [D1, D2, D4, D5] {
        if date == D4 {
            env.emu.remove_repo(OWNER, "old");
        }
        if date != D1 {
            commit_on(&api, "main");
        }
        let d = dest.arg();
        dest.run(
            env,
            &[
                "backup",
                "--owner",
                OWNER,
                "--dest",
                &d,
                "--date",
                date,
                "--unchanged",
                "reference",
            ],
        )
        .await
        .expect_code(0);
    }
    let partial = dest.read(&dest.key(D2, "api.bundle")).await;
    dest.write(&dest.key(D3, "api.bundle"), partial, None).await;
    (old, web)
}

async fn restore_and_compare(
    env: &TestEnv,
    dest: &Dest<'_>,
    slug: &str,
    date: &str,
    source: &std::path::Path,
) {
    let to = env.path().join(format!("restored-{slug}-{date}"));
    let _ = std::fs::remove_dir_all(&to);
    let t = to.to_str().unwrap().to_string();
    dest.read_command(
        env,
        "restore",
        &["--repo", slug, "--date", date, "--to", &t, "--bare"],
    )
    .await
    .expect_code(0);
    assert_eq!(show_refs(&to), show_refs(source), "{slug} from {date}");
}

async fn hazards(dest: Dest<'_>) {
    let env = TestEnv::new().await;
    let (old, web) = history(&env, &dest).await;
    let everything = keys(&dest).await;

    let dry = dest
        .read_command(&env, "prune", &["--keep-last", "1", "--dry-run", "--json"])
        .await;
    dry.expect_code(0);
    assert_eq!(keys(&dest).await, everything, "--dry-run deletes nothing");
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);

    let run = dest
        .read_command(&env, "prune", &["--keep-last", "1"])
        .await;
    run.expect_code(0);
    let after = keys(&dest).await;
    let has = |date: &str, name: &str| after.contains(&dest.key(date, name));
    // D5 is kept whole; it references D1's `web`, which stays.
    for name in ["manifest.json", "api.bundle"] {
        assert!(has(D5, name), "{D5}/{name}: {after:?}");
    }
    assert!(
        has(D1, "web.bundle"),
        "referenced by the kept D5: {after:?}"
    );
    // `old` vanished: its newest bundle (D2's entry, a reference to D1's object) stays, and
    // so does D2's manifest, rewritten: `old` as it was, `api` pruned.
    assert!(has(D1, "old.bundle"), "{after:?}");
    assert!(has(D2, "manifest.json"), "{after:?}");
    let m2 = dest.manifest(D2).await;
    assert_eq!(entry(&m2, "api")["status"], "pruned");
    assert!(entry(&m2, "api")["key"].is_null());
    assert_eq!(entry(&m2, "old")["status"], "unchanged");
    assert_eq!(m2["summary"]["pruned"], 1);
    // Everything else is gone: D1's api and manifest, the interrupted D3, all of D4.
    for (date, name) in [
        (D1, "api.bundle"),
        (D1, "manifest.json"),
        (D2, "api.bundle"),
        (D2, "web.bundle"),
    ] {
        assert!(!has(date, name), "{date}/{name}: {after:?}");
    }
    assert!(
        !after.iter().any(|k| k.contains(D3) || k.contains(D4)),
        "{after:?}"
    );
    assert!(run.stdout.contains("vanished: `old`"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("{D3}  incomplete  remove")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("partial"), "{}", run.stdout);

    // The kept snapshot and the vanished repository restore ref for ref; verify reads the
    // rewritten manifest (a pruned entry is no failure).
    restore_and_compare(&env, &dest, "web", D5, &web).await;
    restore_and_compare(&env, &dest, "old", D2, &old).await;
    dest.read_command(&env, "verify", &["--date", "all"])
        .await
        .expect_code(0);
    dest.read_command(&env, "snapshots", &[])
        .await
        .expect_code(0);

    // A second prune: D1 now looks like an interrupted run, but its bundles are still
    // protected (by D5's and D2's manifests); nothing more goes.
    let second = dest
        .read_command(&env, "prune", &["--keep-last", "1"])
        .await;
    second.expect_code(0);
    assert_eq!(keys(&dest).await, after, "{}", second.stdout);
    restore_and_compare(&env, &dest, "old", D2, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_and_vanished_bundles_survive_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    hazards(Dest::Local(dir.path().join("dest"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_and_vanished_bundles_survive_on_s3() {
    let s3 = TestS3::start().await;
    hazards(Dest::S3(&s3)).await;
}

/// DeleteObjects fails from the second request on (2 keys a request): prune stops short,
/// exits non-zero, and every kept snapshot still restores; once the fault is gone a second
/// prune finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_failure_part_way_leaves_every_kept_snapshot_restorable() {
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: fault injection needs the in-process S3 server");
        return;
    }
    let dest = Dest::S3(&s3);
    let env = TestEnv::new().await;
    let (old, web) = history(&env, &dest).await;
    // Keep D4 and D5 (last 2). Three bundles to remove (D1's and D2's `api`, the interrupted
    // D3's) go in two requests, the second fails; so does the one for D1's manifest.
    s3.fail_delete_objects(2);
    let (store, owner) = store_of(&dest);
    let opts = PruneOptions {
        policy: Policy {
            last: Some(Count::N(2)),
            ..Policy::default()
        },
        today: d("2026-12-01"),
        dry_run: false,
        forget_vanished_after: None,
    };
    let report = prune(store.as_ref(), &owner, &opts).await.unwrap();
    assert!(!report.failed.is_empty(), "the fault must bite");
    for date in [D4, D5] {
        assert!(keys(&dest).await.contains(&dest.key(date, "manifest.json")));
        dest.read_command(&env, "verify", &["--date", date])
            .await
            .expect_code(0);
    }
    restore_and_compare(&env, &dest, "web", D5, &web).await;
    restore_and_compare(&env, &dest, "old", D2, &old).await;
    // Every manifest still there says only what is there.
    dest.read_command(&env, "verify", &["--date", "all", "--quick"])
        .await
        .expect_code(0);

    s3.clear_faults();
    let report = prune(store.as_ref(), &owner, &opts).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let left = dates(&dest).await;
    assert_eq!(
        left,
        [D1, D2, D4, D5].map(String::from).into(),
        "D1 and D2 hold what must stay"
    );
    restore_and_compare(&env, &dest, "old", D2, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keep_rule_is_refused_and_nothing_is_touched() {
    let env = TestEnv::new().await;
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    let (store, owner) = store_of(&dest);
    put_snapshot(store.as_ref(), &owner, d("2026-01-01")).await;
    let before = keys(&dest).await;
    for args in [&[][..], &["--keep-daily", "0"][..]] {
        let run = dest.read_command(&env, "prune", args).await;
        run.expect_code(2);
        assert!(
            run.stderr.contains("at least one keep rule"),
            "{}",
            run.stderr
        );
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
    assert_eq!(keys(&dest).await, before);
}

/// `backup --prune` applies `[retention]` after a backup that ended with exit 0, never after
/// a failed one; `after_backup = true` turns it on without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_prunes_after_success_only() {
    let env = TestEnv::new().await;
    env.simple_repo(OWNER, "api", "main");
    let dir = env.path().join("dest");
    let dest = Dest::Local(dir.clone());
    let config = env.path().join("config.toml");
    std::fs::write(&config, "[retention]\nkeep_last = 1\n").unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let d = dest.arg();
    let backup = |date: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "--config",
            cfg.as_str(),
            "backup",
            "--owner",
            OWNER,
            "--dest",
            d.as_str(),
            "--date",
            date,
            "--retries",
            "0",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.command(&refs);
        async move { crate::support::harness::Run::from_output(cmd.output().await.unwrap()) }
    };
    run(backup(D1, &[])).await.expect_code(0);
    run(backup(D2, &[])).await.expect_code(0);
    assert_eq!(
        dates(&dest).await,
        [D1, D2].map(String::from).into(),
        "no --prune, no pruning"
    );

    env.simple_repo(OWNER, "flaky", "main");
    env.emu.fail_repo(OWNER, "flaky", 500);
    run(backup(D4, &["--prune"])).await.expect_code(5);
    assert_eq!(
        dates(&dest).await,
        [D1, D2, D4].map(String::from).into(),
        "a failed backup prunes nothing"
    );

    env.emu.remove_repo(OWNER, "flaky");
    std::fs::write(&config, "[retention]\nkeep_last = 1\nafter_backup = true\n").unwrap();
    let ok = run(backup(D5, &[])).await;
    ok.expect_code(0);
    assert_eq!(
        dates(&dest).await,
        [D5].map(String::from).into(),
        "{}",
        ok.stdout
    );
    assert!(ok.stderr.contains("prune of `acme`"), "{}", ok.stderr);
}

/// The binary's side of a refused delete: it finishes what it can, names what it could not
/// remove on one line each, and exits 4 (the destination refused); nothing kept is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delete_exits_4_and_names_the_object() {
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!("skipped: fault injection needs the in-process S3 server");
        return;
    }
    let env = TestEnv::new().await;
    let dest = Dest::S3(&s3);
    let (store, owner) = store_of(&dest);
    for date in ["2026-01-01", "2026-01-02", "2026-01-03"] {
        put_snapshot(store.as_ref(), &owner, d(date)).await;
    }
    s3.fail_delete_objects(1);
    let run = dest
        .read_command(&env, "prune", &["--keep-last", "1"])
        .await;
    run.expect_code(4);
    assert!(
        run.stderr.contains("could not be removed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("failed: ") && l.contains("2026-01-01/api.bundle")),
        "{}",
        run.stderr
    );
    assert_eq!(
        dates(&dest).await,
        ["2026-01-01", "2026-01-02", "2026-01-03"]
            .map(String::from)
            .into()
    );
    s3.clear_faults();
    dest.read_command(&env, "prune", &["--keep-last", "1"])
        .await
        .expect_code(0);
    assert_eq!(dates(&dest).await, ["2026-01-03"].map(String::from).into());
}
