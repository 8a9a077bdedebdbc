//! `--dest`: a local directory or `s3://bucket[/prefix]`, checked before anything connects.

use std::path::PathBuf;

use super::{ConfigError, invalid};

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local directory; keys are paths below it.
    Local(PathBuf),
    /// `s3://bucket[/prefix]`.
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl Destination {
    /// `--dest`, else the config file's `dest`, else `./backup`: the same for every command,
    /// so whatever wrote a backup reads it back with the same settings.
    pub fn choose(flag: Option<&str>, file: &super::FileConfig) -> Result<Self, ConfigError> {
        Self::parse(flag.or(file.dest.as_deref()).unwrap_or("./backup"))
    }

    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((b, p)) => (b, p.trim_matches('/')),
                None => (rest, ""),
            };
            // Bucket naming rules (AWS): 3–63 chars of lowercase letters, digits, `.` and `-`.
            // S3-compatible stores are laxer, so only reject what cannot be a bucket anywhere.
            if bucket.is_empty() || bucket.contains(|c: char| c.is_whitespace() || c == '\\') {
                return Err(invalid(
                    "--dest",
                    s,
                    "expected s3://bucket[/prefix] with a bucket name",
                ));
            }
            if prefix.split('/').any(|seg| seg == ".." || seg == ".") || prefix.contains("//") {
                return Err(invalid(
                    "--dest",
                    s,
                    "the prefix may not contain `.`, `..` or `//`",
                ));
            }
            let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
            return Ok(Destination::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some((scheme, _)) = s.split_once("://")
            && scheme != "file"
        {
            return Err(invalid(
                "--dest",
                s,
                format!(
                    "unsupported scheme `{scheme}://`: use s3://bucket[/prefix] or a directory"
                ),
            ));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() {
            return Err(invalid("--dest", s, "empty path"));
        }
        Ok(Destination::Local(PathBuf::from(path)))
    }

    /// The key prefix inside the store (`None` for a local directory: the directory is the root).
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Destination::Local(_) => None,
            Destination::S3 { prefix, .. } => prefix.as_deref(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Local(p) => write!(f, "{}", p.display()),
            Destination::S3 { bucket, prefix } => match prefix {
                Some(p) => write!(f, "s3://{bucket}/{p}"),
                None => write!(f, "s3://{bucket}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_parsing() {
        assert_eq!(
            Destination::parse("s3://backups/git/").unwrap(),
            Destination::S3 {
                bucket: "backups".into(),
                prefix: Some("git".into())
            }
        );
        assert_eq!(
            Destination::parse("s3://b").unwrap(),
            Destination::S3 {
                bucket: "b".into(),
                prefix: None
            }
        );
        assert_eq!(
            Destination::parse("./backup").unwrap(),
            Destination::Local("./backup".into())
        );
        assert_eq!(
            Destination::parse("file:///srv/b").unwrap(),
            Destination::Local("/srv/b".into())
        );
        for bad in ["s3://", "s3:///x", "gs://b", "s3://b/../x", ""] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }
}
