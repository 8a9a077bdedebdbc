//! Upload integrity (issue 9, "Reruns, overlaps and old dates"): every PutObject and
//! UploadPart carries a `Content-MD5`, the test S3 server checks it as S3 does, and a byte
//! damaged in flight is answered `400 BadDigest`. Damaged once, the store sends that request
//! again and the bundle is stored byte for byte; damaged on every attempt, that repository
//! fails with a message naming the cause and the others are backed up. Either way nothing a
//! manifest points to is damaged ([`assert_consistent`]), and no request carries the flexible
//! checksums several S3-compatible stores reject.

use md5::{Digest, Md5};

use crate::support::bitbucket::RepoOpts;
use crate::support::consistency::assert_consistent;
use crate::support::git::{big_repo, simple_repo};
use crate::support::harness::{Run, TestEnv};
use crate::support::readback::{Dest, entry};
use crate::support::s3::{CheckedUpload, Flip, TEST_PART_SIZE, TestS3};

const OWNER: &str = "acme";
/// Above the 5 MiB part size: `aaa-big` goes up as a two-part multipart upload.
const BIG: u64 = 7 << 20;

fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// `aaa-big` (multipart) and `small-0`, `small-1` (one PutObject each).
fn workspace(env: &TestEnv) {
    let fixtures = env.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let repo = big_repo(&fixtures, "aaa-big", BIG);
    env.emu
        .add_repo(OWNER, "aaa-big", &repo, RepoOpts::default());
    for slug in ["small-0", "small-1"] {
        let repo = simple_repo(&fixtures, slug, "main");
        env.emu.add_repo(OWNER, slug, &repo, RepoOpts::default());
    }
}

/// Skips (with a note) when the S3 server is external and cannot damage requests.
async fn fault_s3() -> Option<TestS3> {
    let s3 = TestS3::start().await;
    if s3.can_inject_faults() {
        Some(s3)
    } else {
        eprintln!("skipped: needs the in-process S3 server to damage requests");
        None
    }
}

/// A backup with 5 MiB parts and `--retries <retries>` (the pipeline's own re-uploads).
async fn backup(env: &TestEnv, dest: &Dest<'_>, retries: &str) -> Run {
    let arg = dest.arg();
    dest.run(
        env,
        &[
            "backup",
            "--owner",
            OWNER,
            "--dest",
            &arg,
            "--part-size=5MiB",
            "--retries",
            retries,
            "--retry-delay",
            "50ms",
        ],
    )
    .await
}

fn content_md5(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

fn bundle(slug: &str) -> String {
    format!("{slug}.bundle")
}

fn damaged(checked: &[CheckedUpload]) -> Vec<&CheckedUpload> {
    checked.iter().filter(|c| c.flipped).collect()
}

/// A byte flipped in one UploadPart of `aaa-big` and in the PutObject of `small-0`: the store
/// answers BadDigest, the client sends the same bytes again, and with the pipeline's own
/// re-uploads off (`--retries 0`) that can only be the store's request retry. The run
/// succeeds and each stored bundle holds exactly the bytes the client hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_byte_damaged_once_in_flight_is_sent_again_and_stored_intact() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env);
    s3.flip_a_byte("UploadPart", &bundle("aaa-big"), Flip::Once);
    s3.flip_a_byte("PutObject", &bundle("small-0"), Flip::Once);
    let dest = Dest::S3(&s3);

    backup(&env, &dest, "0").await.expect_code(0);

    let checked = s3.uploads_checked();
    let damaged = damaged(&checked);
    assert_eq!(damaged.len(), 2, "{checked:#?}");
    for d in &damaged {
        assert!(d.bad_digest, "a damaged body was accepted: {d:?}");
        // The same request again, intact and accepted: the same part, the same bytes.
        let resent = checked
            .iter()
            .filter(|c| c.path == d.path && c.part == d.part && !c.flipped)
            .collect::<Vec<_>>();
        assert!(
            resent.len() == 1 && !resent[0].bad_digest && resent[0].sent_md5 == d.sent_md5,
            "{d:?} was not re-sent once intact: {checked:#?}"
        );
    }
    // One multipart upload: the damaged part was sent again, not the whole bundle.
    assert_eq!(s3.requests("CreateMultipartUpload"), 1);

    let checked_store = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked_store
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        ["aaa-big", "small-0", "small-1"]
    );
    // Byte for byte what the client hashed: the whole small bundle, the damaged big part.
    for d in damaged {
        let key = d.path.split_once(&format!("/{}/", s3.bucket)).unwrap().1;
        let stored = s3.get(key).await;
        let range = match d.part {
            None => stored.as_slice(),
            Some(n) => {
                let start = (n - 1) * TEST_PART_SIZE as usize;
                &stored[start..(start + TEST_PART_SIZE as usize).min(stored.len())]
            }
        };
        assert_eq!(content_md5(range), d.sent_md5, "{key} part {:?}", d.part);
    }
}

