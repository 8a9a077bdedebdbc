//! S3 Object Lock, server-side encryption and storage class (issue 8), against the test S3
//! server's recorded request headers and its Object Lock emulation (`support/s3/lock.rs`):
//! which headers each write carries, exactly one checksum (`Content-MD5`, as on every upload) on
//! the uploads of a locked object and none anywhere else, the start-up check, and deletes that
//! respect retention.

use std::path::Path;

use bytes::Bytes;
use git_offsite::store::s3::{LockMode, ObjectLock, S3Store, Sse, WriteOptions};
use git_offsite::store::{Key, PutOptions, Source, Store, StoreError, conformance};
use tokio_util::sync::CancellationToken;

use crate::support::git::git;
use crate::support::harness::TestEnv;
use crate::support::s3::TestS3;

/// Headers that carry or announce a request checksum.
const CHECKSUM_HEADERS: [&str; 3] = [
    "content-md5",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-trailer",
];

fn checksums(h: &hyper::HeaderMap) -> Vec<String> {
    h.keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| CHECKSUM_HEADERS.contains(&k.as_str()) || k.starts_with("x-amz-checksum-"))
        .collect()
}

fn header<'a>(h: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Skips (with a note) where only the in-process server can record headers.
async fn local_s3() -> Option<TestS3> {
    let s3 = TestS3::start().await;
    if !s3.can_inject_faults() {
        eprintln!(
            "skipped: needs the in-process S3 server (header recording, Object Lock emulation)"
        );
        return None;
    }
    Some(s3)
}

fn locked(days: u32) -> WriteOptions {
    WriteOptions {
        object_lock: Some(ObjectLock {
            mode: LockMode::Governance,
            days,
        }),
        sse: Some(Sse::Kms {
            key_id: Some("alias/git-offsite".into()),
        }),
        storage_class: Some("REDUCED_REDUNDANCY".into()),
    }
}

fn store(s3: &TestS3, writes: WriteOptions) -> S3Store {
    s3.store_with(|o| o.writes = writes, CancellationToken::new())
}

