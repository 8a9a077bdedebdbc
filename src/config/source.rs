//! The owners of a run: `--owner` or the config file's `[[source]]` entries, each with its
//! host (the provider's table with the source's own keys over it), its filters and Bitbucket's
//! credential references.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::file::{FileConfig, SourceSection};
use super::{ConfigError, invalid};
use crate::cli::FilterArgs;
use crate::provider::{ProviderArgs, ProviderConfig, choose};

/// Include/exclude globs on repository slugs. Exclude wins; no include means everything.
#[derive(Debug, Clone)]
pub struct RepoFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl RepoFilter {
    pub fn new(args: &FilterArgs) -> Result<Self, ConfigError> {
        Self::from_globs(&args.include, &args.exclude)
    }

    pub fn from_globs(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        fn build(what: &'static str, globs: &[String]) -> Result<GlobSet, ConfigError> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g).map_err(|e| invalid(what, g, e.kind()))?);
            }
            b.build().map_err(|e| invalid(what, globs.join(","), e))
        }
        Ok(Self {
            include: if include.is_empty() {
                None
            } else {
                Some(build("--include glob", include)?)
            },
            exclude: build("--exclude glob", exclude)?,
        })
    }

    pub fn matches(&self, slug: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(slug)) && !self.exclude.is_match(slug)
    }
}

/// Checks an owner name: it becomes a path segment of every key.
pub fn check_owner(owner: &str) -> Result<(), ConfigError> {
    if owner.is_empty()
        || owner == "."
        || owner == ".."
        || owner.contains(['/', '\\'])
        || owner.chars().any(char::is_control)
    {
        return Err(invalid(
            "--owner",
            owner,
            "expected a workspace name such as `acme`",
        ));
    }
    Ok(())
}

/// One owner to back up, with its host (whose settings say where its credentials are) and its
/// filters.
#[derive(Debug, Clone)]
pub struct Source {
    pub owner: String,
    /// The host and its checked settings (`--provider`, else the `[[source]]`'s `provider`).
    pub provider: ProviderConfig,
    pub filter: RepoFilter,
}

/// The host of one owner and its checked settings, with Bitbucket's credential references: the
/// provider's table with `source`'s own keys over it, unless `--provider` names another host
/// than the source's (then the source's keys are not for it).
pub fn host_of(
    providers: &ProviderArgs,
    file: &FileConfig,
    source: Option<&SourceSection>,
) -> Result<ProviderConfig, ConfigError> {
    let kind = choose::kind_of(providers.provider, source.map(|s| s.provider.as_str()))?;
    let seen = match source {
        Some(s) if choose::kind_of(None, Some(&s.provider))? == kind => {
            choose::file_for_source(file, kind, &s.settings).map_err(|(key, message)| {
                ConfigError::Other(format!(
                    "the [[source]] of owner `{}`: `{key}` {message}",
                    s.owner
                ))
            })?
        }
        _ => file.clone(),
    };
    ProviderConfig::new(kind, providers, &seen)
}

/// The owners of this run: `--owner` (with the flags' filters), else every `[[source]]`
/// (flags' filters, when given, replace each source's; `--provider` replaces each one's host).
pub fn sources(
    owner: Option<&str>,
    filter: &FilterArgs,
    providers: &ProviderArgs,
    file: &FileConfig,
) -> Result<Vec<Source>, ConfigError> {
    let provider = |source: Option<&SourceSection>| host_of(providers, file, source);
    let flag_filters = !filter.include.is_empty() || !filter.exclude.is_empty();
    if let Some(owner) = owner {
        check_owner(owner)?;
        // A source of the file with the same owner lends its filters and credentials.
        let from_file = file.sources.iter().find(|s| s.owner == owner);
        let filter = match from_file {
            Some(s) if !flag_filters => RepoFilter::from_globs(&s.include, &s.exclude)?,
            _ => RepoFilter::new(filter)?,
        };
        let provider = provider(from_file)?;
        return Ok(vec![Source {
            owner: owner.to_string(),
            provider,
            filter,
        }]);
    }
    if file.sources.is_empty() {
        return Err(ConfigError::Other(match &file.path {
            Some(p) => format!("no --owner given and {} has no [[source]] entries: pass --owner WORKSPACE", p.display()),
            None => "no --owner given: pass --owner WORKSPACE (or --config FILE with [[source]] entries)".into(),
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    file.sources
        .iter()
        .map(|s| {
            check_owner(&s.owner)?;
            if !seen.insert(s.owner.clone()) {
                return Err(ConfigError::Other(format!(
                    "config file lists owner `{}` twice: each owner's date folder can hold one run",
                    s.owner
                )));
            }
            let provider = provider(Some(s))?;
            Ok(Source {
                owner: s.owner.clone(),
                provider,
                filter: if flag_filters {
                    RepoFilter::new(filter)?
                } else {
                    RepoFilter::from_globs(&s.include, &s.exclude)?
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_exclude_wins() {
        let f = RepoFilter::new(&FilterArgs {
            include: vec!["api-*".into(), "web".into()],
            exclude: vec!["*-old".into()],
        })
        .unwrap();
        assert!(f.matches("api-gw"));
        assert!(f.matches("web"));
        assert!(!f.matches("api-old"));
        assert!(!f.matches("docs"));
        let all = RepoFilter::new(&FilterArgs {
            include: vec![],
            exclude: vec![],
        })
        .unwrap();
        assert!(all.matches("anything"));
        assert!(
            RepoFilter::new(&FilterArgs {
                include: vec!["a[".into()],
                exclude: vec![]
            })
            .is_err()
        );
    }

    #[test]
    fn owners_are_one_path_segment() {
        assert!(check_owner("acme").is_ok());
        for bad in ["", "..", "a/b"] {
            assert!(check_owner(bad).is_err());
        }
    }
}
