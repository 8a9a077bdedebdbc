//! The keep policy of `prune` and `backup --prune`: `--keep-*` flags, then the config file's
//! `[retention]` table, rule by rule (a flag replaces that rule only, as every other setting
//! does). A policy with no rule that keeps anything is refused: it would remove everything.

use serde::Deserialize;

use super::{ConfigError, FileConfig, invalid};
use crate::cli::KeepArgs;
use crate::retention::{Count, Policy};

/// `[retention]` of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub keep_last: Option<CountValue>,
    pub keep_daily: Option<CountValue>,
    pub keep_weekly: Option<CountValue>,
    pub keep_monthly: Option<CountValue>,
    pub keep_yearly: Option<CountValue>,
    pub forget_vanished_after: Option<u64>,
    /// Prune after every backup that ended with exit 0, as `backup --prune` does.
    #[serde(default)]
    pub after_backup: bool,
}

/// `7` or `"unlimited"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CountValue {
    N(i64),
    Text(String),
}

impl CountValue {
    fn count(&self, what: &'static str) -> Result<Count, ConfigError> {
        let text = match self {
            CountValue::N(n) => n.to_string(),
            CountValue::Text(s) => s.clone(),
        };
        text.parse().map_err(|why| invalid(what, text, why))
    }
}

/// The checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    pub policy: Policy,
    pub forget_vanished_after: Option<u64>,
}

impl RetentionSettings {
    /// Flags, then `[retention]`. `for_what` names the command in the error for an empty
    /// policy.
    pub fn new(args: &KeepArgs, file: &FileConfig, for_what: &str) -> Result<Self, ConfigError> {
        let r = &file.retention;
        let pick = |flag: &Option<String>,
                    flag_name: &'static str,
                    value: &Option<CountValue>,
                    key: &'static str|
         -> Result<Option<Count>, ConfigError> {
            match (flag, value) {
                (Some(f), _) => f
                    .parse()
                    .map(Some)
                    .map_err(|why| invalid(flag_name, f, why)),
                (None, Some(v)) => v.count(key).map(Some),
                (None, None) => Ok(None),
            }
        };
        let policy = Policy {
            last: pick(
                &args.keep_last,
                "--keep-last",
                &r.keep_last,
                "retention.keep_last",
            )?,
            daily: pick(
                &args.keep_daily,
                "--keep-daily",
                &r.keep_daily,
                "retention.keep_daily",
            )?,
            weekly: pick(
                &args.keep_weekly,
                "--keep-weekly",
                &r.keep_weekly,
                "retention.keep_weekly",
            )?,
            monthly: pick(
                &args.keep_monthly,
                "--keep-monthly",
                &r.keep_monthly,
                "retention.keep_monthly",
            )?,
            yearly: pick(
                &args.keep_yearly,
                "--keep-yearly",
                &r.keep_yearly,
                "retention.keep_yearly",
            )?,
        };
        if policy.is_empty() {
            return Err(ConfigError::Other(format!(
                "{for_what} needs at least one keep rule above 0 (--keep-last, --keep-daily, \
                 --keep-weekly, --keep-monthly, --keep-yearly, or keep_* in the config file's \
                 [retention]): with none it would remove every snapshot"
            )));
        }
        Ok(Self {
            policy,
            forget_vanished_after: args.forget_vanished_after.or(r.forget_vanished_after),
        })
    }
}

/// Everything `prune` needs, checked.
#[derive(Debug, Clone)]
pub struct PruneConfig {
    pub read: super::ReadConfig,
    pub retention: RetentionSettings,
    pub dry_run: bool,
    pub json: bool,
}

impl PruneConfig {
    pub fn new(
        args: &crate::cli::PruneArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            read: super::ReadConfig::new(&args.read, file, env)?,
            retention: RetentionSettings::new(&args.keep, file, "prune")?,
            dry_run: args.dry_run,
            json: args.json,
        })
    }
}

/// `backup --prune` or `[retention] after_backup = true`: the policy to apply after a
/// backup that ended with exit 0; `None` when off.
pub fn after_backup(
    prune_flag: bool,
    file: &FileConfig,
) -> Result<Option<RetentionSettings>, ConfigError> {
    if !prune_flag && !file.retention.after_backup {
        return Ok(None);
    }
    RetentionSettings::new(
        &KeepArgs::default(),
        file,
        "backup --prune (or after_backup)",
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn keep(daily: Option<&str>) -> KeepArgs {
        KeepArgs {
            keep_daily: daily.map(str::to_owned),
            ..KeepArgs::default()
        }
    }

    #[test]
    fn flags_replace_file_rules_one_by_one_and_an_empty_policy_is_refused() {
        let file = super::super::file::parse(
            "[retention]\nkeep_daily = 7\nkeep_yearly = \"unlimited\"\nforget_vanished_after = 90\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let r = RetentionSettings::new(&keep(Some("3")), &file, "prune").unwrap();
        assert_eq!(r.policy.daily, Some(Count::N(3)));
        assert_eq!(r.policy.yearly, Some(Count::Unlimited));
        assert_eq!(r.forget_vanished_after, Some(90));

        let e = RetentionSettings::new(&keep(None), &FileConfig::default(), "prune")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--keep-daily") && e.contains("[retention]"),
            "{e}"
        );
        let e = RetentionSettings::new(&keep(Some("0")), &FileConfig::default(), "prune")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one keep rule"), "{e}");
        let e = RetentionSettings::new(&keep(Some("many")), &FileConfig::default(), "prune")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--keep-daily") && e.contains("many"), "{e}");
        let bad = super::super::file::parse("[retention]\nkeep_weekly = -4\n", Path::new("c.toml"))
            .unwrap();
        let e = RetentionSettings::new(&keep(None), &bad, "prune")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention.keep_weekly"), "{e}");
    }
}
