//! Where things go in a destination: the one place object keys are built.
//!
//! `<prefix>/<owner>/<YYYY-MM-DD>/<slug>.bundle` and `…/manifest.json` beside them. The date
//! folder makes every day's run a self-contained, independently restorable set; the manifest is
//! written last, so a folder without one is an incomplete run.

use chrono::NaiveDate;

use crate::store::{Key, StoreError};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const BUNDLE_SUFFIX: &str = ".bundle";

#[derive(Debug, Clone)]
pub struct Layout {
    run_dir: Key,
}

impl Layout {
    pub fn new(prefix: Option<&str>, owner: &str, date: NaiveDate) -> Result<Self, StoreError> {
        let date = date.format("%Y-%m-%d").to_string();
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
        if slug.contains('/') {
            return Err(StoreError::InvalidKey {
                key: slug.to_string(),
                reason: "a repository slug may not contain `/`".into(),
            });
        }
        self.run_dir.join(&format!("{slug}{BUNDLE_SUFFIX}"))
    }

    pub fn manifest(&self) -> Key {
        self.run_dir
            .join(MANIFEST_NAME)
            .expect("a valid run dir joined with a constant name is valid")
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
        let l = Layout::new(None, "acme", date).unwrap();
        assert_eq!(
            l.bundle("web.site").unwrap().as_str(),
            "acme/2026-11-24/web.site.bundle"
        );
        assert_eq!(l.owner_prefix(), "acme/");
        assert!(l.bundle("a/b").is_err());
        assert!(l.bundle("..").is_err() || l.bundle("..").unwrap().as_str().ends_with("...bundle"));
    }
}
