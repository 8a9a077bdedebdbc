//! The properties every [`Store`] must have, one public async function each, so every store
//! runs the same list (object_store's `integration.rs` idea, without its per-store hand-kept
//! lists): `tests/store.rs` stamps one `#[tokio::test]` per function per store, and a failure
//! reads `s3::abort_leaves_nothing`.
//!
//! Each function takes the store and a `base` key under which it may write freely, so stores
//! shared between tests (an external MinIO bucket) stay isolated. They panic on failure.
//! Stores with user metadata must keep it exactly; stores without report an empty map.
//! Multipart-sized uploads assume the store under test was built with 5 MiB parts.
//!
//! Not `cfg(test)`: integration tests link the library as a normal dependency.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{Key, ObjectMeta, PutOptions, Source, Store, StoreError};

mod conditional;
pub use conditional::{concurrent_creators, put_if_absent, put_if_version};

/// Three parts of 5 MiB, the last one short: big enough to go multipart with test part sizes.
pub const MULTIPART_SIZE: u64 = 12 * 1024 * 1024 + 4321;

/// Deterministic, incompressible bytes: a failed comparison points at a real offset and no
/// store can get away with deduplicating zeros.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn key(base: &Key, rest: &str) -> Key {
    Key::new(format!("{base}/{rest}")).expect("test keys are valid")
}

fn write_source(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("writing a test source file");
    path
}

/// A `PutOptions` that counts reported bytes.
fn counting(metadata: BTreeMap<String, String>) -> (PutOptions, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let opts = PutOptions {
        content_type: Some("application/octet-stream".into()),
        metadata,
        on_progress: Some(Arc::new(move |n| {
            counter.fetch_add(n, Ordering::Relaxed);
        })),
    };
    (opts, sent)
}

#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes read back, {} written, first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

fn keys(list: &[ObjectMeta]) -> Vec<&str> {
    list.iter().map(|m| m.key.as_str()).collect()
}

/// `put` then `get`/`head`/`list` see exactly what was written; metadata is kept or absent.
pub async fn round_trip(store: &dyn Store, base: &Key) {
    let k = key(base, "dir/manifest.json");
    let data = Bytes::from_static(b"{\"format\":1}\n");
    let meta: BTreeMap<String, String> = [("sha256".to_string(), "ab12".to_string())].into();
    let (opts, sent) = counting(meta.clone());
    store.put(&k, data.clone(), &opts).await.expect("put");
    assert_eq!(
        sent.load(Ordering::Relaxed),
        data.len() as u64,
        "progress of put"
    );
    assert_same(&store.get(&k).await.expect("get"), &data, "get after put");
    let head = store
        .head(&k)
        .await
        .expect("head")
        .expect("head finds the object");
    assert_eq!((&head.key, head.size), (&k, data.len() as u64));
    assert!(
        head.metadata.is_empty() || head.metadata == meta,
        "metadata: {:?}",
        head.metadata
    );
    let listed = store.list(&format!("{base}/")).await.expect("list");
    assert_eq!(keys(&listed), [k.as_str()]);
    assert_eq!(listed[0].size, data.len() as u64);
}

/// A file below the part size, and an empty one, go up whole and come back identical.
pub async fn put_file_small(store: &dyn Store, base: &Key, scratch: &Path) {
    for (name, len) in [("small.bundle", 70_000usize), ("empty.bundle", 0)] {
        let data = pseudo_random(len, 7);
        let src = write_source(scratch, name, &data);
        let k = key(base, name);
        let (opts, sent) = counting(BTreeMap::new());
        store
            .put_file(&k, &src, len as u64, &opts)
            .await
            .expect("put_file");
        assert_eq!(
            sent.load(Ordering::Relaxed),
            len as u64,
            "progress of {name}"
        );
        assert_same(&store.get(&k).await.expect("get"), &data, name);
        assert!(
            src.exists(),
            "put_file must leave the caller's source file in place"
        );
    }
}

