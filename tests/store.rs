//! The store conformance suite against every store, plus what only S3 has.
//!
//! `store_suite!` stamps one test per property of [`git_offsite::store::conformance`] for a
//! store, so a failure names both (`s3::abort_leaves_nothing`) and one broken property does not
//! hide the others. The S3 store runs against a real S3 server (`support::s3`, strict about
//! checksum headers) with 5 MiB parts.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use git_offsite::store::fs::FsStore;
use git_offsite::store::s3::{S3Options, S3Store};
use git_offsite::store::{Key, PutOptions, Source, Store, StoreError, conformance};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::s3::TestS3;

/// What a property needs: a store, a key prefix of its own, a scratch directory for source
/// files, and a way to leave behind what a crashed upload would.
trait Fixture {
    fn store(&self) -> &dyn Store;
    fn base(&self) -> &Key;
    fn scratch(&self) -> &Path;
    async fn leave_incomplete(&self, key: Key);
}

struct FsFixture {
    store: FsStore,
    base: Key,
    /// Outside the destination, like the bundle files of a real run.
    scratch: std::path::PathBuf,
    _dir: TempDir,
}

impl FsFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scratch")).unwrap();
        let store = FsStore::new(dir.path().join("dest"));
        store.check().await.unwrap();
        Self {
            store,
            base: Key::new("t").unwrap(),
            scratch: dir.path().join("scratch"),
            _dir: dir,
        }
    }
}

impl Fixture for FsFixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    fn base(&self) -> &Key {
        &self.base
    }
    fn scratch(&self) -> &Path {
        &self.scratch
    }
    async fn leave_incomplete(&self, key: Key) {
        self.store.leave_incomplete(&key).unwrap();
    }
}

struct S3Fixture {
    s3: TestS3,
    store: S3Store,
    base: Key,
    scratch: TempDir,
}

impl S3Fixture {
    async fn new() -> Self {
        let s3 = TestS3::start().await;
        let store = s3.store();
        store.check().await.unwrap();
        Self {
            base: Key::new(s3.prefix.clone()).unwrap(),
            store,
            s3,
            scratch: tempfile::tempdir().unwrap(),
        }
    }
}

impl Fixture for S3Fixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    fn base(&self) -> &Key {
        &self.base
    }
    fn scratch(&self) -> &Path {
        self.scratch.path()
    }
    async fn leave_incomplete(&self, key: Key) {
        self.s3.leave_incomplete_upload(key.as_str()).await;
    }
}

