//! The bundle header (`gitformat-bundle`): written by the backup, read back by `verify` and
//! `restore`.
//!
//! v2: `# v2 git bundle\n`, then `-<oid> <comment>` prerequisite lines, `<oid> <refname>` ref
//! lines, an empty line, and the pack. v3 adds `@key[=value]` capability lines after the
//! signature; `object-format` names the hash, and git refuses a bundle with a capability it
//! does not know, so this reader does too. A `<oid> HEAD` line is not a ref: it tells
//! `git clone` what to check out, and is reported separately.
//!
//! The reader is a push parser over the first bytes of a download ([`parse`] answers "need
//! more" until it has seen the empty line), because bundles are streamed, never buffered
//! whole; [`MAX_HEADER`] bounds what it buffers.

/// A header longer than this is not one git would write for any real repository (that would
/// be about a million refs); refusing it bounds the memory a damaged object can take.
pub const MAX_HEADER: usize = 128 * 1024 * 1024;

/// What a bundle header says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u8,
    /// v3 `@key[=value]` lines, in order.
    pub capabilities: Vec<(String, Option<String>)>,
    /// Hex oids of `-<oid>` prerequisite lines (objects the pack does not contain).
    pub prerequisites: Vec<String>,
    /// `(refname, hex oid)` in file order, without the `HEAD` line.
    pub refs: Vec<(String, String)>,
    /// The oid of the `<oid> HEAD` line.
    pub head: Option<String>,
    /// Bytes up to and including the empty line: the pack starts here.
    pub len: usize,
}

impl Header {
    /// The refs as a map, as the manifest stores them.
    pub fn ref_map(&self) -> std::collections::BTreeMap<String, String> {
        self.refs.iter().cloned().collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid git bundle header: {0}")]
pub struct HeaderError(pub String);

/// Parses a header from the start of a bundle. `Ok(None)`: `buf` ends before the header does,
/// call again with more bytes.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let bad = |why: String| Err(HeaderError(why));
    let mut header = Header::default();
    let mut pos = 0;
    let mut first = true;
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_HEADER {
                return bad(format!("no end of header within {MAX_HEADER} bytes"));
            }
            // Enough to tell a bundle from something else before the whole header is in.
            let sig = b"# v";
            if first && !buf.starts_with(&sig[..buf.len().min(sig.len())]) {
                return bad("it does not start with `# v2 git bundle` or `# v3 git bundle`".into());
            }
            return Ok(None);
        };
        let line = &buf[pos..pos + nl];
        pos += nl + 1;
        if first {
            first = false;
            header.version = match line {
                b"# v2 git bundle" => 2,
                b"# v3 git bundle" => 3,
                _ => {
                    return bad(
                        "it does not start with `# v2 git bundle` or `# v3 git bundle`".into(),
                    );
                }
            };
            continue;
        }
        if line.is_empty() {
            header.len = pos;
            return check_capabilities(header).map(Some);
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| HeaderError("a header line is not UTF-8".into()))?;
        // How a line shows in an error: it comes from a file anyone may have written.
        let shown = || crate::text::quote(text);
        if let Some(cap) = text.strip_prefix('@') {
            if header.version < 3 || !header.refs.is_empty() || !header.prerequisites.is_empty() {
                return bad(format!(
                    "capability line `{}` outside a v3 header's capability section",
                    shown()
                ));
            }
            let (k, v) = match cap.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (cap.to_string(), None),
            };
            header.capabilities.push((k, v));
            continue;
        }
        if let Some(rest) = text.strip_prefix('-') {
            let oid = rest.split(' ').next().unwrap_or("");
            check_oid(oid, text)?;
            header.prerequisites.push(oid.to_string());
            continue;
        }
        let Some((oid, name)) = text.split_once(' ') else {
            return bad(format!("line `{}` is not `<oid> <refname>`", shown()));
        };
        check_oid(oid, text)?;
        if name.is_empty() {
            return bad(format!("line `{}` has no ref name", shown()));
        }
        if name == "HEAD" {
            header.head = Some(oid.to_string());
        } else {
            header.refs.push((name.to_string(), oid.to_string()));
        }
    }
}

fn check_oid(oid: &str, line: &str) -> Result<(), HeaderError> {
    let ok = matches!(oid.len(), 40 | 64) && oid.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(HeaderError(format!(
            "line `{}` does not start with an object id",
            crate::text::quote(line)
        )))
    }
}

/// git aborts on a capability it does not know; so do we. `object-format` must name a hash
/// this build can read (sha1: libgit2 here has no sha256).
fn check_capabilities(header: Header) -> Result<Header, HeaderError> {
    for (k, v) in &header.capabilities {
        match (k.as_str(), v.as_deref()) {
            ("object-format", Some("sha1")) => {}
            ("object-format", Some(other)) => {
                return Err(HeaderError(format!(
                    "object format {} is not supported by this build of libgit2",
                    crate::text::quote(other)
                )));
            }
            ("filter", _) => {
                return Err(HeaderError(
                    "a filtered (partial) bundle lacks objects and cannot be restored on its own"
                        .into(),
                ));
            }
            (other, _) => {
                return Err(HeaderError(format!(
                    "unknown capability `@{}`",
                    crate::text::quote(other)
                )));
            }
        }
    }
    let oids = header.refs.iter().map(|(_, oid)| oid);
    for oid in oids.chain(&header.prerequisites).chain(&header.head) {
        if oid.len() != 40 {
            return Err(HeaderError(format!("object id {oid} is not a SHA-1")));
        }
    }
    Ok(header)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    Sha1,
    #[allow(dead_code)] // written once libgit2 (and so this tool) can read sha256 repositories
    Sha256,
}

