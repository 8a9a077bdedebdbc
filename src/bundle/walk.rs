//! Connectivity: is everything reachable from a bundle's refs in the repository its pack was
//! indexed into?
//!
//! libgit2's indexer proves each object in a pack is intact (its id is the hash of its
//! bytes) but not that the pack is *complete*: a bundle whose header names an object the pack
//! lacks, or whose pack lost a parent commit or a blob, indexes fine and then fails the day
//! someone clones it. libgit2 has no `fsck`/connectivity check, so this is one: a revwalk over
//! every commit tip (annotated tags peeled, each tag object checked on the way), and for every
//! commit its tree, walked with a visited set so a tree shared by many commits is read once.
//! Blobs are checked with an index lookup, never read. Submodule gitlinks name commits of
//! another repository and are not objects here.
//!
//! Blocking (libgit2): call from `spawn_blocking`.

use std::collections::HashSet;

use git2::{ObjectType, Oid, Repository};

/// How much was walked, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walked {
    pub commits: u64,
    pub trees: u64,
    pub blobs: u64,
    pub tags: u64,
}

/// Checks that every object reachable from `tips` (`(name, oid)`, e.g. a header's refs and
/// its HEAD line) is in `repo`. The error names what is missing and where it was reached
/// from.
pub fn check(repo: &Repository, tips: &[(String, Oid)]) -> Result<Walked, String> {
    let odb = repo.odb().map_err(|e| e.message().to_owned())?;
    let mut walked = Walked::default();
    let mut trees = HashSet::new();
    let mut tags = HashSet::new();
    let mut revwalk = repo.revwalk().map_err(|e| e.message().to_owned())?;
    let mut any_commit = false;
    for (name, tip) in tips {
        let mut oid = *tip;
        loop {
            let (_, kind) = odb.read_header(oid).map_err(|_| {
                if oid == *tip {
                    format!("{name} points to {oid}, which is not in the pack")
                } else {
                    format!("{name}: tag {tip} tags {oid}, which is not in the pack")
                }
            })?;
            match kind {
                ObjectType::Tag => {
                    let tag = repo.find_tag(oid).map_err(|e| {
                        format!("tag {oid} (from {name}) does not read: {}", e.message())
                    })?;
                    if tags.insert(oid) {
                        walked.tags += 1;
                    }
                    oid = tag.target_id();
                }
                ObjectType::Commit => {
                    revwalk
                        .push(oid)
                        .map_err(|e| format!("commit {oid} (from {name}): {}", e.message()))?;
                    any_commit = true;
                    break;
                }
                ObjectType::Tree => {
                    walk_tree(repo, &odb, oid, name, &mut trees, &mut walked)?;
                    break;
                }
                _ => {
                    walked.blobs += 1;
                    break;
                }
            }
        }
    }
    if !any_commit {
        return Ok(walked);
    }
    for commit in revwalk {
        // A parent the pack lacks ends the walk here, with libgit2's "object not found".
        let oid = commit.map_err(|e| format!("the history is incomplete: {}", e.message()))?;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| format!("commit {oid} does not read: {}", e.message()))?;
        walked.commits += 1;
        let tree = commit.tree_id();
        if trees.contains(&tree) {
            continue;
        }
        walk_tree(
            repo,
            &odb,
            tree,
            &format!("commit {oid}"),
            &mut trees,
            &mut walked,
        )?;
    }
    Ok(walked)
}

