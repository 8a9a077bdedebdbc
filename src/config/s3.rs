//! S3 settings that are not part of `--dest`: endpoint, addressing, region, part sizes, and
//! for commands that write, what every object carries (Object Lock, SSE, storage class).

use aws_sdk_s3::types::StorageClass;
use url::Url;

use super::url::{UrlSource, dial_url};
use super::{ConfigError, FileConfig, count, invalid};
use crate::cli::{LockModeArg, S3Args, S3WriteArgs, SseArg};
use crate::store::s3::{LockMode, ObjectLock, Sse, WriteOptions};

/// S3 settings that are not part of `--dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub virtual_hosted: bool,
    pub region: Option<String>,
    pub part_size: u64,
    pub parts_in_flight: usize,
    /// Longest one request attempt may take (`--s3-timeout`).
    pub timeout: std::time::Duration,
    /// The endpoint the S3 client will dial, wherever it was set (flag, file or the SDK's
    /// `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), and where: `None` for AWS itself.
    pub dialed: Option<(UrlSource, Url)>,
    /// Object Lock, SSE and storage class of every write: only commands that write set them.
    pub writes: WriteOptions,
}

/// The most parts of one bundle uploaded at once (`--parts-in-flight`); with `--jobs` bundles
/// in flight the connections multiply, and S3 itself throttles a prefix long before this.
pub const MAX_PARTS_IN_FLIGHT: usize = 32;

/// The shortest `--s3-timeout`: below a second, ordinary answers would time out.
const MIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The smallest part S3 accepts (except for the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl S3Settings {
    pub fn new(
        args: &S3Args,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let part_size_text = args
            .part_size
            .clone()
            .or_else(|| file.s3.part_size.clone())
            .unwrap_or_else(|| "16MiB".into());
        let part_size =
            parse_size(&part_size_text).map_err(|r| invalid("--part-size", &part_size_text, r))?;
        if part_size < MIN_PART_SIZE {
            return Err(invalid(
                "--part-size",
                &part_size_text,
                "S3 requires parts of at least 5MiB",
            ));
        }
        if part_size > 5 * 1024 * 1024 * 1024 {
            return Err(invalid(
                "--part-size",
                &part_size_text,
                "S3 allows parts of at most 5GiB",
            ));
        }
        let parts_in_flight = count(
            "--parts-in-flight",
            args.parts_in_flight
                .or(file.s3.parts_in_flight)
                .unwrap_or(4),
            MAX_PARTS_IN_FLIGHT,
        )?;
        let timeout_text = args.s3_timeout.clone().or_else(|| file.s3.timeout.clone());
        let timeout = match &timeout_text {
            None => crate::store::s3::DEFAULT_TIMEOUT,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= MIN_TIMEOUT => d,
                Ok(_) => return Err(invalid("--s3-timeout", t, "must be at least 1s")),
                Err(e) => return Err(invalid("--s3-timeout", t, e)),
            },
        };
        // The SDK reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself; the file's endpoint only
        // applies when neither is set, so the environment keeps beating the file.
        let insecure = file.allow_insecure_http.unwrap_or(false);
        let ignore_env = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let env_endpoint = [
            ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_S3"),
            ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        ]
        .into_iter()
        .filter(|_| !ignore_env)
        .find_map(|(var, from)| env(var).filter(|v| !v.is_empty()).map(|v| (from, v)));
        let endpoint = args.s3_endpoint.clone().or_else(|| {
            if env_endpoint.is_some() {
                None
            } else {
                file.s3.endpoint.clone()
            }
        });
        let dialed = match (&endpoint, &env_endpoint) {
            (Some(e), _) => {
                let from = if args.s3_endpoint.is_some() {
                    "--s3-endpoint"
                } else {
                    "the config file's s3.endpoint"
                };
                Some((from, dial_url(from, e, false, insecure)?))
            }
            (None, Some((from, e))) => Some((*from, dial_url(from, e, false, insecure)?)),
            (None, None) => None,
        };
        let region_from_env = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .is_some();
        Ok(Self {
            endpoint,
            virtual_hosted: args.s3_virtual_hosted || file.s3.virtual_hosted.unwrap_or(false),
            region: args.s3_region.clone().or_else(|| {
                if region_from_env {
                    None
                } else {
                    file.s3.region.clone()
                }
            }),
            part_size,
            parts_in_flight,
            timeout,
            dialed,
            writes: WriteOptions::default(),
        })
    }
}

/// The longest retention accepted: 100 years, as AWS caps a bucket's default retention.
const MAX_LOCK_DAYS: u32 = 36_500;

