//! A stored `.bundle.age` read back as the plaintext bundle, as it downloads.
//!
//! [`open`] wraps the store's [`Download`] of the encrypted object in age's streaming
//! decryptor and hands back a [`Download`] of the plaintext, which [`crate::bundle::read`]
//! checks against the manifest's plaintext size and SHA-256 exactly as it checks a plain
//! bundle. The encrypted bytes are counted and hashed on their way in, so [`Check::check`]
//! can also hold them against the manifest's stored size and SHA-256. Memory: one download
//! chunk plus one 64 KiB age chunk.
//!
//! Why errors travel beside the stream: the plaintext stream can only carry a
//! [`StoreError`], but "this bundle's bytes do not authenticate" is not a store failure. The
//! real cause is kept in the shared tally and [`Check::check`] reports it in preference to
//! whatever the reader made of the cut-off stream.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{AsyncReadExt, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use tokio_util::sync::CancellationToken;

use super::Identities;
use crate::bundle::read::{self, Expected, PackSink, ReadError, Verified};
use crate::manifest::Encryption;
use crate::store::{Download, StoreError};

/// Plaintext chunk size handed to the reader: one age chunk.
const CHUNK: usize = 64 * 1024;

/// Why an encrypted bundle could not be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// An encrypted bundle, and no `--identity`.
    #[error(
        "`{key}` is encrypted with age: pass --identity FILE (the private key of one of its recipients)"
    )]
    NoIdentity { key: String },
    /// The identity holds none of the keys the bundle was encrypted to.
    #[error(
        "the identity in {identity} cannot decrypt this bundle: it was encrypted to other \
         recipients (pass the identity whose public key was given to --encrypt-to)"
    )]
    WrongIdentity { identity: String },
    #[error("the stored object is not an age-encrypted file ({why})")]
    NotAge { why: String },
    #[error(
        "decryption failed: the encrypted object is damaged or was altered (its bytes do not \
         authenticate)"
    )]
    Damaged,
    #[error("decryption failed: {0}")]
    Other(String),
    #[error("the encrypted object has {0} bytes after the end of its age stream")]
    TrailingBytes(u64),
}

#[derive(Default)]
struct Tally {
    hasher: Sha256,
    got: u64,
    error: Option<DecryptError>,
}

/// What the decrypting stream saw of the encrypted bytes, judged once the plaintext is read.
pub struct Check {
    stored_size: u64,
    tally: Arc<Mutex<Tally>>,
}

/// Starts decrypting `download` (an age file) with `identities`: the plaintext download, whose
/// size is `plaintext_size` (from the manifest), and the [`Check`] of the encrypted bytes.
/// Reads the age header, so a wrong identity or an object that is not age fails here, before
/// any plaintext.
pub async fn open(
    download: Download,
    plaintext_size: u64,
    identities: &Identities,
    key: &str,
) -> Result<(Download, Check), DecryptError> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stored_size = download.size;
    let counting = {
        let tally = tally.clone();
        download.stream.map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            let mut t = tally.lock().expect("tally lock");
            t.hasher.update(&chunk);
            t.got += chunk.len() as u64;
            Ok::<_, std::io::Error>(chunk)
        })
    };
    let input = counting.into_async_read();
    let decryptor = age::Decryptor::new_async_buffered(input)
        .await
        .map_err(|e| describe(e, identities))?;
    let plain = decryptor
        .decrypt_async(identities.iter())
        .map_err(|e| describe(e, identities))?;
    let key = key.to_string();
    let stream = futures::stream::unfold(
        (plain, tally.clone(), false),
        move |(mut plain, tally, failed)| {
            let key = key.clone();
            async move {
                if failed {
                    return None;
                }
                let mut buf = vec![0; CHUNK];
                match plain.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), (plain, tally, false)))
                    }
                    Err(e) => {
                        let why = io_cause(&e);
                        let message = why.to_string();
                        tally.lock().expect("tally lock").error = Some(why);
                        let err = StoreError::Request {
                            op: "decrypt",
                            key,
                            message,
                        };
                        Some((Err(err), (plain, tally, true)))
                    }
                }
            }
        },
    );
    let plain = Download {
        size: plaintext_size,
        metadata: download.metadata,
        stream: stream.boxed(),
    };
    Ok((plain, Check { stored_size, tally }))
}