/// A byte flipped in every attempt of `small-1`'s PutObject and of `aaa-big`'s parts: both
/// repositories fail with a message naming the damage, `small-0` is backed up, the run exits
/// 5 like any run with failed repositories, and neither damaged bundle nor an open multipart
/// upload is left in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_byte_damaged_on_every_attempt_fails_only_that_repository() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env);
    s3.flip_a_byte("UploadPart", &bundle("aaa-big"), Flip::Always);
    s3.flip_a_byte("PutObject", &bundle("small-1"), Flip::Always);
    let dest = Dest::S3(&s3);

    let run = backup(&env, &dest, "1").await;
    run.expect_code(5);

    let manifest = dest.manifest(&today()).await;
    for slug in ["aaa-big", "small-1"] {
        let e = entry(&manifest, slug);
        assert_eq!(e["status"], "failed", "{e}");
        assert!(e["key"].is_null(), "{e}");
        let error = e["error"].as_str().unwrap();
        assert!(
            error.contains("BadDigest") && error.contains("damages uploads"),
            "{slug}: {error}"
        );
        assert!(!error.contains('\n'), "{slug}: not one line: {error}");
        assert!(run.stderr.contains(slug), "{}", run.stderr);
    }
    assert_eq!(entry(&manifest, "small-0")["status"], "ok");
    assert!(run.stderr.contains("damages uploads"), "{}", run.stderr);

    // Each damaged PutObject was sent under the store's retry policy (3 attempts), for each
    // of the pipeline's 2 uploads of the bundle, and every one was refused.
    let small_1: Vec<CheckedUpload> = s3
        .uploads_checked()
        .into_iter()
        .filter(|c| c.path.ends_with(&bundle("small-1")))
        .collect();
    assert_eq!(small_1.len(), 6, "{small_1:#?}");
    assert!(small_1.iter().all(|c| c.flipped && c.bad_digest));

    let keys = s3.keys().await;
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with(&bundle("aaa-big")) || k.ends_with(&bundle("small-1"))),
        "a damaged bundle is stored: {keys:?}"
    );
    let checked = assert_consistent(&dest, &env.path().join("check"), &[]).await;
    assert_eq!(
        checked
            .restorable_on(&today())
            .into_iter()
            .collect::<Vec<_>>(),
        ["small-0"]
    );
}

/// Every PutObject and UploadPart the server saw (bundles, manifest, run lock) carried a
/// `Content-MD5` that is the MD5 of the bytes sent, and no request carried `x-amz-checksum-*`,
/// `x-amz-sdk-checksum-algorithm` or an aws-chunked trailer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_upload_carries_a_correct_content_md5_and_no_flexible_checksum() {
    let Some(s3) = fault_s3().await else { return };
    let env = TestEnv::new().await;
    workspace(&env);
    let dest = Dest::S3(&s3);

    backup(&env, &dest, "0").await.expect_code(0);

    let checked = s3.uploads_checked();
    for op in ["PutObject", "UploadPart", "LockObject"] {
        let of_op: Vec<&CheckedUpload> = checked.iter().filter(|c| c.op == op).collect();
        assert!(!of_op.is_empty(), "no {op} seen");
        if op != "LockObject" {
            // LockObject also counts the lock's GETs and DELETEs, which have no body.
            assert_eq!(of_op.len(), s3.requests(op), "every {op} body was checked");
        }
        for c in of_op {
            assert_eq!(c.content_md5.as_deref(), Some(c.sent_md5.as_str()), "{c:?}");
            assert!(!c.flipped && !c.bad_digest, "{c:?}");
        }
    }
    // `aaa-big` went up in two parts.
    assert_eq!(checked.iter().filter(|c| c.op == "UploadPart").count(), 2);
    for (op, headers) in s3.all_headers() {
        for name in headers.keys().map(|n| n.as_str()) {
            assert!(
                !name.starts_with("x-amz-checksum-")
                    && name != "x-amz-sdk-checksum-algorithm"
                    && name != "x-amz-trailer",
                "{op} carried {name}"
            );
        }
    }
    assert!(s3.checksum_rejections().is_empty());
    assert_consistent(&dest, &env.path().join("check"), &[]).await;
}