/// Every write path once: a small put (a manifest), a bundle as one PutObject and as a
/// multipart upload (header in memory + file), a CopyObject and a copy in parts.
async fn write_everything(store: &S3Store, dir: &Path) -> Vec<(Key, Vec<u8>)> {
    let data = conformance::pseudo_random(conformance::MULTIPART_SIZE as usize, 8);
    let file = dir.join("pack");
    std::fs::write(&file, &data).unwrap();
    let head = Bytes::from_static(b"# v2 git bundle\n\n");
    let key = |k: &str| Key::new(format!("t/lock/{k}")).unwrap();
    let opts = PutOptions::default();
    store
        .put(&key("manifest.json"), Bytes::from_static(b"{}"), &opts)
        .await
        .unwrap();
    let small = Source {
        head: head.clone(),
        path: file.clone(),
        len: 1000,
    };
    store
        .put_source(&key("small.bundle"), &small, &opts)
        .await
        .unwrap();
    let big = Source {
        head: head.clone(),
        path: file.clone(),
        len: data.len() as u64,
    };
    store
        .put_source(&key("big.bundle"), &big, &opts)
        .await
        .unwrap();
    store
        .copy(&key("small.bundle"), &key("small-copy.bundle"))
        .await
        .unwrap();
    store
        .copy(&key("big.bundle"), &key("big-copy.bundle"))
        .await
        .unwrap();
    let small_bytes = [&head[..], &data[..1000]].concat();
    let big_bytes = [&head[..], &data[..]].concat();
    vec![
        (key("manifest.json"), b"{}".to_vec()),
        (key("small.bundle"), small_bytes.clone()),
        (key("big.bundle"), big_bytes.clone()),
        (key("small-copy.bundle"), small_bytes),
        (key("big-copy.bundle"), big_bytes),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_carries_lock_sse_and_class_and_lock_uploads_exactly_one_md5() {
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    let store = store(&s3, locked(3));
    store.check().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = write_everything(&store, dir.path()).await;
    for (key, bytes) in &written {
        assert_eq!(&store.get(key).await.unwrap(), bytes, "{key}");
    }

    // Objects are created by 2 PutObjects, 2 CreateMultipartUploads (upload and copy in
    // parts) and 1 CopyObject: each carries retention, encryption and class.
    let creating = ["PutObject", "CreateMultipartUpload", "CopyObject"];
    let counts: Vec<usize> = creating.iter().map(|op| s3.headers(op).len()).collect();
    assert_eq!(counts, [2, 2, 1]);
    let in_three_days = chrono::Utc::now() + chrono::Duration::days(3);
    for op in creating {
        for h in s3.headers(op) {
            assert_eq!(
                header(&h, "x-amz-object-lock-mode"),
                Some("GOVERNANCE"),
                "{op}"
            );
            let until = header(&h, "x-amz-object-lock-retain-until-date")
                .unwrap_or_else(|| panic!("{op} without retain-until"));
            let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
            assert!(
                (until.timestamp() - in_three_days.timestamp()).abs() < 60,
                "{op}: {until}"
            );
            assert_eq!(
                header(&h, "x-amz-server-side-encryption"),
                Some("aws:kms"),
                "{op}"
            );
            assert_eq!(
                header(&h, "x-amz-server-side-encryption-aws-kms-key-id"),
                Some("alias/git-offsite"),
                "{op}"
            );
            assert_eq!(
                header(&h, "x-amz-storage-class"),
                Some("REDUCED_REDUNDANCY"),
                "{op}"
            );
        }
    }
    // Exactly one checksum, Content-MD5, on the requests that carry a locked object's bytes...
    assert!(s3.headers("UploadPart").len() >= 3);
    for op in ["PutObject", "UploadPart"] {
        for h in s3.headers(op) {
            assert_eq!(checksums(&h), ["content-md5"], "{op}");
        }
    }
    // ...and none on anything else (UploadPartCopy has no body; the lock is on its upload).
    assert!(s3.headers("UploadPartCopy").len() >= 3);
    for (op, h) in s3.all_headers() {
        if op != "PutObject" && op != "UploadPart" {
            assert_eq!(checksums(&h), Vec::<String>::new(), "{op}");
        }
    }
    assert_eq!(s3.checksum_rejections(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_options_no_lock_sse_or_class_header_is_sent_and_uploads_carry_only_content_md5() {
    let Some(s3) = local_s3().await else { return };
    let store = store(&s3, WriteOptions::default());
    store.check().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_everything(&store, dir.path()).await;
    store
        .delete(&Key::new("t/lock/small.bundle").unwrap())
        .await
        .unwrap();
    let all = s3.all_headers();
    assert!(all.iter().any(|(op, _)| *op == "UploadPart"));
    let lock_checks = all
        .iter()
        .filter(|(op, _)| *op == "GetObjectLockConfiguration")
        .count();
    assert_eq!(
        lock_checks, 1,
        "only the delete asks whether the bucket has Object Lock"
    );
    for (op, h) in all {
        // Every upload carries its Content-MD5 (`store::s3::digest`), lock or not.
        let expected: &[&str] = match op {
            "PutObject" | "UploadPart" => &["content-md5"],
            _ => &[],
        };
        assert_eq!(checksums(&h), expected, "{op}");
        for name in h.keys().map(|k| k.as_str()) {
            assert!(
                !name.starts_with("x-amz-object-lock")
                    && !name.starts_with("x-amz-server-side-encryption")
                    && name != "x-amz-storage-class",
                "{op} sent {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_sends_aes256_and_no_key_id() {
    let Some(s3) = local_s3().await else { return };
    let store = store(
        &s3,
        WriteOptions {
            sse: Some(Sse::S3),
            ..WriteOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    write_everything(&store, dir.path()).await;
    for op in ["PutObject", "CreateMultipartUpload", "CopyObject"] {
        for h in s3.headers(op) {
            assert_eq!(
                header(&h, "x-amz-server-side-encryption"),
                Some("AES256"),
                "{op}"
            );
            assert!(
                !h.contains_key("x-amz-server-side-encryption-aws-kms-key-id"),
                "{op}"
            );
            assert!(!h.contains_key("x-amz-object-lock-mode"), "{op}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_upload_without_a_checksum_is_refused_as_aws_does() {
    // The emulation itself: what our uploads would meet if they left the MD5 out.
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3.sdk_config())
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build(),
    );
    let until = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() + 86_400);
    let err = client
        .put_object()
        .bucket(&s3.bucket)
        .key("t/no-md5")
        .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Governance)
        .object_lock_retain_until_date(until)
        .body(Bytes::from_static(b"x").into())
        .send()
        .await
        .unwrap_err();
    let text = aws_sdk_s3::error::DisplayErrorContext(err).to_string();
    assert!(
        text.contains("InvalidRequest") && text.contains("Content-MD5 OR x-amz-checksum-"),
        "{text}"
    );
    assert!(s3.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_without_object_lock_is_refused_before_any_write() {
    let Some(s3) = local_s3().await else { return };
    let err = store(&s3, locked(1)).check().await.unwrap_err();
    assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&s3.bucket)
            && msg.contains("Object Lock is not enabled")
            && msg.contains("--object-lock-mode"),
        "{msg}"
    );
    assert_eq!(s3.requests("GetObjectLockConfiguration"), 1);
    // A lock bucket passes.
    s3.enable_object_lock();
    store(&s3, locked(1)).check().await.unwrap();
}

/// `git-offsite backup --owner acme --dest s3://<bucket>/git <extra>` against this server.
async fn backup(env: &TestEnv, s3: &TestS3, extra: &[&str]) -> std::process::Output {
    let dest = format!("s3://{}/git", s3.bucket);
    let mut args = vec!["backup", "--owner", "acme", "--dest", &dest];
    args.extend_from_slice(extra);
    let mut cmd = env.command(&args);
    cmd.envs(s3.env());
    cmd.output().await.unwrap()
}

/// [`backup`], which must succeed.
async fn backup_ok(env: &TestEnv, s3: &TestS3, extra: &[&str]) {
    let out = backup(env, s3, extra).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_with_object_lock_on_a_bucket_without_it_exits_4_and_uploads_nothing() {
    let Some(s3) = local_s3().await else { return };
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    let out = backup(
        &env,
        &s3,
        &[
            "--object-lock-mode",
            "compliance",
            "--object-lock-days",
            "7",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&s3.bucket) && stderr.contains("Object Lock is not enabled"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(s3.keys().await.is_empty());
    assert_eq!(env.emu.stats().git_requests, 0, "nothing cloned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_object_lock_locks_bundles_copies_and_manifests() {
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    let env = TestEnv::new().await;
    let repo = env.simple_repo("acme", "api", "main");
    for date in ["2026-11-24", "2026-11-25"] {
        backup_ok(
            &env,
            &s3,
            &[
                "--date",
                date,
                "--object-lock-mode",
                "governance",
                "--object-lock-days",
                "1",
                "--sse",
                "AES256",
                "--storage-class",
                "REDUCED_REDUNDANCY",
            ],
        )
        .await;
    }
    // Day one uploads the bundle and the manifest, day two copies the unchanged bundle.
    let puts = s3.headers("PutObject");
    let copies = s3.headers("CopyObject");
    assert!(
        puts.len() >= 3 && !copies.is_empty(),
        "{} puts, {} copies",
        puts.len(),
        copies.len()
    );
    for (op, h) in puts
        .iter()
        .map(|h| ("PutObject", h))
        .chain(copies.iter().map(|h| ("CopyObject", h)))
    {
        assert_eq!(
            header(h, "x-amz-object-lock-mode"),
            Some("GOVERNANCE"),
            "{op}"
        );
        assert!(
            h.contains_key("x-amz-object-lock-retain-until-date"),
            "{op}"
        );
        assert_eq!(
            header(h, "x-amz-server-side-encryption"),
            Some("AES256"),
            "{op}"
        );
        assert_eq!(
            header(h, "x-amz-storage-class"),
            Some("REDUCED_REDUNDANCY"),
            "{op}"
        );
    }
    for h in &puts {
        assert_eq!(checksums(h), ["content-md5"]);
    }
    // The copied bundle is a bundle stock git accepts.
    let bundle = env.path().join("api.bundle");
    std::fs::write(&bundle, s3.get("git/acme/2026-11-25/api.bundle").await).unwrap();
    git(&repo, &["bundle", "verify", bundle.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_skip_retained_versions_and_remove_expired_ones_for_good() {
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    let store = store(&s3, locked(2));
    let retained = Key::new("t/old/retained.bundle").unwrap();
    let expired = Key::new("t/old/expired.bundle").unwrap();
    for k in [&retained, &expired] {
        store
            .put(k, Bytes::from_static(b"bundle"), &PutOptions::default())
            .await
            .unwrap();
    }
    s3.set_retention(expired.as_str(), chrono::Utc::now().timestamp() - 60);

    let err = store.delete(&retained).await.unwrap_err();
    let StoreError::Retained { key, until } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(key, retained.as_str());
    let until = until.expect("the date HEAD reported");
    let in_two_days = chrono::Utc::now() + chrono::Duration::days(2);
    assert!((until - in_two_days).num_seconds().abs() < 60, "{until}");
    assert!(err.to_string().contains("under retention until"), "{err}");
    assert_eq!(
        s3.requests("DeleteObject"),
        0,
        "a retained object is not even tried"
    );

    store.delete(&expired).await.unwrap();
    // Deleted as a version: gone for good, not hidden behind a delete marker.
    assert_eq!(s3.keys().await, ["t/old/retained.bundle"]);
    assert_eq!(s3.delete_marked(), Vec::<String>::new());
    // Deleting what is gone is fine.
    store.delete(&expired).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_in_a_lock_bucket_respects_retention_without_lock_flags() {
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    // A prune run: no --object-lock-* given, the bucket's lock found by asking.
    let writer = store(&s3, locked(2));
    let keys: Vec<Key> = ["a", "b", "c"]
        .iter()
        .map(|k| Key::new(format!("t/old/{k}.bundle")).unwrap())
        .collect();
    for k in &keys {
        writer
            .put(k, Bytes::from_static(b"bundle"), &PutOptions::default())
            .await
            .unwrap();
    }
    for k in [&keys[0], &keys[2]] {
        s3.set_retention(k.as_str(), chrono::Utc::now().timestamp() - 60);
    }
    s3.clear_recorded();
    let pruner = store(&s3, WriteOptions::default());
    let failures = pruner.delete_many(&keys).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].key, keys[1]);
    assert!(
        matches!(
            failures[0].error,
            StoreError::Retained { until: Some(_), .. }
        ),
        "{:?}",
        failures[0].error
    );
    assert_eq!(s3.keys().await, ["t/old/b.bundle"]);
    assert_eq!(
        s3.delete_marked(),
        Vec::<String>::new(),
        "versions deleted, not hidden"
    );
    assert_eq!(s3.requests("GetObjectLockConfiguration"), 1);
    assert_eq!(
        s3.requests("DeleteObjects"),
        0,
        "bare-key batches would only add markers"
    );
    // Once asked, the store remembers: no second lock check.
    pruner.delete(&keys[1]).await.unwrap_err();
    assert_eq!(s3.requests("GetObjectLockConfiguration"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_skips_what_is_still_retained_and_removes_the_rest() {
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock();
    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    for date in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        let lock = ["--date", date, "--object-lock-mode", "governance"];
        backup_ok(
            &env,
            &s3,
            &[&lock[..], &["--object-lock-days", "2", "--full"]].concat(),
        )
        .await;
    }
    // The oldest snapshot's retention has run out; the middle one's has not.
    for key in s3.keys().await {
        if key.contains("2026-11-20") {
            s3.set_retention(&key, chrono::Utc::now().timestamp() - 60);
        }
    }
    let dest = format!("s3://{}/git", s3.bucket);
    let mut cmd = env.command(&[
        "prune",
        "--owner",
        "acme",
        "--dest",
        &dest,
        "--keep-last",
        "1",
    ]);
    cmd.envs(s3.env());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let skipped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skipped:"))
        .collect();
    assert!(
        !skipped.is_empty()
            && skipped
                .iter()
                .all(|l| l.contains("2026-11-21") && l.contains("under retention until")),
        "{stderr}"
    );
    let keys = s3.keys().await;
    assert!(!keys.iter().any(|k| k.contains("2026-11-20")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains("2026-11-21/api.bundle")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains("2026-11-22/api.bundle")),
        "{keys:?}"
    );
    assert_eq!(
        s3.delete_marked(),
        Vec::<String>::new(),
        "no version hidden behind a marker"
    );
    // Skipping what is retained is the expected state of a lock bucket, not a failure.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_default_retention_gets_checksums_without_lock_flags() {
    // AWS demands the checksum whenever a retention applies, the bucket's default included.
    let Some(s3) = local_s3().await else { return };
    s3.enable_object_lock_with_default_retention(1);
    let store = store(&s3, WriteOptions::default());
    store.check().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (key, bytes) in write_everything(&store, dir.path()).await {
        assert_eq!(store.get(&key).await.unwrap(), bytes, "{key}");
    }
    for op in ["PutObject", "UploadPart"] {
        for h in s3.headers(op) {
            assert_eq!(checksums(&h), ["content-md5"], "{op}");
            assert!(
                !h.contains_key("x-amz-object-lock-mode"),
                "{op}: no flags, no lock headers"
            );
        }
    }
    // And the default retention is respected on delete.
    let err = store
        .delete(&Key::new("t/lock/manifest.json").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Retained { .. }), "{err:?}");
}