impl Check {
    /// The outcome of reading the plaintext download (`read`), judged together with the
    /// encrypted bytes: a decryption failure first, then the stored object's size and
    /// SHA-256 against the manifest's, then the reader's own verdict on the plaintext.
    pub fn check(
        self,
        read: Result<Verified, ReadError>,
        stored: Expected<'_>,
    ) -> Result<Verified, ReadError> {
        let t = self.tally.lock().expect("tally lock");
        if let Some(e) = &t.error {
            return Err(ReadError::Decrypt(e.clone()));
        }
        if matches!(read, Err(ReadError::Cancelled)) {
            return read;
        }
        stored.check_size(self.stored_size)?;
        let complete = t.got == self.stored_size;
        let found = hex::encode(t.hasher.clone().finalize());
        if read.is_ok() && !complete {
            return Err(ReadError::Decrypt(DecryptError::TrailingBytes(
                self.stored_size - t.got,
            )));
        }
        if complete {
            stored.check_sha256(&found)?;
        }
        read
    }
}

/// Reads the stored bundle `key` (its `download`) into `sink` and checks it against the
/// manifest: a plain bundle as [`read::read`] does; an encrypted one (`encryption` set) is
/// decrypted with `identity` on the way, its stored bytes held against `stored` and its
/// plaintext against the entry's plaintext size and SHA-256.
pub async fn read_stored(
    download: Download,
    key: &str,
    stored: Expected<'_>,
    encryption: Option<&Encryption>,
    identity: Option<&Identities>,
    sink: &mut dyn PackSink,
    cancel: &CancellationToken,
) -> Result<Verified, ReadError> {
    let Some(enc) = encryption else {
        return read::read(download, stored, sink, cancel).await;
    };
    let identity = identity.ok_or_else(|| DecryptError::NoIdentity {
        key: key.to_string(),
    })?;
    stored.check_size(download.size)?;
    let (plain, check) = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(ReadError::Cancelled),
        o = open(download, enc.plaintext_size, identity, key) => o?,
    };
    let expected = Expected {
        size: Some(enc.plaintext_size),
        sha256: Some(&enc.plaintext_sha256),
    };
    let read = read::read(plain, expected, sink, cancel).await;
    check.check(read, stored)
}

/// For `verify` without a key: every stored byte of an encrypted bundle is downloaded,
/// counted and hashed against the manifest, and the object must start like an age file. Says
/// nothing about the plaintext.
pub async fn check_sealed(
    download: Download,
    stored: Expected<'_>,
    cancel: &CancellationToken,
) -> Result<u64, ReadError> {
    let size = download.size;
    stored.check_size(size)?;
    let mut stream = download.stream;
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut start = Vec::with_capacity(AGE_MAGIC.len());
    while let Some(chunk) = read::next_chunk(&mut stream, size, &mut got, cancel).await? {
        if start.len() < AGE_MAGIC.len() {
            let take = (AGE_MAGIC.len() - start.len()).min(chunk.len());
            start.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
    }
    if got != size {
        return Err(ReadError::Truncated { got, size });
    }
    stored.check_sha256(&hex::encode(hasher.finalize()))?;
    if start != AGE_MAGIC {
        return Err(DecryptError::NotAge {
            why: "it does not start with the age header line".into(),
        }
        .into());
    }
    Ok(size)
}

/// The first line of every age file (C2SP age spec: `age-encryption.org/v1`).
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

fn describe(e: age::DecryptError, identities: &Identities) -> DecryptError {
    match e {
        age::DecryptError::NoMatchingKeys => DecryptError::WrongIdentity {
            identity: identities.path().display().to_string(),
        },
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            DecryptError::NotAge {
                why: "no valid age header".into(),
            }
        }
        age::DecryptError::InvalidMac => DecryptError::Damaged,
        age::DecryptError::DecryptionFailed => DecryptError::Damaged,
        age::DecryptError::Io(e) => io_cause(&e),
        other => DecryptError::Other(other.to_string()),
    }
}

/// age reports a chunk that fails authentication as `InvalidData`; anything else is the
/// download itself failing.
fn io_cause(e: &std::io::Error) -> DecryptError {
    match e.kind() {
        std::io::ErrorKind::InvalidData => DecryptError::Damaged,
        std::io::ErrorKind::UnexpectedEof => DecryptError::Other(
            "the encrypted object ends before its age stream does (truncated)".into(),
        ),
        _ => DecryptError::Other(e.to_string()),
    }
}