/// The bundle header: signature, ref lines, the HEAD line, the empty line that ends it.
/// v2 for SHA-1 (what every git since 1.5 reads); v3 with `@object-format=sha256` otherwise,
/// because v2 has no way to name the hash and git would read the oids as SHA-1.
pub fn encode(
    algo: HashAlgo,
    refs: &[(&[u8], String)],
    head: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut h = Vec::with_capacity(64 + refs.len() * 80);
    match algo {
        HashAlgo::Sha1 => h.extend_from_slice(b"# v2 git bundle\n"),
        HashAlgo::Sha256 => h.extend_from_slice(b"# v3 git bundle\n@object-format=sha256\n"),
    }
    for (name, oid) in refs {
        // git splits a ref line at the first space and ends it at the newline.
        if name.is_empty() || name.iter().any(|&b| b == b'\n' || b == b' ' || b == 0) {
            return Err(format!(
                "ref name {:?} cannot be written into a bundle",
                String::from_utf8_lossy(name)
            ));
        }
        h.extend_from_slice(oid.as_bytes());
        h.push(b' ');
        h.extend_from_slice(name);
        h.push(b'\n');
    }
    if let Some(oid) = head {
        h.extend_from_slice(oid.as_bytes());
        h.extend_from_slice(b" HEAD\n");
    }
    h.push(b'\n');
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn v2_header_lists_refs_then_head_then_blank_line() {
        let refs = [
            (b"refs/tags/v1".as_slice(), A.to_owned()),
            ("refs/heads/ünïcode".as_bytes(), B.to_owned()),
        ];
        let h = encode(HashAlgo::Sha1, &refs, Some(B)).unwrap();
        let expected =
            format!("# v2 git bundle\n{A} refs/tags/v1\n{B} refs/heads/ünïcode\n{B} HEAD\n\n");
        assert_eq!(String::from_utf8(h).unwrap(), expected);
    }

    #[test]
    fn header_without_head_has_no_head_line() {
        let refs = [(b"refs/heads/x".as_slice(), A.to_owned())];
        let h = encode(HashAlgo::Sha1, &refs, None).unwrap();
        assert_eq!(
            h,
            format!("# v2 git bundle\n{A} refs/heads/x\n\n").into_bytes()
        );
    }

    #[test]
    fn sha256_header_is_v3_with_object_format() {
        let oid = "ab".repeat(32);
        let refs = [(b"refs/heads/main".as_slice(), oid.clone())];
        let h = encode(HashAlgo::Sha256, &refs, Some(&oid)).unwrap();
        assert_eq!(
            String::from_utf8(h).unwrap(),
            format!(
                "# v3 git bundle\n@object-format=sha256\n{oid} refs/heads/main\n{oid} HEAD\n\n"
            )
        );
    }

    #[test]
    fn header_rejects_names_that_would_break_the_format() {
        for bad in [&b"refs/heads/a b"[..], b"refs/heads/a\nb", b""] {
            assert!(encode(HashAlgo::Sha1, &[(bad, A.to_owned())], None).is_err());
        }
    }

    #[test]
    fn parse_reads_back_what_encode_writes() {
        let refs = [
            (b"refs/tags/v1".as_slice(), A.to_owned()),
            ("refs/heads/ünïcode".as_bytes(), B.to_owned()),
        ];
        let mut bytes = encode(HashAlgo::Sha1, &refs, Some(B)).unwrap();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"PACK\0\0\0\x02");
        // Byte by byte: "need more" until the empty line, then the whole header.
        for cut in 0..header_len {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "at {cut}");
        }
        let h = parse(&bytes).unwrap().unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.len, header_len);
        assert_eq!(
            h.refs,
            [
                ("refs/tags/v1".to_string(), A.to_string()),
                ("refs/heads/ünïcode".to_string(), B.to_string())
            ]
        );
        assert_eq!(h.head.as_deref(), Some(B));
        assert!(h.prerequisites.is_empty() && h.capabilities.is_empty());
        assert_eq!(&bytes[h.len..h.len + 4], b"PACK");
    }

    #[test]
    fn parse_reads_v3_and_prerequisites_and_refuses_what_git_refuses() {
        let v3 = format!("# v3 git bundle\n@object-format=sha1\n-{A} base\n{B} refs/heads/x\n\n");
        let h = parse(v3.as_bytes()).unwrap().unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.prerequisites, [A]);
        assert_eq!(
            h.capabilities,
            [("object-format".to_string(), Some("sha1".to_string()))]
        );
        for bad in [
            "PACK....".to_string(),
            "# v4 git bundle\n\n".to_string(),
            "# v2 git bundle\nnot-an-oid refs/heads/x\n\n".to_string(),
            format!("# v2 git bundle\n{A}\n\n"),
            format!("# v2 git bundle\n@object-format=sha1\n{A} refs/heads/x\n\n"),
            format!("# v3 git bundle\n@object-format=sha256\n{A} refs/heads/x\n\n"),
            format!("# v3 git bundle\n@filter=blob:none\n{A} refs/heads/x\n\n"),
            format!("# v3 git bundle\n@frobnicate\n{A} refs/heads/x\n\n"),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} should be refused");
        }
        // Garbage is refused before a newline arrives, not after 128 MiB of it.
        assert!(parse(b"\x00\x01binary").is_err());
    }
}
