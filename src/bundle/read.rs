//! Reading a bundle back as it downloads: the one reader `verify` and `restore` share.
//!
//! A bundle can be far larger than memory or the temp disk, and a second copy of it is
//! exactly what an operator restoring on a bad day does not have room for. So a bundle is
//! never buffered whole and never copied to a file: [`read`] takes the store's
//! [`Download`] stream and, chunk by chunk, counts and SHA-256-hashes the bytes, parses the
//! header with [`header::parse`] as its first bytes arrive, and hands every byte after the
//! header to a [`PackSink`]: [`Discard`] for a plain `verify`, a [`PackIndexer`] (libgit2's
//! pack indexer on a blocking thread, fed through a bounded channel) for `verify --deep`
//! and `restore`.
//!
//! The hash can only be judged at the end, so the sink sees bytes that are not yet known to
//! be good. That is why the indexer does not commit on its own: the caller commits it only
//! after [`read`] said size and SHA-256 match the manifest, and dropping or aborting it
//! leaves no pack in the repository.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::header::{self, Header, HeaderError};
use crate::store::{Download, StoreError};

/// What the manifest says the bundle is. `None` skips that check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub size: Option<u64>,
    /// Hex SHA-256 (either case).
    pub sha256: Option<&'a str>,
}

impl Expected<'_> {
    /// The announced `size` is the manifest's (when it says one).
    pub fn check_size(&self, size: u64) -> Result<(), ReadError> {
        match self.size {
            Some(want) if want != size => Err(ReadError::SizeMismatch {
                expected: want,
                found: size,
            }),
            _ => Ok(()),
        }
    }

    /// `found` (hex SHA-256 of every byte) is the manifest's (when it says one).
    pub fn check_sha256(&self, found: &str) -> Result<(), ReadError> {
        match self.sha256 {
            Some(want) if !want.eq_ignore_ascii_case(found) => Err(ReadError::Sha256Mismatch {
                expected: want.to_string(),
                found: found.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// A bundle whose bytes were all read and match [`Expected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub header: Header,
    pub size: u64,
    /// Hex SHA-256 of every byte, header included.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("the stored object is {found} bytes, the manifest says {expected}")]
    SizeMismatch { expected: u64, found: u64 },
    #[error("SHA-256 mismatch: the manifest says {expected}, the stored bytes hash to {found}")]
    Sha256Mismatch { expected: String, found: String },
    #[error("the download ended after {got} of {size} bytes")]
    Truncated { got: u64, size: u64 },
    #[error("the download sent more than the {size} bytes the store announced")]
    TooLong { size: u64 },
    #[error("the bundle ends inside its header ({got} bytes)")]
    HeaderCut { got: u64 },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("download failed: {0}")]
    Store(#[from] StoreError),
    /// The sink refused the pack (libgit2's indexer: a damaged pack).
    #[error("{0}")]
    Sink(String),
    /// An encrypted bundle could not be decrypted ([`crate::crypt::read`]).
    #[error(transparent)]
    Decrypt(#[from] crate::crypt::read::DecryptError),
    #[error("interrupted")]
    Cancelled,
}

/// Where the pack bytes after the header go, in order.
#[async_trait]
pub trait PackSink: Send {
    async fn write(&mut self, pack: Bytes) -> Result<(), String>;
}

/// Drops the pack: for checks of size, hash and header only.
pub struct Discard;

#[async_trait]
impl PackSink for Discard {
    async fn write(&mut self, _pack: Bytes) -> Result<(), String> {
        Ok(())
    }
}

/// Streams `download` into `sink` and checks it against `expected`. A size that differs from
/// the manifest fails before the first byte is read. `Ok` only when every byte arrived, size
/// and SHA-256 match and the sink took every byte; the caller then trusts (e.g. commits) what
/// the sink received. A SHA-256 mismatch is reported in preference to a sink error.
pub async fn read(
    download: Download,
    expected: Expected<'_>,
    sink: &mut dyn PackSink,
    cancel: &CancellationToken,
) -> Result<Verified, ReadError> {
    let size = download.size;
    expected.check_size(size)?;
    let mut stream = download.stream;
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut head = Vec::new();
    let mut parsed: Option<Header> = None;
    // When the sink gives up (a damaged pack), the rest is still hashed: if the bytes are not
    // what the manifest says, that is the cause worth reporting, not the indexer's symptom.
    let mut sink_error: Option<String> = None;
    while let Some(chunk) = next_chunk(&mut stream, size, &mut got, cancel).await? {
        hasher.update(&chunk);
        let pack = if parsed.is_some() {
            chunk
        } else {
            head.extend_from_slice(&chunk);
            let Some(h) = header::parse(&head)? else {
                continue;
            };
            let pack = Bytes::from(head.split_off(h.len));
            head = Vec::new();
            parsed = Some(h);
            pack
        };
        if sink_error.is_none()
            && !pack.is_empty()
            && let Err(e) = sink.write(pack).await
        {
            sink_error = Some(e);
        }
    }
    if got != size {
        return Err(ReadError::Truncated { got, size });
    }
    let header = parsed.ok_or(ReadError::HeaderCut { got })?;
    let sha256 = hex::encode(hasher.finalize());
    expected.check_sha256(&sha256)?;
    if let Some(e) = sink_error {
        return Err(ReadError::Sink(e));
    }
    Ok(Verified {
        header,
        size,
        sha256,
    })
}

/// The next chunk of a download announced as `size` bytes, `got` of which arrived before;
/// `None` at its end. Counts the chunk into `got`; more bytes than announced, a failed
/// download or cancellation are errors. The one loop step of every reader of stored bytes.
pub async fn next_chunk(
    stream: &mut futures::stream::BoxStream<'static, Result<Bytes, StoreError>>,
    size: u64,
    got: &mut u64,
    cancel: &CancellationToken,
) -> Result<Option<Bytes>, ReadError> {
    let next = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(ReadError::Cancelled),
        next = stream.next() => next,
    };
    let Some(chunk) = next else { return Ok(None) };
    let chunk = chunk?;
    *got += chunk.len() as u64;
    if *got > size {
        return Err(ReadError::TooLong { size });
    }
    Ok(Some(chunk))
}

/// Chunks in flight between the download and the indexer: with S3's and the directory
/// store's chunk sizes, a few MiB at most, whatever the bundle's size.
const CHANNEL_DEPTH: usize = 8;

enum Feed {
    Pack(Bytes),
    Commit,
}

/// libgit2's pack indexer (`Odb::packwriter`) for the repository at `git_dir`, run on a
/// blocking thread and fed through a bounded channel: the download waits while the indexer
/// is busy, so memory stays at a few chunks. Nothing is written to the object database
/// unless [`PackIndexer::commit`] is called; dropping the indexer (or [`PackIndexer::abort`])
/// discards the pack.
pub struct PackIndexer {
    tx: Option<mpsc::Sender<Feed>>,
    job: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl PackIndexer {
    /// Starts indexing into the existing repository at `git_dir`. Must be called inside a
    /// Tokio runtime.
    pub fn start(git_dir: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let job = tokio::task::spawn_blocking(move || index(&git_dir, rx));
        Self {
            tx: Some(tx),
            job: Some(job),
        }
    }

    /// Finishes the pack: libgit2 checks its trailing checksum, resolves deltas and writes
    /// `pack-<sha>.pack` and `.idx` into the repository.
    pub async fn commit(mut self) -> Result<(), String> {
        if let Some(tx) = self.tx.take() {
            // A closed channel means the indexer already stopped; its error is below.
            let _ = tx.send(Feed::Commit).await;
        }
        self.join().await
    }

    /// Stops the indexer without writing the pack, and waits until its thread is done (so a
    /// temp dir it writes into can be removed afterwards).
    pub async fn abort(mut self) {
        self.tx.take();
        let _ = self.join().await;
    }

    async fn join(&mut self) -> Result<(), String> {
        match self.job.take() {
            Some(job) => job
                .await
                .map_err(|e| format!("internal error in the pack indexer: {e}"))?,
            None => Err("the pack indexer already stopped".into()),
        }
    }
}

#[async_trait]
impl PackSink for PackIndexer {
    async fn write(&mut self, pack: Bytes) -> Result<(), String> {
        let sent = match &self.tx {
            Some(tx) => tx.send(Feed::Pack(pack)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The indexer gave up on the pack: its error says why.
        self.tx.take();
        Err(match self.join().await {
            Err(e) => e,
            Ok(()) => "the pack indexer stopped early".into(),
        })
    }
}

/// The indexer thread: appends each chunk, commits on [`Feed::Commit`], and gives up
/// (writing nothing) when the channel closes first.
fn index(git_dir: &std::path::Path, mut rx: mpsc::Receiver<Feed>) -> Result<(), String> {
    let git_err = |e: git2::Error| format!("pack: {}", e.message());
    let repo = git2::Repository::open(git_dir).map_err(git_err)?;
    let odb = repo.odb().map_err(git_err)?;
    let mut writer = odb.packwriter().map_err(git_err)?;
    while let Some(feed) = rx.blocking_recv() {
        match feed {
            Feed::Pack(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    // git2's `Write` drops libgit2's message; it is still this thread's last.
                    return Err(git_err(git2::Error::last_error(-1)));
                }
            }
            Feed::Commit => {
                writer.commit().map_err(git_err)?;
                return Ok(());
            }
        }
    }
    Err("the pack was abandoned before it was complete".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::stream;

    fn download(chunks: Vec<&'static [u8]>, size: u64) -> Download {
        Download {
            size,
            metadata: Default::default(),
            stream: stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed(),
        }
    }

    /// Collects what reaches the sink.
    #[derive(Default)]
    struct Collect(Vec<u8>);

    #[async_trait]
    impl PackSink for Collect {
        async fn write(&mut self, pack: Bytes) -> Result<(), String> {
            self.0.extend_from_slice(&pack);
            Ok(())
        }
    }

    const A: &str = "1111111111111111111111111111111111111111";

    fn bundle() -> (Vec<u8>, String) {
        let bytes =
            format!("# v2 git bundle\n{A} refs/heads/main\n{A} HEAD\n\nPACKDATA").into_bytes();
        let sha = hex::encode(Sha256::digest(&bytes));
        (bytes, sha)
    }

    #[tokio::test]
    async fn the_pack_after_the_header_reaches_the_sink_whatever_the_chunking() {
        let (bytes, sha) = bundle();
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let n = bytes.len() as u64;
        for cut in [1, 5, 17, 40, 60, bytes.len()] {
            let chunks: Vec<&'static [u8]> = bytes.chunks(cut).collect();
            let mut sink = Collect::default();
            let v = read(
                download(chunks, n),
                Expected {
                    size: Some(n),
                    sha256: Some(&sha.to_uppercase()),
                },
                &mut sink,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            assert_eq!(sink.0, b"PACKDATA", "chunks of {cut}");
            assert_eq!(v.header.refs, [("refs/heads/main".into(), A.into())]);
            assert_eq!(v.header.head.as_deref(), Some(A));
            assert_eq!((v.size, v.sha256.as_str()), (n, sha.as_str()));
        }
    }

    /// Refuses the pack, as libgit2's indexer does a damaged one.
    struct Refuse;

    #[async_trait]
    impl PackSink for Refuse {
        async fn write(&mut self, _pack: Bytes) -> Result<(), String> {
            Err("pack: incorrect header check".into())
        }
    }

    #[tokio::test]
    async fn a_hash_mismatch_explains_a_refused_pack() {
        let (bytes, sha) = bundle();
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let n = bytes.len() as u64;
        let cancel = CancellationToken::new();
        let good = Expected {
            size: Some(n),
            sha256: Some(&sha),
        };
        let e = read(download(vec![bytes], n), good, &mut Refuse, &cancel)
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Sink(_)), "{e}");
        let zeros = "0".repeat(64);
        let bad = Expected {
            size: Some(n),
            sha256: Some(&zeros),
        };
        let e = read(
            download(bytes.chunks(7).collect(), n),
            bad,
            &mut Refuse,
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ReadError::Sha256Mismatch { .. }), "{e}");
    }

    #[tokio::test]
    async fn size_hash_and_length_are_checked() {
        let (bytes, sha) = bundle();
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let n = bytes.len() as u64;
        let cancel = CancellationToken::new();
        let run = |chunks: Vec<&'static [u8]>, announced: u64, want: Expected<'static>| {
            let cancel = cancel.clone();
            async move { read(download(chunks, announced), want, &mut Discard, &cancel).await }
        };
        let sha: &'static str = Box::leak(sha.into_boxed_str());
        let e = run(
            vec![bytes],
            n,
            Expected {
                size: Some(n + 1),
                sha256: None,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ReadError::SizeMismatch { .. }), "{e}");
        let zeros = "0".repeat(64);
        let zeros: &'static str = Box::leak(zeros.into_boxed_str());
        let e = run(
            vec![bytes],
            n,
            Expected {
                size: None,
                sha256: Some(zeros),
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, ReadError::Sha256Mismatch { .. }) && e.to_string().contains(sha),
            "{e}"
        );
        let e = run(vec![&bytes[..30]], n, Expected::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Truncated { .. }), "{e}");
        let e = run(vec![bytes, b"x"], n, Expected::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::TooLong { .. }), "{e}");
        let e = run(vec![&bytes[..20]], 20, Expected::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::HeaderCut { .. }), "{e}");
        let e = run(vec![b"PACK\0\0\0\x02"], 8, Expected::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Header(_)), "{e}");
        cancel.cancel();
        let e = run(vec![bytes], n, Expected::default()).await.unwrap_err();
        assert!(matches!(e, ReadError::Cancelled), "{e}");
    }
}