/// `--object-lock-*`, `--sse*`, `--storage-class` (flag, then `[s3]` in the config file).
pub fn write_options(args: &S3WriteArgs, file: &FileConfig) -> Result<WriteOptions, ConfigError> {
    let s3 = &file.s3;
    let mode = match (args.object_lock_mode, s3.object_lock_mode.as_deref()) {
        (Some(LockModeArg::Governance), _) => Some(LockMode::Governance),
        (Some(LockModeArg::Compliance), _) => Some(LockMode::Compliance),
        (None, None) => None,
        (None, Some(m)) if m.eq_ignore_ascii_case("governance") => Some(LockMode::Governance),
        (None, Some(m)) if m.eq_ignore_ascii_case("compliance") => Some(LockMode::Compliance),
        (None, Some(m)) => {
            return Err(invalid(
                "object_lock_mode (config file)",
                m,
                "expected `governance` or `compliance`",
            ));
        }
    };
    let days = args.object_lock_days.or(s3.object_lock_days);
    let object_lock = match (mode, days) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "--object-lock-mode",
                if matches!(mode, Some(LockMode::Governance)) {
                    "governance"
                } else {
                    "compliance"
                },
                "needs --object-lock-days N (or object_lock_days in [s3])",
            ));
        }
        (None, Some(d)) => {
            return Err(invalid(
                "--object-lock-days",
                d.to_string(),
                "needs --object-lock-mode governance|compliance (or object_lock_mode in [s3])",
            ));
        }
        (Some(_), Some(0)) => {
            return Err(invalid("--object-lock-days", "0", "must be at least 1"));
        }
        (Some(_), Some(d)) if d > MAX_LOCK_DAYS => {
            return Err(invalid(
                "--object-lock-days",
                d.to_string(),
                "must be at most 36500 (100 years)",
            ));
        }
        (Some(mode), Some(days)) => Some(ObjectLock { mode, days }),
    };
    let kms = args
        .sse_kms_key_id
        .clone()
        .or_else(|| s3.sse_kms_key_id.clone());
    let sse = match (args.sse, s3.sse.as_deref()) {
        (Some(SseArg::Aes256), _) => Some(Sse::S3),
        (Some(SseArg::AwsKms), _) => Some(Sse::Kms { key_id: None }),
        (None, None) => None,
        (None, Some(a)) if a.eq_ignore_ascii_case("AES256") => Some(Sse::S3),
        (None, Some(a)) if a.eq_ignore_ascii_case("aws:kms") => Some(Sse::Kms { key_id: None }),
        (None, Some(a)) => {
            return Err(invalid(
                "sse (config file)",
                a,
                "expected `AES256` or `aws:kms`",
            ));
        }
    };
    let sse = match (sse, kms) {
        (Some(Sse::Kms { .. }), key_id) => Some(Sse::Kms { key_id }),
        (_, Some(k)) if k.trim().is_empty() => {
            return Err(invalid("--sse-kms-key-id", k, "must not be empty"));
        }
        (_, Some(k)) => {
            return Err(invalid(
                "--sse-kms-key-id",
                k,
                "only applies with --sse aws:kms",
            ));
        }
        (sse, None) => sse,
    };
    if let Some(Sse::Kms { key_id: Some(k) }) = &sse
        && k.trim().is_empty()
    {
        return Err(invalid("--sse-kms-key-id", k.clone(), "must not be empty"));
    }
    let storage_class = args
        .storage_class
        .clone()
        .or_else(|| s3.storage_class.clone());
    if let Some(class) = &storage_class {
        check_storage_class(class)?;
    }
    Ok(WriteOptions {
        object_lock,
        sse,
        storage_class,
    })
}

/// AWS's classes as the SDK knows them; other names pass (Ceph RGW has user-defined classes)
/// unless they are one of AWS's in the wrong case, which S3 would refuse at the first upload.
fn check_storage_class(class: &str) -> Result<(), ConfigError> {
    if class.is_empty()
        || !class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            "--storage-class",
            class,
            "expected a class name such as STANDARD_IA (letters, digits, `_`, `-`)",
        ));
    }
    let known = StorageClass::values();
    if !known.contains(&class)
        && let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(class))
    {
        return Err(invalid(
            "--storage-class",
            class,
            format!("S3 spells it `{k}`"),
        ));
    }
    Ok(())
}