macro_rules! store_suite {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip() {
                let f = $fixture;
                conformance::round_trip(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_file_small() {
                let f = $fixture;
                conformance::put_file_small(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_file_multipart() {
                let f = $fixture;
                conformance::put_file_multipart(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_source_with_head() {
                let f = $fixture;
                conformance::put_source_with_head(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_if_absent() {
                let f = $fixture;
                conformance::put_if_absent(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_creators() {
                let f = $fixture;
                conformance::concurrent_creators(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_if_version() {
                let f = $fixture;
                conformance::put_if_version(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn overwrite() {
                let f = $fixture;
                conformance::overwrite(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_exact_prefix() {
                let f = $fixture;
                conformance::list_exact_prefix(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn missing_key() {
                let f = $fixture;
                conformance::missing_key(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete() {
                let f = $fixture;
                conformance::delete(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_many() {
                let f = $fixture;
                conformance::delete_many(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn odd_keys() {
                let f = $fixture;
                conformance::odd_keys(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn abort_leaves_nothing() {
                let f = $fixture;
                conformance::abort_leaves_nothing(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_stream() {
                let f = $fixture;
                conformance::get_stream(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_folder() {
                let f = $fixture;
                conformance::list_folder(f.store(), f.base()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn copy() {
                let f = $fixture;
                conformance::copy(f.store(), f.base(), f.scratch()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sweep_incomplete() {
                let f = $fixture;
                conformance::sweep_incomplete(f.store(), f.base(), |k| f.leave_incomplete(k)).await;
            }
        }
    };
}

store_suite!(fs, FsFixture::new().await);
store_suite!(s3, S3Fixture::new().await);

/// Things only a directory has.
mod fs_only {
    use super::*;

    #[tokio::test]
    async fn check_creates_the_root_and_rejects_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/backups");
        FsStore::new(root.clone()).check().await.unwrap();
        assert!(root.is_dir());
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "the write probe must not stay"
        );

        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = FsStore::new(file.clone()).check().await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(file.to_str().unwrap()) && msg.contains("not a directory"),
            "{msg}"
        );
    }

    /// A pruned date folder does not stay behind as an empty directory; its parent does
    /// while it holds another folder.
    #[tokio::test]
    async fn delete_many_removes_the_directories_it_empties() {
        let f = FsFixture::new().await;
        for k in [
            "t/a/2026-01-01/x.bundle",
            "t/a/2026-01-01/manifest.json",
            "t/a/2026-01-02/y.bundle",
        ] {
            let k = Key::new(k).unwrap();
            f.store
                .put(&k, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        let gone = ["t/a/2026-01-01/x.bundle", "t/a/2026-01-01/manifest.json"]
            .map(|k| Key::new(k).unwrap());
        assert!(f.store.delete_many(&gone).await.unwrap().is_empty());
        assert!(!f.store.root().join("t/a/2026-01-01").exists());
        assert!(f.store.root().join("t/a/2026-01-02/y.bundle").is_file());
        let last = [Key::new("t/a/2026-01-02/y.bundle").unwrap()];
        assert!(f.store.delete_many(&last).await.unwrap().is_empty());
        assert!(!f.store.root().join("t").exists() && f.store.root().is_dir());
    }

    #[tokio::test]
    async fn a_dropped_copy_leaves_no_temp_file() {
        let f = FsFixture::new().await;
        let data = conformance::pseudo_random(64 * 1024 * 1024, 5);
        let src = f.scratch().join("huge");
        std::fs::write(&src, &data).unwrap();
        let key = Key::new("t/huge.bundle").unwrap();
        let opts = PutOptions::default();
        let put = f.store.put_file(&key, &src, data.len() as u64, &opts);
        // Give the copy a moment to start, then walk away from it.
        let _ = tokio::time::timeout(Duration::from_millis(5), put).await;
        // The blocking copy notices at its next chunk; wait for it to clean up.
        for _ in 0..200 {
            if f.store
                .sweep_incomplete("t/", Duration::ZERO)
                .await
                .unwrap()
                == 0
                && std::fs::read_dir(f.store.root().join("t")).map_or(0, |d| d.count()) <= 1
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let leftovers: Vec<_> = std::fs::read_dir(f.store.root().join("t"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        // Either the copy finished before the drop was noticed (a whole object) or nothing.
        match f.store.head(&key).await.unwrap() {
            Some(meta) => assert_eq!(meta.size, data.len() as u64),
            None => assert!(leftovers.is_empty(), "{leftovers:?}"),
        }
    }
}

/// Things only S3 has: error mapping, the checksum policy, metadata, multipart aborts.
mod s3_only {
    use super::*;
    use crate::support::s3::TEST_PART_SIZE;

    fn skip_without_faults(s3: &TestS3) -> bool {
        if !s3.can_inject_faults() {
            eprintln!(
                "skipped: fault injection needs the in-process S3 server, not an external one"
            );
        }
        !s3.can_inject_faults()
    }

    fn big_file(dir: &Path, seed: u64) -> (std::path::PathBuf, Vec<u8>) {
        let data = conformance::pseudo_random(conformance::MULTIPART_SIZE as usize, seed);
        let path = dir.join(format!("big-{seed}.bundle"));
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_bucket_is_bucket_not_found() {
        let s3 = TestS3::start().await;
        let store = s3.store_with(
            |o| o.bucket = "no-such-bucket-here".into(),
            CancellationToken::new(),
        );
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, StoreError::BucketNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("no-such-bucket-here") && msg.contains(&s3.endpoint),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forbidden_is_access_denied_and_says_so() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        s3.deny_all(true);
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("credentials") && msg.contains("403") && !msg.contains("does not exist"),
            "{msg}"
        );
        assert!(!msg.contains(&s3.secret_key));

        let key = Key::new("t/x").unwrap();
        let err = store
            .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        assert!(err.to_string().contains("AccessDenied"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_region_names_the_right_one() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        s3.wrong_region(Some("eu-central-1"));
        let err = s3.store().check().await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
        assert!(
            msg.contains("eu-central-1") && msg.contains("--s3-region"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_nobody_listens_on_is_unreachable() {
        let s3 = TestS3::start().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let store = s3.store_with(
            |o| o.endpoint = Some(endpoint.clone()),
            CancellationToken::new(),
        );
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(&endpoint), "{err}");
    }

    /// The strict server refuses flexible-checksum headers with 501, as R2/B2 did; our
    /// requests pass, while the SDK's defaults do not (so the strictness is real).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_strict_server_accepts_everything_we_send() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 1);
        let key = Key::new("t/strict/big.bundle").unwrap();
        store.check().await.unwrap();
        store
            .put_file(&key, &big, data.len() as u64, &PutOptions::default())
            .await
            .unwrap();
        // A bundle as git-offsite uploads it: a header in memory, then a pack file; once in
        // parts and once in a single PutObject.
        let header = Bytes::from_static(b"# v2 git bundle\n\n");
        let headed = Key::new("t/strict/headed.bundle").unwrap();
        store
            .put_source(
                &headed,
                &Source {
                    head: header.clone(),
                    path: big.clone(),
                    len: data.len() as u64,
                },
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let headed_small = Key::new("t/strict/headed-small.bundle").unwrap();
        store
            .put_source(
                &headed_small,
                &Source {
                    head: header.clone(),
                    path: big.clone(),
                    len: 1000,
                },
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let small = Key::new("t/strict/small").unwrap();
        store
            .put(&small, Bytes::from_static(b"hello"), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(store.get(&key).await.unwrap(), data);
        let with_header = |n: usize| [&header[..], &data[..n]].concat();
        assert_eq!(store.get(&headed).await.unwrap(), with_header(data.len()));
        assert_eq!(store.get(&headed_small).await.unwrap(), with_header(1000));
        assert!(store.head(&small).await.unwrap().is_some());
        assert_eq!(store.list("t/strict/").await.unwrap().len(), 4);
        store.delete(&small).await.unwrap();
        store.sweep_incomplete("t/", Duration::ZERO).await.unwrap();
        assert_eq!(s3.checksum_rejections(), Vec::<String>::new());
        assert!(s3.requests("UploadPart") >= 6 && s3.requests("PutObject") == 2);

        // Control: a client on the SDK's defaults is refused.
        let conf = aws_sdk_s3::config::Builder::from(&s3.sdk_config())
            .force_path_style(true)
            .build();
        let defaults = aws_sdk_s3::Client::from_conf(conf);
        let refused = defaults
            .put_object()
            .bucket(&s3.bucket)
            .key("t/strict/default")
            .body(Bytes::from_static(b"x").into())
            .send()
            .await;
        assert!(
            refused.is_err(),
            "the strict server let a default-checksum PutObject through"
        );
        assert_eq!(
            s3.checksum_rejections().len(),
            1,
            "{:?}",
            s3.checksum_rejections()
        );
    }

    /// DeleteObjects must carry a checksum; the strict server (like R2 and B2) refuses the
    /// SDK's CRC32 header, so it goes with Content-MD5. A batch failing as a whole after the
    /// first is a failure of each of its keys; the first failing is the call failing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_many_batches_with_content_md5_and_reports_a_failed_batch_per_key() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        let keys: Vec<Key> = (0..5)
            .map(|i| Key::new(format!("t/del/{i}.bundle")).unwrap())
            .collect();
        for k in &keys {
            store
                .put(k, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        let failures = store.delete_many(&keys[..3]).await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(s3.checksum_rejections(), Vec::<String>::new());
        assert_eq!(s3.requests("DeleteObjects"), 2, "3 keys in batches of 2");

        // Two keys left, plus one absent: two requests; the second fails as a whole.
        s3.fail_delete_objects(2);
        let rest = [
            keys[3].clone(),
            Key::new("t/del/absent").unwrap(),
            keys[4].clone(),
        ];
        let failures = store.delete_many(&rest).await.unwrap();
        let failed: Vec<&str> = failures.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(failed, ["t/del/4.bundle"]);
        assert!(
            failures[0].error.to_string().contains("InternalError"),
            "{}",
            failures[0].error
        );
        assert_eq!(s3.keys().await, ["t/del/4.bundle"]);

        // Every request failing: nothing could be done, the call fails.
        s3.fail_delete_objects(1);
        let err = store.delete_many(&keys[4..]).await.unwrap_err();
        assert!(err.to_string().contains("DeleteObjects"), "{err}");
        s3.clear_faults();
        assert!(store.delete_many(&keys[4..]).await.unwrap().is_empty());
        assert_eq!(s3.keys().await, Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metadata_and_content_type_round_trip() {
        let s3 = TestS3::start().await;
        let store = s3.store();
        let dir = tempfile::tempdir().unwrap();
        let opts = PutOptions {
            content_type: Some("application/x-git-bundle".into()),
            metadata: [
                ("sha256".to_string(), "0f".repeat(32)),
                ("tool".to_string(), "git-offsite".into()),
            ]
            .into(),
            on_progress: None,
        };
        let (big, data) = big_file(dir.path(), 2);
        let small = dir.path().join("small");
        std::fs::write(&small, b"small").unwrap();
        for (name, path, size) in [("big", &big, data.len() as u64), ("small", &small, 5)] {
            let key = Key::new(format!("{}/meta/{name}.bundle", s3.prefix)).unwrap();
            store.put_file(&key, path, size, &opts).await.unwrap();
            let head = store.head(&key).await.unwrap().unwrap();
            assert_eq!(head.metadata, opts.metadata, "{name}");
            assert_eq!(
                s3.metadata(key.as_str()).await.get("sha256"),
                opts.metadata.get("sha256")
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_part_aborts_the_upload() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 3);
        let key = Key::new("t/fail/big.bundle").unwrap();
        s3.fail_upload_part(2);
        let err = store
            .put_file(&key, &big, data.len() as u64, &PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Request {
                    op: "UploadPart",
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("InternalError")
                && msg.contains("500")
                && msg.contains("t/fail/big.bundle"),
            "{msg}"
        );
        assert!(store.head(&key).await.unwrap().is_none());
        assert_eq!(s3.open_multipart_uploads().await, 0);
        assert_eq!(s3.requests("AbortMultipartUpload"), 1);
        assert_eq!(s3.requests("CompleteMultipartUpload"), 0);
    }

    /// A part body is `path + offset + length`, so the SDK can send it again after a 500.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transient_part_failure_is_retried() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 4);
        let key = Key::new("t/retry/big.bundle").unwrap();
        s3.fail_upload_part_once(2);
        store
            .put_file(&key, &big, data.len() as u64, &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s3.get(key.as_str()).await, data);
        assert_eq!(s3.requests("UploadPart"), 4, "three parts and one retry");
        assert_eq!(s3.open_multipart_uploads().await, 0);
    }

    /// The SDK's retry of a part that starts with the bundle header rebuilds the whole body:
    /// header and file range again, not just what was left of the file. One part in flight,
    /// so the part that fails is the first one, the one holding the header.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_first_part_sends_the_header_again() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store_with(|o| o.parts_in_flight = 1, CancellationToken::new());
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 5);
        let header = Bytes::from_static(b"# v2 git bundle\n0123 refs/heads/main\n\n");
        let key = Key::new("t/retry/headed.bundle").unwrap();
        s3.fail_upload_part_once(1);
        store
            .put_source(
                &key,
                &Source {
                    head: header.clone(),
                    path: big,
                    len: data.len() as u64,
                },
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            s3.get(key.as_str()).await,
            [&header[..], &data[..]].concat()
        );
        assert_eq!(s3.requests("UploadPart"), 4, "three parts and one retry");
        assert_eq!(s3.open_multipart_uploads().await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_in_flight_is_a_bound() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store_with(|o| o.parts_in_flight = 2, CancellationToken::new());
        s3.slow_upload_parts(Duration::from_millis(200));
        let dir = tempfile::tempdir().unwrap();
        let data = conformance::pseudo_random(4 * TEST_PART_SIZE as usize + 1, 6);
        let path = dir.path().join("five-parts");
        std::fs::write(&path, &data).unwrap();
        let key = Key::new("t/bound/x.bundle").unwrap();
        store
            .put_file(&key, &path, data.len() as u64, &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s3.requests("UploadPart"), 5);
        assert_eq!(s3.max_parts_in_flight(), 2);
        assert_eq!(s3.get(key.as_str()).await, data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_stops_answering_fails_the_request_after_the_timeout() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store_with(
            |o| o.timeout = Duration::from_secs(1),
            CancellationToken::new(),
        );
        s3.hang("PutObject");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::write(&path, b"small bundle").unwrap();
        let key = Key::new("t/hang/x.bundle").unwrap();
        let opts = PutOptions::default();
        let put = store.put_file(&key, &path, 12, &opts);
        let err = tokio::time::timeout(Duration::from_secs(120), put)
            .await
            .expect("a hung PutObject must fail within the S3 timeout, not hang")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PutObject") && err.contains("timed out"),
            "{err}"
        );
        assert!(
            s3.requests("PutObject") >= 2,
            "the timed-out attempt is retried"
        );
        s3.clear_faults();
        store
            .put_file(&key, &path, 12, &PutOptions::default())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelling_aborts_the_upload_before_returning() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let cancel = CancellationToken::new();
        let store = s3.store_with(|_| {}, cancel.clone());
        s3.slow_upload_parts(Duration::from_secs(30));
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 7);
        let key = Key::new("t/cancel/big.bundle").unwrap();
        let canceller = async {
            while s3.requests("UploadPart") == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cancel.cancel();
        };
        let opts = PutOptions::default();
        let (result, ()) = tokio::join!(
            store.put_file(&key, &big, data.len() as u64, &opts),
            canceller
        );
        assert!(
            matches!(result, Err(StoreError::Cancelled { .. })),
            "{result:?}"
        );
        assert_eq!(s3.open_multipart_uploads().await, 0);
        assert!(store.head(&key).await.unwrap().is_none());
        // A cancelled store starts nothing new.
        let err = store
            .put_file(&key, &big, data.len() as u64, &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Cancelled { .. }), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_upload_is_aborted() {
        let s3 = TestS3::start().await;
        if skip_without_faults(&s3) {
            return;
        }
        let store = s3.store();
        s3.slow_upload_parts(Duration::from_secs(30));
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 8);
        let key = Key::new("t/drop/big.bundle").unwrap();
        {
            let opts = PutOptions::default();
            let put = store.put_file(&key, &big, data.len() as u64, &opts);
            tokio::pin!(put);
            let started = async {
                while s3.requests("UploadPart") == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                r = &mut put => panic!("the upload should still be running: {r:?}"),
                () = started => {}
            }
            assert_eq!(s3.open_multipart_uploads().await, 1);
        } // dropped here
        for _ in 0..500 {
            if s3.open_multipart_uploads().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            s3.open_multipart_uploads().await,
            0,
            "the drop guard did not abort the upload"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_is_reported_per_finished_part() {
        let s3 = TestS3::start().await;
        let store = s3.store();
        let dir = tempfile::tempdir().unwrap();
        let (big, data) = big_file(dir.path(), 9);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let opts = PutOptions {
            on_progress: Some(std::sync::Arc::new(move |n| sink.lock().unwrap().push(n))),
            ..PutOptions::default()
        };
        let key = Key::new(format!("{}/progress.bundle", s3.prefix)).unwrap();
        store
            .put_file(&key, &big, data.len() as u64, &opts)
            .await
            .unwrap();
        let mut parts = seen.lock().unwrap().clone();
        parts.sort();
        let last = data.len() as u64 - 2 * TEST_PART_SIZE;
        assert_eq!(parts, [last, TEST_PART_SIZE, TEST_PART_SIZE]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn debug_output_has_no_credentials() {
        let s3 = TestS3::start().await;
        let opts = S3Options::new(s3.bucket.clone());
        let store =
            S3Store::from_sdk_config(&s3.sdk_config(), opts, CancellationToken::new()).unwrap();
        let dbg = format!("{store:?}");
        assert!(
            !dbg.contains(&s3.secret_key) && !dbg.contains(&s3.access_key),
            "{dbg}"
        );
    }
}
