//! The Bitbucket listing-page parser (`provider::bitbucket::read_page`, then the provider-neutral
//! `provider::vet`) on arbitrary bytes: what a Bitbucket API answer (or a proxy in front of it)
//! can say.
//!
//! Beyond "no panic": every entry of a page ends up backed up, rejected or skipped, none lost;
//! a repository that passes has a safe slug, its `owner/slug` name, and a clone URL on the git
//! host with no user info (the token goes nowhere else); rejection reasons print on one line;
//! and the accepted repositories, written out as a page again, read back the same.
#![no_main]

use git_offsite::provider::bitbucket::read_page;
use git_offsite::provider::{RemoteRepo, slug_problem, vet};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use url::Url;

const OWNER: &str = "acme";

fuzz_target!(|data: &[u8]| {
    let origin = Url::parse("https://bitbucket.org").expect("a URL");
    let page = match read_page(data, OWNER, &origin) {
        Ok(page) => page,
        Err(e) => {
            assert!(!e.chars().any(char::is_control), "{e:?}");
            return;
        }
    };
    // How many entries the page has, read the way the parser reads it (a `Value` would
    // refuse numbers the parser skips over, such as 1e999 in a field it ignores).
    #[derive(serde::Deserialize)]
    struct Count {
        values: Vec<serde::de::IgnoredAny>,
    }
    let values = serde_json::from_slice::<Count>(data)
        .expect("a page")
        .values
        .len();
    let listing = &page.listing;
    assert_eq!(
        listing.repos.len() + listing.rejected.len() + page.skipped,
        values
    );
    for repo in &listing.repos {
        assert!(matches!(repo.clone_url.scheme(), "https" | "http"));
        assert_eq!(repo.clone_url.origin(), origin.origin());
        assert!(repo.clone_url.username().is_empty() && repo.clone_url.password().is_none());
    }

    let vetted = vet(OWNER, page.listing.clone());
    let mut slugs = std::collections::HashSet::new();
    for repo in &vetted.repos {
        assert_eq!(slug_problem(&repo.slug), None, "{:?}", repo.slug);
        assert_eq!(repo.full_name, format!("{OWNER}/{}", repo.slug));
        assert!(slugs.insert(repo.slug.clone()), "{} twice", repo.slug);
    }
    for r in &vetted.rejected {
        for text in [&r.slug, &r.full_name, &r.reason] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }

    // The accepted repositories as Bitbucket would list them read back the same.
    let body = serde_json::to_vec(&json!({
        "values": listing.repos.iter().map(as_listed).collect::<Vec<_>>(),
    }))
    .expect("JSON");
    let again = read_page(&body, OWNER, &origin).expect("a written page reads");
    assert_eq!(again.listing.repos, listing.repos);
    assert!(again.listing.rejected.is_empty() && again.skipped == 0);
});

fn as_listed(r: &RemoteRepo) -> serde_json::Value {
    json!({
        "slug": r.slug,
        "full_name": r.full_name,
        "scm": "git",
        "size": r.size,
        "updated_on": r.updated_on,
        "is_private": r.is_private,
        "mainbranch": r.default_branch.as_ref().map(|name| json!({"type": "branch", "name": name})),
        "links": {"clone": [{"name": "https", "href": r.clone_url.as_str()}]},
    })
}