/// `16MiB`, `8 MB`, `5242880`: bytesize's parser (binary and decimal units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    fn writes(args: &[&str], toml: &str) -> Result<WriteOptions, ConfigError> {
        let file = super::super::file::parse(toml, Path::new("c.toml")).unwrap();
        let mut argv = vec!["g", "backup"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Backup(b) = cli.command else {
            unreachable!()
        };
        write_options(&b.s3_writes, &file)
    }

    #[test]
    fn lock_sse_and_class_come_from_flags_then_the_file() {
        assert_eq!(writes(&[], "").unwrap(), WriteOptions::default());
        let w = writes(
            &[
                "--object-lock-mode",
                "COMPLIANCE",
                "--object-lock-days",
                "30",
                "--sse",
                "aws:kms",
                "--sse-kms-key-id",
                "alias/backup",
                "--storage-class",
                "STANDARD_IA",
            ],
            "[s3]\nobject_lock_mode = \"governance\"\nobject_lock_days = 7\nsse = \"AES256\"\n",
        )
        .unwrap();
        assert_eq!(
            w,
            WriteOptions {
                object_lock: Some(ObjectLock {
                    mode: LockMode::Compliance,
                    days: 30
                }),
                sse: Some(Sse::Kms {
                    key_id: Some("alias/backup".into())
                }),
                storage_class: Some("STANDARD_IA".into()),
            }
        );
        let w = writes(
            &[],
            "[s3]\nobject_lock_mode = \"governance\"\nobject_lock_days = 7\nsse = \"aws:kms\"\nsse_kms_key_id = \"k\"\nstorage_class = \"GLACIER_IR\"\n",
        )
        .unwrap();
        assert_eq!(
            w.object_lock,
            Some(ObjectLock {
                mode: LockMode::Governance,
                days: 7
            })
        );
        assert_eq!(
            w.sse,
            Some(Sse::Kms {
                key_id: Some("k".into())
            })
        );
        // The file's mode with a flag's days, and SSE-S3 alone.
        let w = writes(
            &["--object-lock-days", "2", "--sse", "AES256"],
            "[s3]\nobject_lock_mode = \"compliance\"\n",
        )
        .unwrap();
        assert_eq!(
            w.object_lock.map(|l| (l.mode, l.days)),
            Some((LockMode::Compliance, 2))
        );
        assert_eq!(w.sse, Some(Sse::S3));
    }

    #[test]
    fn bad_lock_sse_and_class_settings_name_the_flag() {
        let err = |args: &[&str], toml: &str| writes(args, toml).unwrap_err().to_string();
        let e = err(
            &[
                "--object-lock-mode",
                "governance",
                "--object-lock-days",
                "0",
            ],
            "",
        );
        assert!(
            e.contains("--object-lock-days") && e.contains("at least 1"),
            "{e}"
        );
        let e = err(&["--object-lock-mode", "governance"], "");
        assert!(
            e.contains("--object-lock-mode") && e.contains("needs --object-lock-days"),
            "{e}"
        );
        let e = err(&["--object-lock-days", "3"], "");
        assert!(e.contains("needs --object-lock-mode"), "{e}");
        let e = err(
            &[
                "--object-lock-mode",
                "compliance",
                "--object-lock-days",
                "40000",
            ],
            "",
        );
        assert!(e.contains("at most 36500"), "{e}");
        let e = err(
            &[],
            "[s3]\nobject_lock_mode = \"strict\"\nobject_lock_days = 1\n",
        );
        assert!(
            e.contains("object_lock_mode (config file)") && e.contains("`strict`"),
            "{e}"
        );
        let e = err(&["--sse-kms-key-id", "k"], "");
        assert!(
            e.contains("--sse-kms-key-id") && e.contains("only applies with --sse aws:kms"),
            "{e}"
        );
        let e = err(&["--sse", "AES256", "--sse-kms-key-id", "k"], "");
        assert!(e.contains("only applies with --sse aws:kms"), "{e}");
        let e = err(&["--sse", "aws:kms", "--sse-kms-key-id", " "], "");
        assert!(e.contains("must not be empty"), "{e}");
        let e = err(&[], "[s3]\nsse = \"aes128\"\n");
        assert!(e.contains("sse (config file)"), "{e}");
        let e = err(&["--storage-class", "standard_ia"], "");
        assert!(
            e.contains("--storage-class") && e.contains("`STANDARD_IA`"),
            "{e}"
        );
        let e = err(&["--storage-class", "COLD STORAGE"], "");
        assert!(e.contains("--storage-class"), "{e}");
        // A class of an S3-compatible store's own passes.
        assert_eq!(
            writes(&["--storage-class", "COLD_HDD"], "")
                .unwrap()
                .storage_class
                .as_deref(),
            Some("COLD_HDD")
        );
    }
}