/// A file of several parts (finishing in any order) is reassembled in order.
pub async fn put_file_multipart(store: &dyn Store, base: &Key, scratch: &Path) {
    let data = pseudo_random(MULTIPART_SIZE as usize, 42);
    let src = write_source(scratch, "big.bundle", &data);
    let k = key(base, "big.bundle");
    let meta: BTreeMap<String, String> = [("sha256".to_string(), "cafe".to_string())].into();
    let (opts, sent) = counting(meta.clone());
    store
        .put_file(&k, &src, MULTIPART_SIZE, &opts)
        .await
        .expect("put_file");
    assert_eq!(
        sent.load(Ordering::Relaxed),
        MULTIPART_SIZE,
        "progress adds up to the size"
    );
    assert_same(
        &store.get(&k).await.expect("get"),
        &data,
        "multipart object",
    );
    let head = store.head(&k).await.expect("head").expect("exists");
    assert_eq!(head.size, MULTIPART_SIZE);
    assert!(
        head.metadata.is_empty() || head.metadata == meta,
        "metadata: {:?}",
        head.metadata
    );
    assert!(
        src.exists(),
        "put_file must leave the caller's source file in place"
    );
    assert_eq!(
        store
            .sweep_incomplete(&format!("{base}/"), Duration::ZERO)
            .await
            .expect("sweep"),
        0
    );
}

/// A source with an in-memory head (how a bundle's header goes up in front of the mirror's
/// pack) gives head + the declared prefix of the file, nothing of the file beyond it: below the
/// part size, and across parts with the head inside the first one. A file shorter than the
/// source declares fails and leaves nothing.
pub async fn put_source_with_head(store: &dyn Store, base: &Key, scratch: &Path) {
    let head = Bytes::from(b"# v2 git bundle\n\n".repeat(100));
    for (name, file_len) in [
        ("small.bundle", 70_000u64),
        ("head-only.bundle", 0),
        ("big.bundle", MULTIPART_SIZE - head.len() as u64),
    ] {
        // One extra byte past the declared length, which must not be uploaded.
        let data = pseudo_random(file_len as usize + 1, 11);
        let src = write_source(scratch, name, &data);
        let source = Source {
            head: head.clone(),
            path: src,
            len: file_len,
        };
        let k = key(base, name);
        let (opts, sent) = counting(BTreeMap::new());
        store
            .put_source(&k, &source, &opts)
            .await
            .expect("put_source");
        let mut expected = head.to_vec();
        expected.extend_from_slice(&data[..file_len as usize]);
        assert_eq!(
            sent.load(Ordering::Relaxed),
            source.size(),
            "progress of {name}"
        );
        assert_same(&store.get(&k).await.expect("get"), &expected, name);
        let size = store.head(&k).await.expect("head").expect("exists").size;
        assert_eq!(size, source.size(), "{name}");
    }

    let data = pseudo_random(MULTIPART_SIZE as usize, 12);
    let short = Source {
        head: head.clone(),
        path: write_source(scratch, "short.bundle", &data),
        len: MULTIPART_SIZE + 1,
    };
    let k = key(base, "short.bundle");
    let err = store
        .put_source(&k, &short, &PutOptions::default())
        .await
        .expect_err("a source whose file is shorter than declared must fail");
    assert!(
        err.to_string().contains("ended after"),
        "say what went wrong: {err}"
    );
    assert!(store.head(&k).await.expect("head").is_none());
    assert_eq!(
        store
            .sweep_incomplete(&format!("{base}/"), Duration::ZERO)
            .await
            .expect("sweep"),
        0,
        "no open upload or temp file may remain"
    );
}