/// Walks the tree `root` and its subtrees (those not already in `seen`), checking every blob.
fn walk_tree(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    root: Oid,
    from: &str,
    seen: &mut HashSet<Oid>,
    walked: &mut Walked,
) -> Result<(), String> {
    if !seen.insert(root) {
        return Ok(());
    }
    let mut stack = vec![root];
    while let Some(oid) = stack.pop() {
        let tree = repo
            .find_tree(oid)
            .map_err(|_| format!("tree {oid} (reachable from {from}) is not in the pack"))?;
        walked.trees += 1;
        for entry in tree.iter() {
            let id = entry.id();
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    if seen.insert(id) {
                        stack.push(id);
                    }
                }
                // A submodule: a commit of another repository.
                Some(ObjectType::Commit) => {}
                _ => {
                    if !odb.exists(id) {
                        return Err(format!(
                            "blob {id} (`{}`, reachable from {from}) is not in the pack",
                            String::from_utf8_lossy(entry.name_bytes())
                        ));
                    }
                    walked.blobs += 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use git2::{PackBuilder, Signature};

    /// A repository with two commits on main (the second adds `dir/b.txt`), an annotated tag
    /// of the first, and a submodule gitlink.
    fn source() -> (tempfile::TempDir, Repository, [Oid; 2], Oid) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let (c1, c2, tag) = {
            let sig = Signature::new("T", "t@example.invalid", &git2::Time::new(1_700_000_000, 0))
                .unwrap();
            let a = repo.blob(b"a\n").unwrap();
            let mut tb = repo.treebuilder(None).unwrap();
            tb.insert("a.txt", a, 0o100644).unwrap();
            let t1 = tb.write().unwrap();
            let c1 = repo
                .commit(None, &sig, &sig, "one", &repo.find_tree(t1).unwrap(), &[])
                .unwrap();
            let b = repo.blob(b"b\n").unwrap();
            let mut sub = repo.treebuilder(None).unwrap();
            sub.insert("b.txt", b, 0o100644).unwrap();
            let sub = sub.write().unwrap();
            let mut tb = repo
                .treebuilder(Some(&repo.find_tree(t1).unwrap()))
                .unwrap();
            tb.insert("dir", sub, 0o040000).unwrap();
            // A gitlink: the commit lives in another repository.
            tb.insert("vendor", Oid::from_str(&"ab".repeat(20)).unwrap(), 0o160000)
                .unwrap();
            let t2 = tb.write().unwrap();
            let parent = repo.find_commit(c1).unwrap();
            let c2 = repo
                .commit(
                    Some("refs/heads/main"),
                    &sig,
                    &sig,
                    "two",
                    &repo.find_tree(t2).unwrap(),
                    &[&parent],
                )
                .unwrap();
            let tag = repo
                .tag(
                    "v1",
                    &repo.find_object(c1, None).unwrap(),
                    &sig,
                    "v1",
                    false,
                )
                .unwrap();
            (c1, c2, tag)
        };
        (tmp, repo, [c1, c2], tag)
    }

    /// A new repository holding only what `fill` put into a pack built from `src`.
    fn copy_of(
        src: &Repository,
        fill: impl FnOnce(&mut PackBuilder<'_>),
    ) -> (tempfile::TempDir, Repository) {
        let mut pb = src.packbuilder().unwrap();
        fill(&mut pb);
        let mut pack = git2::Buf::new();
        pb.write_buf(&mut pack).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        {
            let odb = repo.odb().unwrap();
            let mut w = odb.packwriter().unwrap();
            std::io::Write::write_all(&mut w, &pack).unwrap();
            w.commit().unwrap();
        }
        (tmp, repo)
    }

    fn insert_commit(src: &Repository, pb: &mut PackBuilder<'_>, c: Oid) {
        pb.insert_object(c, None).unwrap();
        pb.insert_tree(src.find_commit(c).unwrap().tree_id())
            .unwrap();
    }

    #[test]
    fn a_complete_pack_walks_clean_and_counts() {
        let (_t, src, [c1, c2], tag) = source();
        let (_u, copy) = copy_of(&src, |pb| {
            let mut walk = src.revwalk().unwrap();
            walk.push(c2).unwrap();
            pb.insert_walk(&mut walk).unwrap();
            pb.insert_object(tag, None).unwrap();
        });
        let tips = [
            ("refs/heads/main".to_string(), c2),
            ("refs/tags/v1".to_string(), tag),
        ];
        let walked = check(&copy, &tips).unwrap();
        assert_eq!(walked.commits, 2);
        assert_eq!(walked.tags, 1);
        assert_eq!(walked.trees, 3, "two root trees and `dir`");
        assert!(walked.blobs >= 2, "{walked:?}");
        let _ = c1;
    }

    #[test]
    fn a_missing_parent_blob_tag_target_or_tip_is_named() {
        let (_t, src, [c1, c2], tag) = source();
        let main = [("refs/heads/main".to_string(), c2)];

        // The parent commit is missing.
        let (_u, copy) = copy_of(&src, |pb| insert_commit(&src, pb, c2));
        let e = check(&copy, &main).unwrap_err();
        assert!(e.contains("history is incomplete"), "{e}");

        // A blob is missing: the tree is inserted entry by entry, leaving `b.txt` out.
        let (_u, copy) = copy_of(&src, |pb| {
            insert_commit(&src, pb, c1);
            pb.insert_object(c2, None).unwrap();
            let t2 = src.find_commit(c2).unwrap().tree().unwrap();
            pb.insert_object(t2.id(), None).unwrap();
            let dir = t2.get_name("dir").unwrap().id();
            pb.insert_object(dir, None).unwrap();
        });
        let e = check(&copy, &main).unwrap_err();
        assert!(e.contains("b.txt") && e.contains("not in the pack"), "{e}");

        // The annotated tag is there, what it tags is not.
        let (_u, copy) = copy_of(&src, |pb| pb.insert_object(tag, None).unwrap());
        let e = check(&copy, &[("refs/tags/v1".to_string(), tag)]).unwrap_err();
        assert!(
            e.contains(&c1.to_string()) && e.contains("refs/tags/v1"),
            "{e}"
        );

        // A tip that is not there at all.
        let ghost = Oid::from_str(&"cd".repeat(20)).unwrap();
        let e = check(&copy, &[("refs/heads/ghost".to_string(), ghost)]).unwrap_err();
        assert!(
            e.contains("refs/heads/ghost") && e.contains(&ghost.to_string()),
            "{e}"
        );
    }
}
