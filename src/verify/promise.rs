//! What a manifest entry promises about its bundle, and whether the bundle keeps it.
//!
//! Shared by `verify` (which reports a broken promise) and `restore` (which refuses to read
//! a bundle the manifest cannot vouch for). Manifests are untrusted input (people edit them,
//! a bucket may be shared): a key outside the owner's folder is refused before anything is
//! read, and a bundle header is compared ref for ref with the entry, HEAD line included.

use git2::Oid;

use crate::bundle::header::Header;
use crate::layout::OwnerLayout;
use crate::manifest::RepoEntry;
use crate::store::Key;

/// Key, size and SHA-256 of an entry that should have a bundle; the key only if it lies in
/// the owner's folder.
pub fn bundle_fields<'e>(
    owner: &OwnerLayout,
    entry: &'e RepoEntry,
) -> Result<(Key, u64, &'e str), String> {
    let Some(key) = entry.key.as_deref() else {
        return Err("the manifest names no bundle (no `key`)".into());
    };
    if owner.parse_bundle_key(key).is_none() {
        return Err(format!(
            "key `{key}` lies outside the folder of `{}` ({}): not read",
            owner.owner(),
            owner.folder()
        ));
    }
    let key = Key::new(key).map_err(|e| e.to_string())?;
    let size = entry
        .size
        .ok_or("the manifest gives no size for the bundle")?;
    let sha = entry
        .sha256
        .as_deref()
        .ok_or("the manifest gives no sha256 for the bundle")?;
    Ok((key, size, sha))
}

/// Every ref of the header, and its HEAD line, as `(name, oid)`.
pub fn tips(header: &Header) -> Result<Vec<(String, Oid)>, String> {
    header
        .refs
        .iter()
        .map(|(name, oid)| (name.as_str(), oid))
        .chain(header.head.iter().map(|oid| ("HEAD", oid)))
        .map(|(name, oid)| {
            Oid::from_str(oid)
                .map(|o| (name.to_string(), o))
                .map_err(|e| format!("{name}: {}", e.message()))
        })
        .collect()
}

/// The header's refs are exactly the manifest's, and its HEAD line is at the manifest's head.
pub fn check_header(header: &Header, entry: &RepoEntry) -> Result<(), String> {
    let refs = header.ref_map();
    if refs.len() != header.refs.len() {
        return Err("the bundle header names a ref twice".into());
    }
    if refs != entry.refs {
        let list = |names: Vec<&String>| {
            let shown: Vec<&str> = names.iter().take(3).map(|s| s.as_str()).collect();
            let more = names.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{}{more}", shown.join(", "))
        };
        let missing: Vec<&String> = entry
            .refs
            .keys()
            .filter(|r| !refs.contains_key(*r))
            .collect();
        let extra: Vec<&String> = refs
            .keys()
            .filter(|r| !entry.refs.contains_key(*r))
            .collect();
        let moved: Vec<&String> = refs
            .iter()
            .filter(|(r, oid)| entry.refs.get(*r).is_some_and(|o| o != *oid))
            .map(|(r, _)| r)
            .collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("not in the bundle: {}", list(missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("not in the manifest: {}", list(extra)));
        }
        if !moved.is_empty() {
            parts.push(format!("at other objects: {}", list(moved)));
        }
        return Err(format!(
            "the bundle's refs differ from the manifest's ({})",
            parts.join("; ")
        ));
    }
    if let Some(head) = &entry.head {
        let Some(want) = entry.refs.get(head) else {
            return Err(format!("the manifest's head {head} is not one of its refs"));
        };
        match &header.head {
            None => {
                return Err(format!(
                    "the bundle has no HEAD line, the manifest's head is {head}"
                ));
            }
            Some(oid) if oid != want => {
                return Err(format!(
                    "the bundle's HEAD line is {oid}, the manifest's head {head} is {want}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Status;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn entry(refs: &[(&str, &str)], head: Option<&str>) -> RepoEntry {
        RepoEntry {
            slug: "api".into(),
            full_name: "acme/api".into(),
            status: Status::Ok,
            key: None,
            size: None,
            sha256: None,
            head: head.map(str::to_owned),
            refs: refs
                .iter()
                .map(|(r, o)| (r.to_string(), o.to_string()))
                .collect(),
            error: None,
            since: None,
            duration_ms: 0,
            encryption: None,
        }
    }

    fn header(refs: &[(&str, &str)], head: Option<&str>) -> Header {
        Header {
            version: 2,
            refs: refs
                .iter()
                .map(|(r, o)| (r.to_string(), o.to_string()))
                .collect(),
            head: head.map(str::to_owned),
            ..Header::default()
        }
    }

    #[test]
    fn header_refs_must_be_exactly_the_manifests() {
        let main = [("refs/heads/main", A), ("refs/tags/v1", B)];
        let e = entry(&main, Some("refs/heads/main"));
        check_header(&header(&main, Some(A)), &e).unwrap();

        let err = check_header(&header(&main[..1], Some(A)), &e).unwrap_err();
        assert!(err.contains("not in the bundle: refs/tags/v1"), "{err}");
        let more = [("refs/heads/main", A), ("refs/tags/v1", B), ("refs/x", A)];
        let err = check_header(&header(&more, Some(A)), &e).unwrap_err();
        assert!(err.contains("not in the manifest: refs/x"), "{err}");
        let moved = [("refs/heads/main", B), ("refs/tags/v1", B)];
        let err = check_header(&header(&moved, Some(B)), &e).unwrap_err();
        assert!(err.contains("at other objects: refs/heads/main"), "{err}");
        let twice = [
            ("refs/heads/main", A),
            ("refs/tags/v1", B),
            ("refs/tags/v1", B),
        ];
        assert!(check_header(&header(&twice, Some(A)), &e).is_err());

        let err = check_header(&header(&main, Some(B)), &e).unwrap_err();
        assert!(err.contains("HEAD line"), "{err}");
        let err = check_header(&header(&main, None), &e).unwrap_err();
        assert!(err.contains("no HEAD line"), "{err}");
        // Without a head in the manifest, any HEAD line (a detached HEAD) is fine.
        check_header(&header(&main, Some(B)), &entry(&main, None)).unwrap();
    }

    #[test]
    fn keys_outside_the_owner_folder_are_refused_unread() {
        let owner = OwnerLayout::new(Some("git"), "acme").unwrap();
        let mut e = entry(&[], None);
        e.size = Some(1);
        e.sha256 = Some("00".into());
        for bad in [
            "git/other/2026-11-24/api.bundle",
            "git/acme/2026-11-24/../../other/x.bundle",
            "git/acme/2026-11-24/manifest.json",
        ] {
            e.key = Some(bad.into());
            let err = bundle_fields(&owner, &e).unwrap_err();
            assert!(err.contains("outside"), "{bad}: {err}");
        }
        e.key = Some("git/acme/2026-11-20/api.bundle".into());
        assert!(bundle_fields(&owner, &e).is_ok());
        e.key = None;
        assert!(bundle_fields(&owner, &e).unwrap_err().contains("no bundle"));
    }
}