/// A second write replaces the first, whichever call made each, also when it is shorter.
pub async fn overwrite(store: &dyn Store, base: &Key, scratch: &Path) {
    let k = key(base, "x.bundle");
    let opts = PutOptions::default();
    store
        .put(&k, Bytes::from(pseudo_random(5000, 1)), &opts)
        .await
        .expect("first put");
    store
        .put(&k, Bytes::from_static(b"second"), &opts)
        .await
        .expect("second put");
    assert_same(
        &store.get(&k).await.expect("get"),
        b"second",
        "after overwrite",
    );
    let third = pseudo_random(3000, 3);
    let src = write_source(scratch, "third", &third);
    store
        .put_file(&k, &src, third.len() as u64, &opts)
        .await
        .expect("put_file over it");
    assert_same(
        &store.get(&k).await.expect("get"),
        &third,
        "after put_file overwrite",
    );
    assert_eq!(
        store.head(&k).await.expect("head").expect("exists").size,
        third.len() as u64
    );
    assert_eq!(
        keys(&store.list(&format!("{base}/")).await.expect("list")),
        [k.as_str()]
    );
}

/// `list` is a plain string prefix, recursive, sorted; `a/` does not match `ab/`.
pub async fn list_exact_prefix(store: &dyn Store, base: &Key) {
    let opts = PutOptions::default();
    for rest in ["b/4", "a/2", "ab/3", "a/1", "a/deep/er/5"] {
        store
            .put(&key(base, rest), Bytes::from(rest.to_string()), &opts)
            .await
            .expect("put");
    }
    let list = |p: String| async move { store.list(&p).await.expect("list") };
    let k = |rest: &str| key(base, rest).as_str().to_string();
    assert_eq!(
        keys(&list(format!("{base}/a/")).await),
        [k("a/1"), k("a/2"), k("a/deep/er/5")]
    );
    assert_eq!(
        keys(&list(format!("{base}/a")).await),
        [k("a/1"), k("a/2"), k("a/deep/er/5"), k("ab/3")]
    );
    assert_eq!(
        keys(&list(format!("{base}/a/deep/e")).await),
        [k("a/deep/er/5")]
    );
    assert_eq!(keys(&list(format!("{base}/")).await).len(), 5);
    assert!(list(format!("{base}/zzz")).await.is_empty());
    assert!(
        list(format!("{base}/a/1/")).await.is_empty(),
        "an object is not a folder"
    );
    let sizes: Vec<u64> = list(format!("{base}/b"))
        .await
        .iter()
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [3]);
}

