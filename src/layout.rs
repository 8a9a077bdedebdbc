//! Where things go in a destination: the one place object keys are built.
//!
//! `<prefix>/<owner>/<YYYY-MM-DD>/<slug>.bundle` (`<slug>.bundle.age` when encrypted) and
//! `…/manifest.json` beside them. A slug may have `/`-separated parts (a GitLab project in a
//! subgroup, `sub/api` → `…/<date>/sub/api.bundle`), each checked by
//! [`crate::provider::slug_path_problem`] when listed and by [`Key`] here. The date
//! folder makes every day's run a self-contained, independently restorable set; the manifest is
//! written last, so a folder without one is an incomplete run.
//!
//! The read direction goes through here too: [`OwnerLayout`] turns a listing back into date
//! folders and a key back into (date, slug), and refuses keys that lie outside the owner's
//! folder, so a manifest (perhaps edited by hand, perhaps hostile) can never send a restore
//! or a copy elsewhere in the bucket.

use chrono::NaiveDate;

use crate::store::{Key, StoreError};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const BUNDLE_SUFFIX: &str = ".bundle";
/// The run lock of a date folder sits beside the folder, `<prefix>/<owner>/.lock-<date>`: not
/// inside it, so no listing of a date folder (snapshots, verify, prune) ever sees it, and it
/// starts with `.`, so it can never be mistaken for a date folder or a bundle.
const LOCK_PREFIX: &str = ".lock-";
/// An age-encrypted bundle: `<slug>.bundle.age`, what `age -d` turns back into `<slug>.bundle`.
pub const SEALED_SUFFIX: &str = ".bundle.age";
const DATE_FORMAT: &str = "%Y-%m-%d";

/// Everything of one owner in a destination: `<prefix>/<owner>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLayout {
    prefix: Option<String>,
    owner: String,
    /// `<prefix>/<owner>/`, ending with `/`.
    folder: String,
}

