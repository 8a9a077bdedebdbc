//! The bundle-header reader (`bundle::header::parse`) on arbitrary bytes: the first bytes of
//! every bundle `verify` and `restore` download, which may be damaged or hostile.
//!
//! Beyond "no panic": a header that parses is one git could have written (40-hex oids, ref
//! names with no newline, the pack right after the empty line); it reads the same when the
//! pack is cut off or followed by anything; every shorter prefix of it asks for more bytes
//! (the reader is fed as a download arrives); and written back out, it reads back the same,
//! byte for byte what `header::encode` writes when encode can write it. A refusal is one
//! line with no control character from the input.
#![no_main]

use git_offsite::bundle::header::{self, HashAlgo, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match header::parse(data) {
        Ok(Some(h)) => check(&h, data),
        Ok(None) => {}
        // A refusal is one line, whatever the bytes held.
        Err(e) => {
            let text = e.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
});

fn check(h: &Header, data: &[u8]) {
    assert!(h.version == 2 || h.version == 3);
    assert!(h.len <= data.len() && h.len >= 17, "len {}", h.len);
    assert!(data[..h.len].ends_with(b"\n\n"));
    let hex40 = |oid: &str| oid.len() == 40 && oid.bytes().all(|b| b.is_ascii_hexdigit());
    for (name, oid) in &h.refs {
        assert!(hex40(oid), "{oid:?}");
        assert!(!name.is_empty() && !name.contains('\n') && name != "HEAD");
    }
    assert!(h.prerequisites.iter().all(|o| hex40(o)));
    assert!(h.head.as_deref().is_none_or(hex40));
    if h.version == 2 {
        assert!(h.capabilities.is_empty());
    }
    for (k, v) in &h.capabilities {
        assert_eq!((k.as_str(), v.as_deref()), ("object-format", Some("sha1")));
    }

    // The header alone, and the header before other pack bytes, read the same.
    let alone = &data[..h.len];
    assert_eq!(header::parse(alone).as_ref(), Ok(&Some(h.clone())));
    let mut other = alone.to_vec();
    other.extend_from_slice(b"PACK\n\n\xff");
    assert_eq!(header::parse(&other).as_ref(), Ok(&Some(h.clone())));
    // Streamed: any cut inside the header means "need more", never an error.
    for cut in cuts(h.len) {
        assert_eq!(header::parse(&data[..cut]), Ok(None), "cut at {cut}");
    }

    // Written out again, it reads back the same.
    let written = render(h);
    let back = header::parse(&written).expect("a rendered header parses");
    let back = back.expect("a rendered header is complete");
    assert_eq!(
        (
            &back.capabilities,
            &back.prerequisites,
            &back.refs,
            &back.head
        ),
        (&h.capabilities, &h.prerequisites, &h.refs, &h.head)
    );
    assert_eq!(back.len, written.len());

    // What the backup's writer makes of the same refs is that very header (v2, SHA-1).
    if h.prerequisites.is_empty() {
        let refs: Vec<(&[u8], String)> = h
            .refs
            .iter()
            .map(|(n, o)| (n.as_bytes(), o.clone()))
            .collect();
        match header::encode(HashAlgo::Sha1, &refs, h.head.as_deref()) {
            Ok(encoded) => {
                let v2 = Header {
                    version: 2,
                    capabilities: Vec::new(),
                    ..h.clone()
                };
                assert_eq!(encoded, render(&v2));
            }
            // encode refuses only names git cannot have in a bundle line.
            Err(_) => assert!(h.refs.iter().any(|(n, _)| n.contains([' ', '\0']))),
        }
    }
}

/// A handful of cut points inside a header of `len` bytes (all of them for small headers).
fn cuts(len: usize) -> Vec<usize> {
    if len <= 256 {
        (0..len).collect()
    } else {
        let mut v: Vec<usize> = (0..64).collect();
        v.extend((1..64).map(|i| i * len / 64));
        v.extend(len - 64..len);
        v
    }
}

/// The header as git would write it: signature, capabilities, prerequisites, refs, HEAD.
fn render(h: &Header) -> Vec<u8> {
    let mut out = format!("# v{} git bundle\n", h.version);
    for (k, v) in &h.capabilities {
        match v {
            Some(v) => out.push_str(&format!("@{k}={v}\n")),
            None => out.push_str(&format!("@{k}\n")),
        }
    }
    for oid in &h.prerequisites {
        out.push_str(&format!("-{oid}\n"));
    }
    for (name, oid) in &h.refs {
        out.push_str(&format!("{oid} {name}\n"));
    }
    if let Some(oid) = &h.head {
        out.push_str(&format!("{oid} HEAD\n"));
    }
    out.push('\n');
    out.into_bytes()
}