/// A missing key: `head` is `None`, `get` is `NotFound`, `delete` succeeds.
pub async fn missing_key(store: &dyn Store, base: &Key) {
    let k = key(base, "nothing/here.bundle");
    assert!(store.head(&k).await.expect("head").is_none());
    match store.get(&k).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, k.as_str()),
        other => panic!("get of a missing key gave {other:?}"),
    }
    store
        .delete(&k)
        .await
        .expect("deleting a missing object is not an error");
    // A "folder" is not an object either.
    store
        .put(
            &key(base, "folder/inside"),
            Bytes::from_static(b"x"),
            &PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(
        store
            .head(&key(base, "folder"))
            .await
            .expect("head")
            .is_none()
    );
    assert!(matches!(
        store.get(&key(base, "folder")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// `delete` removes the object from `get`, `head` and `list`.
pub async fn delete(store: &dyn Store, base: &Key) {
    let k = key(base, "gone.bundle");
    let keep = key(base, "kept.bundle");
    store
        .put(&k, Bytes::from_static(b"bye"), &PutOptions::default())
        .await
        .expect("put");
    store
        .put(&keep, Bytes::from_static(b"hi"), &PutOptions::default())
        .await
        .expect("put");
    store.delete(&k).await.expect("delete");
    assert!(store.head(&k).await.expect("head").is_none());
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        keys(&store.list(&format!("{base}/")).await.expect("list")),
        [keep.as_str()]
    );
}

/// `delete_many` removes exactly the keys given, in however many batches the store makes,
/// counts an absent key as removed, and leaves everything else alone.
pub async fn delete_many(store: &dyn Store, base: &Key) {
    let names = [
        "a.bundle",
        "b.bundle",
        "c/d.bundle",
        "ü e.bundle",
        "keep.bundle",
        "f.bundle",
    ];
    for (i, n) in names.iter().enumerate() {
        store
            .put(
                &key(base, n),
                Bytes::from(vec![b'x'; i + 1]),
                &PutOptions::default(),
            )
            .await
            .expect("put");
    }
    let gone: Vec<Key> = [
        "a.bundle",
        "c/d.bundle",
        "never-there.bundle",
        "ü e.bundle",
        "f.bundle",
        "b.bundle",
    ]
    .iter()
    .map(|n| key(base, n))
    .collect();
    let failures = store.delete_many(&gone).await.expect("delete_many");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        keys(&store.list(&format!("{base}/")).await.expect("list")),
        [key(base, "keep.bundle").as_str()]
    );
    for k in &gone {
        assert!(store.head(k).await.expect("head").is_none(), "{k}");
    }
    // Again: everything already absent is still no failure, and nothing is no request.
    assert!(
        store
            .delete_many(&gone)
            .await
            .expect("delete_many again")
            .is_empty()
    );
    assert!(
        store
            .delete_many(&[])
            .await
            .expect("delete_many of nothing")
            .is_empty()
    );
}

/// Repository slugs are user-chosen: non-ASCII, spaces and URL-special characters survive.
pub async fn odd_keys(store: &dyn Store, base: &Key, scratch: &Path) {
    let names = [
        "ü/ñ b.bundle",
        "with space.bundle",
        "日本語.bundle",
        "a+b=c&d;e.bundle",
        "%41%2F.bundle",
        "x.y..bundle",
        "-dash_under~tilde'quote.bundle",
        ".hidden.bundle",
    ];
    let mut expected = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let k = key(base, name);
        let data = pseudo_random(100 + i, i as u64);
        let src = write_source(scratch, &format!("src{i}"), &data);
        store
            .put_file(&k, &src, data.len() as u64, &PutOptions::default())
            .await
            .expect(name);
        assert_same(&store.get(&k).await.expect(name), &data, name);
        assert_eq!(
            store.head(&k).await.expect(name).expect(name).size,
            data.len() as u64
        );
        expected.push(k.as_str().to_string());
    }
    expected.sort();
    assert_eq!(
        keys(&store.list(&format!("{base}/")).await.expect("list")),
        expected
    );
}

/// A `put_file` that fails mid-way (here: the source is one byte shorter than declared, so
/// the last part cannot be read after the others went up) leaves no object, nothing in the
/// listing and nothing for a sweep to clean: no temp file, no open multipart upload.
pub async fn abort_leaves_nothing(store: &dyn Store, base: &Key, scratch: &Path) {
    let data = pseudo_random(MULTIPART_SIZE as usize, 9);
    let src = write_source(scratch, "short.bundle", &data);
    let k = key(base, "short.bundle");
    let err = store
        .put_file(&k, &src, MULTIPART_SIZE + 1, &PutOptions::default())
        .await
        .expect_err("put_file of a source shorter than declared must fail");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ended after"),
        "say what went wrong: {err}"
    );
    assert!(
        store.head(&k).await.expect("head").is_none(),
        "a failed upload left an object"
    );
    assert!(
        store
            .list(&format!("{base}/"))
            .await
            .expect("list")
            .is_empty()
    );
    let left = store
        .sweep_incomplete(&format!("{base}/"), Duration::ZERO)
        .await
        .expect("sweep");
    assert_eq!(
        left, 0,
        "a failed upload left something behind (open multipart upload or temp file)"
    );
}

