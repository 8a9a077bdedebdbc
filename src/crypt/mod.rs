//! Client-side encryption with age: who a bundle is encrypted to, and who can read it back.
//!
//! Why age: its file format is a published spec with two independent implementations (Go's
//! `age` and this crate, behind `rage`), so an operator can decrypt a backup with stock tools
//! and no git-offsite at all (`age -d -i key.txt x.bundle.age > x.bundle`). Its payload is a
//! stream of 64 KiB authenticated chunks, so encrypting and decrypting hold one chunk, never a
//! bundle, in memory.
//!
//! The split of keys is the point of the design:
//! - `backup` holds only **public** keys ([`Recipients`]: `age1…` X25519 recipients and
//!   `ssh-ed25519`/`ssh-rsa` public keys). A stolen backup host or bucket credential reads
//!   nothing. The set's [`Recipients::fingerprint`] goes into each manifest entry, so an
//!   incremental run only reuses an earlier bundle encrypted to the same keys.
//! - `restore` and `verify` take the **private** key ([`Identities`]) from a file. Its content
//!   never appears in an error or a log line: errors name the file and what is wrong with it.
//!
//! The manifest stays plaintext (see the README): an unattended run must decide what is
//! unchanged without a private key. [`read`] turns a stored `.bundle.age` back into the
//! plaintext bundle stream that `verify` and `restore` already read.

pub mod read;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The `scheme` of an encrypted manifest entry.
pub const SCHEME: &str = "age";

/// age's own limit for identity and recipient files.
const KEY_FILE_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    #[error(
        "invalid --encrypt-to recipient `{value}`: expected an age X25519 recipient (`age1…`) or \
         an SSH public key (`ssh-ed25519 …`, `ssh-rsa …`){}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    BadRecipient {
        value: String,
        reason: Option<String>,
    },
    #[error("recipients file {}, line {line}: `{value}` is not an age or SSH public key", path.display())]
    BadRecipientLine {
        path: PathBuf,
        line: usize,
        value: String,
    },
    #[error("recipients file {} lists no recipient", path.display())]
    NoRecipients { path: PathBuf },
    /// Never quotes the file: it holds a private key.
    #[error("identity file {}: {why}", path.display())]
    BadIdentity { path: PathBuf, why: String },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The public keys bundles are encrypted to (at least one).
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send + Sync>>,
    fingerprint: String,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipients")
            .field("count", &self.keys.len())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Recipients {
    /// `--encrypt-to` values and the recipients of `--encrypt-to-file` files (one key per
    /// line, `#` comments and blank lines ignored, as `age -R` reads them). `None` when both
    /// are empty: no encryption.
    pub fn parse(values: &[String], files: &[PathBuf]) -> Result<Option<Self>, CryptError> {
        let mut keys = Vec::new();
        let mut canonical = Vec::new();
        for v in values {
            let (key, canon) =
                parse_recipient(v.trim()).map_err(|reason| CryptError::BadRecipient {
                    value: v.clone(),
                    reason,
                })?;
            keys.push(key);
            canonical.push(canon);
        }
        for path in files {
            let text = read_limited(path, "recipients file")?;
            let before = keys.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (key, canon) =
                    parse_recipient(line).map_err(|_| CryptError::BadRecipientLine {
                        path: path.clone(),
                        line: i + 1,
                        value: line.to_string(),
                    })?;
                keys.push(key);
                canonical.push(canon);
            }
            if keys.len() == before {
                return Err(CryptError::NoRecipients { path: path.clone() });
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            fingerprint: fingerprint(&canonical),
            keys,
        }))
    }

    /// `sha256:<hex>` of the sorted, de-duplicated canonical keys (comments dropped): the same
    /// set of keys, in any order and from any mix of flags and files, has the same one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Starts an age stream to `out`: header and nonce are written at once, then everything
    /// written to the returned writer is encrypted in 64 KiB chunks. `finish` must be called.
    pub fn encrypt<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = age::Encryptor::with_recipients(
            self.keys.iter().map(|k| k.as_ref() as &dyn age::Recipient),
        )
        .map_err(io::Error::other)?;
        encryptor.wrap_output(out)
    }
}

fn parse_recipient(
    s: &str,
) -> Result<(Box<dyn age::Recipient + Send + Sync>, String), Option<String>> {
    if s.starts_with("age1") {
        let r: age::x25519::Recipient = s.parse().map_err(|e: &str| Some(e.to_string()))?;
        let canon = r.to_string();
        return Ok((Box::new(r), canon));
    }
    if s.starts_with("ssh-") {
        let r: age::ssh::Recipient = s.parse().map_err(|e| {
            Some(match e {
                age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                    "the RSA key is shorter than 2048 bits".to_string()
                }
                age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                    "the RSA key is too large".to_string()
                }
                age::ssh::ParseRecipientKeyError::Unsupported(kind) => {
                    format!("{kind} keys are not supported")
                }
                _ => "not a valid SSH public key".to_string(),
            })
        })?;
        let canon = r.to_string();
        return Ok((Box::new(r), canon));
    }
    Err(None)
}