impl OwnerLayout {
    pub fn new(prefix: Option<&str>, owner: &str) -> Result<Self, StoreError> {
        let dir = match prefix {
            Some(p) => Key::new(format!("{p}/{owner}"))?,
            None => Key::new(owner.to_string())?,
        };
        Ok(Self {
            prefix: prefix.map(str::to_owned),
            owner: owner.to_string(),
            folder: format!("{dir}/"),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// `<prefix>/<owner>/` (ends with `/`): what to list to find the date folders.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// The layout of one date folder.
    pub fn run(&self, date: NaiveDate) -> Layout {
        Layout::new(self.prefix.as_deref(), &self.owner, date)
            .expect("a valid owner folder joined with a date is valid")
    }

    /// The date of a folder from a listing of [`OwnerLayout::folder`]
    /// (`git/acme/2026-11-24/`); `None` for anything else found there.
    pub fn date_of_folder(&self, folder: &str) -> Option<NaiveDate> {
        let name = folder.strip_prefix(&self.folder)?.strip_suffix('/')?;
        parse_date(name)
    }

    /// `(date, slug)` of a bundle key of this owner (`git/acme/2026-11-24/api.bundle`, or
    /// `…/sub/api.bundle` for the slug `sub/api`); `None` for a key that is not a bundle inside
    /// one of this owner's date folders, or whose slug the listing could never have produced.
    pub fn parse_bundle_key(&self, key: &str) -> Option<(NaiveDate, String)> {
        let rest = key.strip_prefix(&self.folder)?;
        let (date, file) = rest.split_once('/')?;
        let slug = file
            .strip_suffix(SEALED_SUFFIX)
            .or_else(|| file.strip_suffix(BUNDLE_SUFFIX))?;
        if crate::provider::slug_path_problem(slug).is_some() {
            return None;
        }
        Some((parse_date(date)?, slug.to_string()))
    }
}

/// Whether `name` is one the layout gives a file in a date folder (a bundle, a sealed bundle,
/// the manifest): a folder of that name would collide with it on a file system.
pub fn is_file_name(name: &str) -> bool {
    name == MANIFEST_NAME || name.ends_with(BUNDLE_SUFFIX) || name.ends_with(SEALED_SUFFIX)
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, DATE_FORMAT)
        .ok()
        .filter(|d| d.format(DATE_FORMAT).to_string() == s)
}

#[derive(Debug, Clone)]
pub struct Layout {
    run_dir: Key,
}

impl Layout {
    pub fn new(prefix: Option<&str>, owner: &str, date: NaiveDate) -> Result<Self, StoreError> {
        let date = date.format(DATE_FORMAT).to_string();
        let run_dir = match prefix {
            Some(p) => Key::new(format!("{p}/{owner}/{date}"))?,
            None => Key::new(format!("{owner}/{date}"))?,
        };
        Ok(Self { run_dir })
    }

    /// `<prefix>/<owner>/<date>`: everything of one run.
    pub fn run_dir(&self) -> &Key {
        &self.run_dir
    }

    /// The owner's folder, `<prefix>/<owner>/` (ends with `/`), for sweeping stale uploads.
    pub fn owner_prefix(&self) -> String {
        let s = self.run_dir.as_str();
        let cut = s.rfind('/').map_or(0, |i| i + 1);
        s[..cut].to_string()
    }

    pub fn bundle(&self, slug: &str) -> Result<Key, StoreError> {
        self.bundle_as(slug, false)
    }

    /// The bundle's key, encrypted (`<slug>.bundle.age`) or not.
    pub fn bundle_as(&self, slug: &str, encrypted: bool) -> Result<Key, StoreError> {
        if let Some(reason) = crate::provider::slug_path_problem(slug) {
            return Err(StoreError::InvalidKey {
                key: slug.to_string(),
                reason,
            });
        }
        let suffix = if encrypted {
            SEALED_SUFFIX
        } else {
            BUNDLE_SUFFIX
        };
        self.run_dir.join(&format!("{slug}{suffix}"))
    }

    pub fn manifest(&self) -> Key {
        self.run_dir
            .join(MANIFEST_NAME)
            .expect("a valid run dir joined with a constant name is valid")
    }

    /// `<prefix>/<owner>/.lock-<date>`: the lock two runs of one date folder contend for.
    pub fn lock(&self) -> Key {
        let s = self.run_dir.as_str();
        let (owner, date) = s.rsplit_once('/').unwrap_or(("", s));
        let name = format!("{LOCK_PREFIX}{date}");
        if owner.is_empty() {
            Key::new(name)
        } else {
            Key::new(format!("{owner}/{name}"))
        }
        .expect("a valid owner folder joined with a dot-name is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let l = Layout::new(Some("git"), "acme", date).unwrap();
        assert_eq!(
            l.bundle("api").unwrap().as_str(),
            "git/acme/2026-11-24/api.bundle"
        );
        assert_eq!(l.manifest().as_str(), "git/acme/2026-11-24/manifest.json");
        assert_eq!(l.owner_prefix(), "git/acme/");
        assert_eq!(l.lock().as_str(), "git/acme/.lock-2026-11-24");
        let o = OwnerLayout::new(Some("git"), "acme").unwrap();
        assert_eq!(o.parse_bundle_key(l.lock().as_str()), None);
        assert_eq!(o.date_of_folder(&format!("{}/", l.lock())), None);
        let l = Layout::new(None, "acme", date).unwrap();
        assert_eq!(l.lock().as_str(), "acme/.lock-2026-11-24");
        assert_eq!(
            l.bundle("web.site").unwrap().as_str(),
            "acme/2026-11-24/web.site.bundle"
        );
        assert_eq!(l.owner_prefix(), "acme/");
        assert_eq!(
            l.bundle("team/api").unwrap().as_str(),
            "acme/2026-11-24/team/api.bundle"
        );
        for bad in [
            "..",
            "../x",
            "a//b",
            "/a",
            "a/",
            "x.bundle/y",
            "manifest.json/y",
        ] {
            assert!(l.bundle(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_folders_parse_back() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        for prefix in [Some("git/deep"), None] {
            let o = OwnerLayout::new(prefix, "acme").unwrap();
            let run = o.run(date);
            assert_eq!(o.folder(), run.owner_prefix());
            let key = run.bundle("web.site").unwrap();
            assert_eq!(
                o.parse_bundle_key(key.as_str()),
                Some((date, "web.site".to_string()))
            );
            let sealed = run.bundle_as("web.site", true).unwrap();
            assert!(
                sealed.as_str().ends_with("/web.site.bundle.age"),
                "{sealed}"
            );
            assert_eq!(
                o.parse_bundle_key(sealed.as_str()),
                Some((date, "web.site".to_string()))
            );
            // A slug that itself ends like a suffix parses back whole.
            let odd = run.bundle_as("x.bundle.age", false).unwrap();
            assert_eq!(
                o.parse_bundle_key(odd.as_str()),
                Some((date, "x.bundle.age".to_string()))
            );
            assert_eq!(
                o.date_of_folder(&format!("{}2026-11-24/", o.folder())),
                Some(date)
            );
            for not_a_date in ["2026-11-24", "2026-1-24/", "latest/", "2026-13-01/"] {
                assert_eq!(
                    o.date_of_folder(&format!("{}{not_a_date}", o.folder())),
                    None
                );
            }
            assert_eq!(o.date_of_folder("other/2026-11-24/"), None);
            let folder = o.folder().to_string();
            let nested = run.bundle("team/api").unwrap();
            assert_eq!(
                o.parse_bundle_key(nested.as_str()),
                Some((date, "team/api".to_string()))
            );
            for outside in [
                "elsewhere/acme/2026-11-24/api.bundle".to_string(),
                format!("{folder}2026-11-24/sub/../api.bundle"),
                format!("{folder}2026-11-24/x.bundle/api.bundle"),
                format!("{folder}2026-11-24//api.bundle"),
                format!("{folder}2026-11-24/manifest.json"),
                format!("{folder}2026-11-24/.bundle"),
                format!("{folder}not-a-date/api.bundle"),
            ] {
                assert_eq!(o.parse_bundle_key(&outside), None, "{outside}");
            }
        }
        assert_eq!(
            OwnerLayout::new(None, "acme").unwrap().folder(),
            "acme/",
            "no prefix"
        );
    }
}
