//! Whether the mirror's pack can go into the bundle verbatim: one complete, undamaged pack
//! and nothing beside it (no loose objects, alternates or promisor packs). Reusing it saves
//! building a pack of the whole history again; any doubt means building one.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub(super) enum PackSource {
    /// Copy this pack verbatim.
    Reuse(PathBuf),
    /// Build a new pack; the reason is for the debug log.
    Build(String),
}

/// Whether the repository's only pack can be copied verbatim with the certainty of a complete
/// bundle. Cheap: directory listings and a few bytes of the pack and its index, never the
/// pack's contents. `Err` when that single pack is damaged (no pack could be built from it).
pub(super) fn pack_source(git_dir: &Path) -> Result<PackSource, String> {
    let build = |why: &str| Ok(PackSource::Build(why.to_owned()));
    let objects = git_dir.join("objects");
    let alternates = objects.join("info").join("alternates");
    if fs::metadata(&alternates).is_ok_and(|m| m.len() > 0) {
        return build("objects may live in an alternate object store");
    }
    match has_loose_objects(&objects) {
        Ok(false) => {}
        Ok(true) => return build("there are loose objects"),
        Err(e) => return build(&format!("cannot list objects: {e}")),
    }
    let mut packs = Vec::new();
    let listing = match fs::read_dir(objects.join("pack")) {
        Ok(listing) => listing,
        Err(e) => return build(&format!("cannot list packs: {e}")),
    };
    for entry in listing {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => return build(&format!("cannot list packs: {e}")),
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("pack") => packs.push(path),
            // A partial clone's pack: objects it leaves out live on the server.
            Some("promisor") => return build("a promisor pack is present"),
            _ => {}
        }
    }
    let pack = match packs.len() {
        1 => packs.pop().expect("one pack"),
        0 => return build("there is no pack"),
        n => return build(&format!("there are {n} packs")),
    };
    check_pack_and_index(&pack, &pack.with_extension("idx"))
        .map_err(|why| format!("damaged pack {}: {why}", pack.display()))?;
    Ok(PackSource::Reuse(pack))
}

fn has_loose_objects(objects: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(objects)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_fanout = name.len() == 2
            && name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_fanout && entry.file_type()?.is_dir() && fs::read_dir(entry.path())?.next().is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The pack starts like a pack, and its index describes this very pack: same object count and
/// same trailing checksum. A truncated or swapped pack fails here rather than in the user's
/// `git clone` (where it would be "index-pack died", long after the backup said OK).
fn check_pack_and_index(pack: &Path, idx: &Path) -> Result<(), String> {
    const HASH: u64 = 20;
    let read = |path: &Path, at: SeekFrom, len: usize| -> Result<(Vec<u8>, u64), String> {
        let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = f.metadata().map_err(|e| e.to_string())?.len();
        if size < 12 + 2 * HASH {
            return Err(format!("{} is too short", path.display()));
        }
        f.seek(at).map_err(|e| e.to_string())?;
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok((buf, size))
    };
    let (pack_head, _) = read(pack, SeekFrom::Start(0), 12)?;
    let version = u32::from_be_bytes(pack_head[4..8].try_into().expect("4 bytes"));
    if &pack_head[..4] != b"PACK" || !(version == 2 || version == 3) {
        return Err("the pack has no valid pack header".into());
    }
    let pack_objects = u32::from_be_bytes(pack_head[8..12].try_into().expect("4 bytes"));
    let (pack_trailer, _) = read(pack, SeekFrom::End(-(HASH as i64)), HASH as usize)?;

    // idx v2 starts with "\xfftOc" + version and then the fanout table; v1 starts with the
    // fanout table. Its last entry is the object count. Both end with the pack's checksum
    // followed by the index's own.
    let (idx_head, _) = read(idx, SeekFrom::Start(0), 8)?;
    let fanout_at = if idx_head[..4] == *b"\xfftOc" { 8 } else { 0 };
    let (last_fanout, _) = read(idx, SeekFrom::Start(fanout_at + 255 * 4), 4)?;
    let idx_objects = u32::from_be_bytes(last_fanout[..].try_into().expect("4 bytes"));
    let (idx_pack_sum, _) = read(idx, SeekFrom::End(-2 * HASH as i64), HASH as usize)?;

    if pack_objects != idx_objects {
        return Err(format!(
            "the pack holds {pack_objects} objects but its index lists {idx_objects}"
        ));
    }
    if pack_trailer != idx_pack_sum {
        return Err("the pack's checksum does not match its index".into());
    }
    Ok(())
}