/// `sweep_incomplete` removes only leftovers under the prefix that are older than the cutoff,
/// never finished objects. `leave_incomplete(key)` must leave what a crashed upload of `key`
/// would: an open multipart upload on S3, a staged temp file in a directory.
pub async fn sweep_incomplete<F, Fut>(store: &dyn Store, base: &Key, leave_incomplete: F)
where
    F: Fn(Key) -> Fut,
    Fut: Future<Output = ()>,
{
    let done = key(base, "old/done.bundle");
    store
        .put(
            &done,
            Bytes::from_static(b"complete"),
            &PutOptions::default(),
        )
        .await
        .expect("put");
    leave_incomplete(key(base, "old/a.bundle")).await;
    leave_incomplete(key(base, "old/deeper/b.bundle")).await;
    leave_incomplete(key(base, "other/c.bundle")).await;
    assert_eq!(
        keys(&store.list(&format!("{base}/")).await.expect("list")),
        [done.as_str()]
    );

    let old = format!("{base}/old/");
    let n = store
        .sweep_incomplete(&old, Duration::from_secs(3600))
        .await
        .expect("sweep");
    assert_eq!(
        n, 0,
        "fresh uploads (maybe a concurrent run's) must survive"
    );
    // S3 reports upload start times to the second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let n = store
        .sweep_incomplete(&old, Duration::from_secs(1))
        .await
        .expect("sweep");
    assert_eq!(n, 2, "both stale uploads under {old}");
    assert_eq!(
        store
            .sweep_incomplete(&old, Duration::ZERO)
            .await
            .expect("sweep"),
        0
    );
    let other = format!("{base}/other/");
    assert_eq!(
        store
            .sweep_incomplete(&other, Duration::ZERO)
            .await
            .expect("sweep"),
        1,
        "outside the prefix"
    );
    assert_same(
        &store.get(&done).await.expect("get"),
        b"complete",
        "a finished object",
    );
}

/// `get_stream` yields the object's bytes in order, with its size up front; a missing key is
/// `NotFound`; a multipart-sized object streams whole.
pub async fn get_stream(store: &dyn Store, base: &Key, scratch: &Path) {
    use futures::StreamExt;
    let data = pseudo_random(MULTIPART_SIZE as usize, 21);
    let src = write_source(scratch, "stream.bundle", &data);
    let k = key(base, "stream.bundle");
    let meta: BTreeMap<String, String> = [("sha256".to_string(), "beef".to_string())].into();
    let opts = PutOptions {
        metadata: meta.clone(),
        ..PutOptions::default()
    };
    store
        .put_file(&k, &src, data.len() as u64, &opts)
        .await
        .expect("put_file");
    let download = store.get_stream(&k).await.expect("get_stream");
    assert_eq!(download.size, data.len() as u64);
    assert!(
        download.metadata.is_empty() || download.metadata == meta,
        "metadata: {:?}",
        download.metadata
    );
    let mut got = Vec::new();
    let mut chunks = 0;
    let mut stream = download.stream;
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
        chunks += 1;
    }
    assert_same(&got, &data, "streamed object");
    assert!(
        chunks > 1,
        "a 12 MiB object should arrive in several chunks"
    );
    match store.get_stream(&key(base, "absent.bundle")).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("get_stream of a missing key gave {other:?}"),
    }
    // Dropping a stream half-way is allowed and leaves the object alone.
    let mut half = store.get_stream(&k).await.expect("get_stream").stream;
    let _ = half.next().await;
    drop(half);
    assert_eq!(
        store.head(&k).await.expect("head").expect("exists").size,
        data.len() as u64
    );
}