fn fingerprint(canonical: &[String]) -> String {
    let mut keys: Vec<&str> = canonical.iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn read_limited(path: &Path, what: &'static str) -> Result<String, CryptError> {
    use std::io::Read;
    let err = |source| CryptError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(KEY_FILE_LIMIT)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(text)
}

/// The private keys `--identity FILE` holds: an age identity file (`AGE-SECRET-KEY-1…` lines,
/// as `age-keygen` writes it) or an unencrypted OpenSSH private key.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    path: PathBuf,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("path", &self.path)
            .field("count", &self.keys.len())
            .finish()
    }
}

impl Identities {
    pub fn load(path: &Path) -> Result<Self, CryptError> {
        let bad = |why: &str| CryptError::BadIdentity {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let text = read_limited(path, "identity file")?;
        // Neither parser's message is passed on: they may quote the line they choke on.
        if let Ok(file) = age::IdentityFile::from_buffer(text.as_bytes())
            && let Ok(keys) = file.into_identities()
            && !keys.is_empty()
        {
            return Ok(Self {
                keys,
                path: path.to_path_buf(),
            });
        }
        match age::ssh::Identity::from_buffer(text.as_bytes(), None) {
            Ok(age::ssh::Identity::Unencrypted(key)) => Ok(Self {
                keys: vec![Box::new(age::ssh::Identity::Unencrypted(key))],
                path: path.to_path_buf(),
            }),
            Ok(age::ssh::Identity::Encrypted(_)) => Err(bad(
                "the SSH key is protected by a passphrase, which an unattended restore cannot \
                 ask for: use an age identity (age-keygen) or an unencrypted copy of the key",
            )),
            Ok(age::ssh::Identity::Unsupported(_)) => Err(bad(
                "this kind of SSH key is not supported: use an ssh-ed25519 or ssh-rsa key, or \
                 an age identity",
            )),
            Err(_) => Err(bad(
                "not an age identity file (AGE-SECRET-KEY-1… lines, from age-keygen) nor an \
                 unencrypted OpenSSH private key",
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn x25519() -> (age::x25519::Identity, String) {
        let id = age::x25519::Identity::generate();
        let r = id.to_public().to_string();
        (id, r)
    }

    #[test]
    fn the_fingerprint_ignores_order_duplicates_and_comments() {
        let (_, r2) = x25519();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("recipients.txt");
        std::fs::write(&file, format!("# ops team\n\n{r2}\n  {X1}  \n")).unwrap();
        let a = Recipients::parse(&[X1.into(), r2.clone()], &[])
            .unwrap()
            .unwrap();
        let b = Recipients::parse(&[], std::slice::from_ref(&file))
            .unwrap()
            .unwrap();
        let c = Recipients::parse(&[r2.clone(), X1.into(), X1.into()], &[])
            .unwrap()
            .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), c.fingerprint());
        assert!(a.fingerprint().starts_with("sha256:"), "{a:?}");
        let one = Recipients::parse(&[X1.into()], &[]).unwrap().unwrap();
        assert_ne!(one.fingerprint(), a.fingerprint());
        assert!(Recipients::parse(&[], &[]).unwrap().is_none());
    }

    #[test]
    fn bad_recipients_name_the_flag_or_the_file_line() {
        let e = Recipients::parse(&["age1nope".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--encrypt-to") && e.contains("age1nope"), "{e}");
        let e = Recipients::parse(&["AGE-SECRET-KEY-1XYZ".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--encrypt-to"), "{e}");
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("r.txt");
        std::fs::write(&file, format!("{X1}\nnot-a-key\n")).unwrap();
        let e = Recipients::parse(&[], std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("r.txt"), "{e}");
        std::fs::write(&file, "# nobody\n").unwrap();
        let e = Recipients::parse(&[], &[file]).unwrap_err().to_string();
        assert!(e.contains("no recipient"), "{e}");
    }

    #[test]
    fn identity_errors_never_quote_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("key.txt");
        let secret = "AGE-SECRET-KEY-1NOTAREALKEYBUTSECRETLOOKING";
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        let e = Identities::load(&file).unwrap_err().to_string();
        assert!(e.contains("key.txt") && !e.contains(secret), "{e}");
        let (id, _) = x25519();
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &file,
            format!("# created: now\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        assert_eq!(Identities::load(&file).unwrap().keys.len(), 1);
    }
}
