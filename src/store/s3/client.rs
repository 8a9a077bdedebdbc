//! How the S3 client is built from the AWS configuration chain and [`S3Options`].
//!
//! The client is configured for the lowest common denominator of S3 implementations, because
//! the SDK's defaults assume AWS:
//! - checksums only `WhenRequired`: since aws-sdk-s3 1.69 every PutObject/UploadPart carries a
//!   CRC32 (header or aws-chunked trailer) and every GetObject asks for one; MinIO, R2, B2,
//!   older Garage and Ceph reject or mis-handle those requests. Uploads carry the checksum
//!   they all accept, `Content-MD5`, instead, and a `BadDigest` answer is retried like a 500
//!   (`digest.rs`);
//! - path-style addressing whenever a custom endpoint is in effect (flag, `AWS_ENDPOINT_URL_S3`
//!   or `AWS_ENDPOINT_URL`), since `bucket.host` rarely resolves for self-hosted stores;
//! - every request bounded: [`CONNECT_TIMEOUT`] to connect, and [`S3Options::timeout`]
//!   (`--s3-timeout`) both until the first byte of the answer and for each attempt, so a server
//!   that stops answering costs the SDK's retries times that, not hours;
//! - stalled-stream protection on for uploads and downloads (under 1 B/s for a second fails the
//!   attempt), with a grace period of [`STALL_GRACE`] instead of the SDK's 5 s, which reports
//!   false "0 B/s" stalls on slow or back-pressured links and while a server is slow to answer
//!   a fully sent part;
//! - `us-east-1` as the region for custom endpoints when none is configured.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_types::service_config::ServiceConfigKey;
use tokio_util::sync::CancellationToken;

use super::digest::CorruptedInFlight;
use super::errors::redact_userinfo;
use super::{MAX_PART_SIZE, MAX_SINGLE_COPY, MIN_PART_SIZE, S3Options, S3Store};
use crate::store::{MAX_DELETE_BATCH, StoreError};

/// Time to open a connection to the S3 endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--s3-timeout`: how long one request attempt may take, body upload included
/// (a 16 MiB part at 256 kbit/s takes about 9 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a transfer may run below 1 B/s before the attempt fails as stalled.
pub const STALL_GRACE: Duration = Duration::from_secs(60);
/// Where S3-compatible stores that ignore regions are happy, and what the SDK signs with.
const CUSTOM_ENDPOINT_REGION: &str = "us-east-1";

impl S3Store {
    /// Credentials, region and endpoint from the standard AWS chain: environment, shared
    /// config/credentials files, web identity (IRSA), ECS and IMDS.
    pub async fn from_env(opts: S3Options, cancel: CancellationToken) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        Self::from_sdk_config(&loader.load().await, opts, cancel)
    }

    pub fn from_sdk_config(
        sdk: &SdkConfig,
        opts: S3Options,
        cancel: CancellationToken,
    ) -> Result<Self, StoreError> {
        let endpoint = opts.endpoint.clone().or_else(|| configured_endpoint(sdk));
        let region = match (&opts.region, sdk.region(), &endpoint) {
            (Some(r), _, _) => r.clone(),
            (None, Some(r), _) => r.to_string(),
            (None, None, Some(_)) => CUSTOM_ENDPOINT_REGION.to_string(),
            (None, None, None) => {
                return Err(StoreError::Misconfigured {
                    target: format!("s3://{}", opts.bucket),
                    message: "no AWS region configured: set AWS_REGION, a region in ~/.aws/config, or pass --s3-region"
                        .into(),
                });
            }
        };
        let path_style = endpoint.is_some() && !opts.virtual_hosted;
        let mut b = aws_sdk_s3::config::Builder::from(sdk)
            .region(Region::new(region.clone()))
            .force_path_style(path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_classifier(CorruptedInFlight)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(opts.timeout)
                    .operation_attempt_timeout(opts.timeout)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            );
        if let Some(e) = &opts.endpoint {
            b = b.endpoint_url(e);
        }
        Ok(Self {
            client: Client::from_conf(b.build()),
            bucket: opts.bucket,
            endpoint: endpoint.map(|e| redact_userinfo(&e)),
            region,
            path_style,
            part_size: opts.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            parts_in_flight: opts.parts_in_flight.max(1),
            max_single_copy: opts.max_single_copy.clamp(MIN_PART_SIZE, MAX_SINGLE_COPY),
            delete_batch: opts.delete_batch.clamp(1, MAX_DELETE_BATCH),
            writes: opts.writes,
            lock_enabled: Arc::default(),
            unaborted: Arc::default(),
            cancel,
        })
    }
}

/// The endpoint the SDK will use, mirroring `aws_sdk_s3::config::Builder::from(&SdkConfig)`:
/// one set in code wins, then `AWS_ENDPOINT_URL_S3` / the profile's s3 `endpoint_url`, then
/// `AWS_ENDPOINT_URL`. Needed because the built config does not expose it, and a custom
/// endpoint is what switches on path-style addressing.
fn configured_endpoint(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_endpoint_without_a_region_defaults_to_us_east_1_and_path_style() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:9000")
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s =
            S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style);
        let conf = s.client.config();
        assert_eq!(
            conf.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(
            conf.response_checksum_validation(),
            Some(&ResponseChecksumValidation::WhenRequired)
        );
        let stall = conf.stalled_stream_protection().unwrap();
        assert!(stall.upload_enabled() && stall.download_enabled());
        assert_eq!(stall.grace_period(), STALL_GRACE);
        let t = conf.timeout_config().unwrap();
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(t.read_timeout(), Some(DEFAULT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(DEFAULT_TIMEOUT));

        let opts = S3Options {
            virtual_hosted: true,
            ..S3Options::new("b")
        };
        let s = S3Store::from_sdk_config(&sdk, opts, CancellationToken::new()).unwrap();
        assert!(!s.path_style);

        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let err = S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new())
            .unwrap_err();
        assert!(err.to_string().contains("--s3-region"), "{err}");
        let aws = aws.to_builder().region(Region::new("eu-west-1")).build();
        let s =
            S3Store::from_sdk_config(&aws, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(
            (s.region.as_str(), s.path_style, s.endpoint.as_deref()),
            ("eu-west-1", false, None)
        );
    }

    /// Stands in for the environment: `AWS_ENDPOINT_URL_S3` as aws-config would report it.
    #[derive(Debug)]
    struct S3EndpointFromEnv;

    impl aws_types::service_config::LoadServiceConfig for S3EndpointFromEnv {
        fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
            (key.service_id() == "S3" && key.env() == "AWS_ENDPOINT_URL")
                .then(|| "http://from-env:9000".into())
        }
    }

    #[test]
    fn aws_endpoint_url_s3_switches_to_path_style_and_an_explicit_endpoint_wins() {
        let sdk = SdkConfig::builder()
            .service_config(S3EndpointFromEnv)
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s =
            S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://from-env:9000"));
        assert!(s.path_style);
        assert_eq!(s.region, "us-east-1");
        let opts = S3Options {
            endpoint: Some("http://explicit:9000".into()),
            ..S3Options::new("b")
        };
        let s = S3Store::from_sdk_config(&sdk, opts, CancellationToken::new()).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://explicit:9000"));
    }
}
