//! S3 settings that are not part of `--dest`: endpoint, addressing, region, part sizes.

use url::Url;

use super::url::{UrlSource, dial_url};
use super::{ConfigError, FileConfig, invalid};
use crate::cli::S3Args;

/// S3 settings that are not part of `--dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub virtual_hosted: bool,
    pub region: Option<String>,
    pub part_size: u64,
    pub parts_in_flight: usize,
    /// The endpoint the S3 client will dial, wherever it was set (flag, file or the SDK's
    /// `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), and where: `None` for AWS itself.
    pub dialed: Option<(UrlSource, Url)>,
}

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
        let parts_in_flight = args
            .parts_in_flight
            .or(file.s3.parts_in_flight)
            .unwrap_or(4);
        if parts_in_flight == 0 {
            return Err(invalid("--parts-in-flight", "0", "must be at least 1"));
        }
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
            dialed,
        })
    }
}

/// `16MiB`, `8 MB`, `5242880`: bytesize's parser (binary and decimal units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64())
}