/// `list_folder` shows one level: objects directly in the folder and the sub-folders that
/// hold objects, as full prefixes ending with `/`; never another folder's objects.
pub async fn list_folder(store: &dyn Store, base: &Key) {
    let opts = PutOptions::default();
    for rest in [
        "acme/2026-11-24/a.bundle",
        "acme/2026-11-24/manifest.json",
        "acme/2026-11-25/b.bundle",
        "acme/2026-11-25/deeper/c",
        "acme/top.txt",
        "acmeX/2026-11-24/x.bundle",
    ] {
        store
            .put(&key(base, rest), Bytes::from(rest.to_string()), &opts)
            .await
            .expect("put");
    }
    let l = store
        .list_folder(&format!("{base}/acme/"))
        .await
        .expect("list_folder");
    assert_eq!(
        l.folders,
        [
            format!("{base}/acme/2026-11-24/"),
            format!("{base}/acme/2026-11-25/")
        ]
    );
    assert_eq!(keys(&l.objects), [key(base, "acme/top.txt").as_str()]);
    assert_eq!(l.objects[0].size, "acme/top.txt".len() as u64);
    let day = store
        .list_folder(&format!("{base}/acme/2026-11-25/"))
        .await
        .expect("list_folder");
    assert_eq!(
        keys(&day.objects),
        [key(base, "acme/2026-11-25/b.bundle").as_str()]
    );
    assert_eq!(day.folders, [format!("{base}/acme/2026-11-25/deeper/")]);
    let none = store
        .list_folder(&format!("{base}/nothing/"))
        .await
        .expect("list_folder of a missing folder");
    assert!(none.objects.is_empty() && none.folders.is_empty());
    assert!(
        store.list_folder(&format!("{base}/acme")).await.is_err(),
        "a folder must end with `/`"
    );
}

/// `copy` makes an identical object under the new key, with the source's metadata, leaves the
/// source alone, replaces an existing target, works for multipart-sized objects and odd
/// keys, and is `NotFound` for a missing source (writing nothing).
pub async fn copy(store: &dyn Store, base: &Key, scratch: &Path) {
    let meta: BTreeMap<String, String> = [("sha256".to_string(), "f00d".to_string())].into();
    let opts = PutOptions {
        content_type: Some("application/x-git-bundle".into()),
        metadata: meta.clone(),
        on_progress: None,
    };
    for (name, len) in [
        ("small.bundle", 70_000usize),
        ("big.bundle", MULTIPART_SIZE as usize),
    ] {
        let data = pseudo_random(len, 31);
        let src = write_source(scratch, name, &data);
        let from = key(base, &format!("2026-11-24/{name}"));
        let to = key(base, &format!("2026-11-25/{name}"));
        store
            .put_file(&from, &src, len as u64, &opts)
            .await
            .expect("put_file");
        // An older object at the target is replaced.
        store
            .put(&to, Bytes::from_static(b"stale"), &PutOptions::default())
            .await
            .expect("put");
        store.copy(&from, &to).await.expect("copy");
        assert_same(&store.get(&to).await.expect("get copy"), &data, name);
        assert_same(&store.get(&from).await.expect("get source"), &data, name);
        let head = store.head(&to).await.expect("head").expect("copy exists");
        assert_eq!(head.size, len as u64);
        let source_meta = store
            .head(&from)
            .await
            .expect("head")
            .expect("source")
            .metadata;
        assert_eq!(
            head.metadata, source_meta,
            "{name}: the copy keeps the source's metadata"
        );
        assert!(
            source_meta.is_empty() || source_meta == meta,
            "{source_meta:?}"
        );
    }
    let odd_from = key(base, "ü/ñ b+c%41.bundle");
    let odd_to = key(base, "copies/ü/ñ b+c%41.bundle");
    store
        .put(
            &odd_from,
            Bytes::from_static(b"odd"),
            &PutOptions::default(),
        )
        .await
        .expect("put");
    store.copy(&odd_from, &odd_to).await.expect("copy odd key");
    assert_same(&store.get(&odd_to).await.expect("get"), b"odd", "odd key");

    let missing = key(base, "missing.bundle");
    let target = key(base, "never.bundle");
    match store.copy(&missing, &target).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("copy of a missing source gave {other:?}"),
    }
    assert!(store.head(&target).await.expect("head").is_none());
    assert_eq!(
        store
            .sweep_incomplete(&format!("{base}/"), Duration::ZERO)
            .await
            .expect("sweep"),
        0,
        "a copy leaves no open upload or temp file"
    );
}
