//! `bundle::header::parse`: the first bytes of every bundle `verify` and `restore` read.

use git_offsite::bundle::header::{self, HashAlgo, Header};
use proptest::prelude::*;

use super::{config, garbled, one_line};

fn oid() -> impl Strategy<Value = String> {
    "[0-9a-f]{40}"
}

fn refs() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = "refs/(heads|tags|pull/[0-9]+)/[a-zA-Z0-9._/ü-]{1,24}";
    prop::collection::vec((name, oid()), 0..8)
}

fn encoded(refs: &[(String, String)], head: Option<&str>) -> Vec<u8> {
    let refs: Vec<(&[u8], String)> = refs
        .iter()
        .map(|(n, o)| (n.as_bytes(), o.clone()))
        .collect();
    header::encode(HashAlgo::Sha1, &refs, head).expect("generated names are writable")
}

/// A header as git can write it: v2, or v3 with `@object-format=sha1`; prerequisites; refs;
/// HEAD.
fn valid_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(oid(), 0..3),
        refs(),
        prop::option::of(oid()),
    )
        .prop_map(|(v3, prereqs, refs, head)| {
            let mut out = if v3 {
                "# v3 git bundle\n@object-format=sha1\n".to_string()
            } else {
                "# v2 git bundle\n".to_string()
            };
            for p in prereqs {
                out.push_str(&format!("-{p} a commit message\n"));
            }
            for (name, oid) in refs {
                out.push_str(&format!("{oid} {name}\n"));
            }
            if let Some(h) = head {
                out.push_str(&format!("{h} HEAD\n"));
            }
            out.push_str("\nPACK\0\0\0\x02");
            out.into_bytes()
        })
}

/// What any header that parses must satisfy.
fn check_parsed(h: &Header, bytes: &[u8]) {
    assert!(h.version == 2 || h.version == 3);
    assert!(h.len <= bytes.len() && bytes[..h.len].ends_with(b"\n\n"));
    let sha1 = |o: &str| o.len() == 40 && o.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        h.refs
            .iter()
            .all(|(n, o)| sha1(o) && !n.is_empty() && n != "HEAD")
    );
    assert!(h.prerequisites.iter().all(|o| sha1(o)));
    assert!(h.head.as_deref().is_none_or(sha1));
    // The same bytes fed as they arrive: "need more" at every cut inside the header.
    for cut in 0..h.len {
        assert_eq!(header::parse(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
}

fn check_any(bytes: &[u8]) {
    match header::parse(bytes) {
        Ok(Some(h)) => check_parsed(&h, bytes),
        Ok(None) => {}
        Err(e) => {
            let text = e.to_string();
            one_line(&text);
            assert!(text.starts_with("not a valid git bundle header"), "{text}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn header_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_any(&bytes);
    }

    #[test]
    fn header_garbled_headers_error_cleanly(bytes in valid_bytes().prop_flat_map(garbled)) {
        check_any(&bytes);
    }

    #[test]
    fn header_valid_headers_parse(bytes in valid_bytes()) {
        let h = header::parse(&bytes).unwrap().expect("complete");
        check_parsed(&h, &bytes);
        prop_assert_eq!(&bytes[h.len..], b"PACK\0\0\0\x02");
    }

    #[test]
    fn header_what_encode_writes_parses_back(refs in refs(), head in prop::option::of(oid())) {
        let bytes = encoded(&refs, head.as_deref());
        let h = header::parse(&bytes).unwrap().expect("complete");
        check_parsed(&h, &bytes);
        prop_assert_eq!(h.version, 2);
        prop_assert_eq!(h.len, bytes.len());
        prop_assert_eq!(&h.refs, &refs);
        prop_assert_eq!(h.head, head);
        prop_assert!(h.capabilities.is_empty() && h.prerequisites.is_empty());
    }
}
