//! `provider::bitbucket::read_page`: one page of `GET /2.0/repositories/{workspace}`, as
//! Bitbucket (or whatever answers in its place) sends it.

use git_offsite::provider::RemoteRepo;
use git_offsite::provider::bitbucket::read_page;
use proptest::prelude::*;
use serde_json::{Value, json};
use url::Url;

use super::{config, garbled, one_line};

fn origin() -> Url {
    Url::parse("https://bitbucket.org").unwrap()
}

/// A listed repository and what it must read as (`None`: a Mercurial one, skipped).
fn listed() -> impl Strategy<Value = (Value, Option<RemoteRepo>)> {
    (
        "[a-z0-9][a-z0-9._-]{0,20}",
        prop::option::of("[a-z]{1,8}(:[a-z0-9]{1,8})?@"),
        any::<bool>(),
        (
            prop::option::of(prop::option::of("[a-zA-Z0-9/._-]{1,16}")),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<bool>()),
            prop::option::of("(?s:.){0,12}"),
        ),
    )
        .prop_map(
            |(slug, userinfo, hg, (branch, size, is_private, updated_on))| {
                let href = format!(
                    "https://{}bitbucket.org/acme/{slug}.git",
                    userinfo.as_deref().unwrap_or("")
                );
                let json = json!({
                    "type": "repository",
                    "slug": slug,
                    "full_name": format!("acme/{slug}"),
                    "scm": if hg { "hg" } else { "git" },
                    "size": size,
                    "is_private": is_private,
                    "updated_on": updated_on,
                    "mainbranch": branch.as_ref().map(|b| json!({"type": "branch", "name": b})),
                    "links": {"clone": [
                        {"name": "ssh", "href": format!("git@bitbucket.org:acme/{slug}.git")},
                        {"name": "https", "href": href},
                    ]},
                });
                let repo = (!hg).then(|| RemoteRepo {
                    clone_url: Url::parse(&format!("https://bitbucket.org/acme/{slug}.git"))
                        .unwrap(),
                    full_name: format!("acme/{slug}"),
                    slug,
                    size,
                    updated_on,
                    default_branch: branch.flatten(),
                    is_private,
                });
                (json, repo)
            },
        )
}

/// A page's bytes, the repositories it must read as, how many it skips, and whether it has a
/// `next` link.
fn page() -> impl Strategy<Value = (Vec<u8>, Vec<RemoteRepo>, usize, bool)> {
    (prop::collection::vec(listed(), 0..6), any::<bool>()).prop_map(|(entries, more)| {
        let skipped = entries.iter().filter(|(_, r)| r.is_none()).count();
        let (values, repos): (Vec<Value>, Vec<Option<RemoteRepo>>) = entries.into_iter().unzip();
        let mut page = json!({"pagelen": 100, "size": values.len(), "page": 1, "values": values});
        if more {
            page["next"] = json!("https://api.bitbucket.org/2.0/repositories/acme?page=2");
        }
        let bytes = serde_json::to_vec_pretty(&page).unwrap();
        (bytes, repos.into_iter().flatten().collect(), skipped, more)
    })
}

fn check_any(bytes: &[u8]) {
    match read_page(bytes, "acme", &origin()) {
        Ok(page) => {
            for repo in &page.listing.repos {
                assert_eq!(repo.clone_url.origin(), origin().origin());
                assert!(repo.clone_url.username().is_empty());
                assert!(repo.clone_url.password().is_none());
            }
            for r in &page.listing.rejected {
                for text in [&r.slug, &r.full_name, &r.reason] {
                    one_line(text);
                }
            }
        }
        Err(e) => {
            one_line(&e);
            assert!(e.starts_with("not a page of repositories"), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn page_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_any(&bytes);
    }

    #[test]
    fn page_garbled_pages_error_cleanly(bytes in page().prop_flat_map(|(b, ..)| garbled(b))) {
        check_any(&bytes);
    }

    #[test]
    fn page_generated_pages_read_as_listed((bytes, repos, skipped, more) in page()) {
        let page = read_page(&bytes, "acme", &origin()).unwrap();
        prop_assert_eq!(page.listing.repos, repos);
        prop_assert!(page.listing.rejected.is_empty());
        prop_assert_eq!(page.skipped, skipped);
        prop_assert_eq!(page.next.is_some(), more);
    }
}
