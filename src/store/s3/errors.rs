//! Turning SDK errors into [`StoreError`]s a user can act on: which variant (bucket missing,
//! access refused, wrong region, no credentials, unreachable), and a message made of the S3 error
//! code and text or the cause chain, never headers or credentials.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;

use super::digest::corrupted_in_flight;
use super::{HttpResponse, S3Store};
use crate::store::StoreError;

impl S3Store {
    /// Maps an SDK failure of `op` on `key` (or the bucket) to the error the user can act on.
    pub(super) fn error<E>(
        &self,
        op: &'static str,
        key: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let f = Failure::of(&err);
        let target = self.target(key);
        if let Some(detail) = f.no_credentials {
            return StoreError::Misconfigured {
                target: self.target(None),
                message: format!(
                    "no usable AWS credentials ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     pick a profile with AWS_PROFILE, or run with an IAM role"
                ),
            };
        }
        if f.unreachable {
            return StoreError::Unreachable {
                target: self.endpoint_label(),
                message: format!("{op}: {}", f.message),
            };
        }
        match (f.status, f.code.as_deref()) {
            (Some(403), _) => StoreError::AccessDenied {
                target,
                message: format!("{op}: {}", f.message),
            },
            (_, Some("NoSuchBucket")) => StoreError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint_label(),
            },
            (_, code) if corrupted_in_flight(code) => StoreError::Request {
                op,
                key: target,
                message: format!(
                    "{}; the store received other bytes than were sent, on every attempt: something \
                     between this machine and the store (a proxy, the network, memory) damages uploads",
                    f.message
                ),
            },
            (Some(301), _) | (_, Some("PermanentRedirect" | "AuthorizationHeaderMalformed")) => {
                StoreError::Misconfigured {
                    target: self.target(None),
                    message: self.wrong_region(f.bucket_region.as_deref()),
                }
            }
            _ => StoreError::Request {
                op,
                key: target,
                message: f.message,
            },
        }
    }

    fn wrong_region(&self, actual: Option<&str>) -> String {
        match actual {
            Some(r) => format!(
                "the bucket is in region `{r}`, not `{}`: set AWS_REGION={r} or pass --s3-region {r}",
                self.region
            ),
            None => format!(
                "the bucket is not in region `{}` (S3 redirected the request): set AWS_REGION or pass \
                 --s3-region with the bucket's region",
                self.region
            ),
        }
    }
}

/// Endpoint URLs end up in messages; a `user:password@` in one must not.
pub(super) fn redact_userinfo(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => endpoint.to_string(),
    }
}

/// What the user needs from an SDK error: HTTP status, S3 code and message, never headers or
/// credentials.
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    message: String,
    unreachable: bool,
    /// `x-amz-bucket-region`, sent with 301s and 400s for a wrong region.
    bucket_region: Option<String>,
    /// Why the credential chain found nothing, when that is what failed.
    no_credentials: Option<String>,
}

impl Failure {
    fn of<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let raw = err.raw_response();
        let status = raw.map(|r| r.status().as_u16());
        let bucket_region = raw
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_owned);
        let code = err.code().map(str::to_owned);
        let unreachable = match err {
            SdkError::TimeoutError(_) => true,
            SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            _ => false,
        };
        let message = match (err, status) {
            (SdkError::ServiceError(_) | SdkError::ResponseError(_), Some(status)) => {
                let what = match (&code, err.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, _) => {
                        let reason = http::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("");
                        format!("HTTP {status} {reason}").trim_end().to_string()
                    }
                };
                match err.request_id() {
                    Some(id) if code.is_some() => {
                        format!("{what} (HTTP {status}, request id {id})")
                    }
                    _ if code.is_some() => format!("{what} (HTTP {status})"),
                    _ => what,
                }
            }
            _ => chain(err),
        };
        let no_credentials = sources(err)
            .find(|e| e.downcast_ref::<CredentialsError>().is_some())
            .map(chain);
        Self {
            status,
            code,
            message,
            unreachable,
            bucket_region,
            no_credentials,
        }
    }
}

fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// The SDK error and its causes on one line (the crate-wide helper).
pub(super) use crate::error::chain;

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, SdkConfig};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::store::Store;
    use crate::store::s3::S3Options;

    #[test]
    fn endpoint_userinfo_never_reaches_messages() {
        assert_eq!(
            redact_userinfo("http://ak:sk@minio:9000"),
            "http://minio:9000/"
        );
        assert_eq!(redact_userinfo("http://minio:9000"), "http://minio:9000");
    }

    /// What the default chain reports on a machine with no credentials at all.
    #[derive(Debug)]
    struct NoCredentials;

    impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                CredentialsError::not_loaded("no providers in chain provided credentials"),
            ))
        }
    }

    #[tokio::test]
    async fn missing_credentials_say_how_to_provide_them() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                NoCredentials,
            ))
            .behavior_version(BehaviorVersion::latest())
            .build();
        let s =
            S3Store::from_sdk_config(&sdk, S3Options::new("b"), CancellationToken::new()).unwrap();
        let err = s.check().await.unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("no providers in chain") && msg.contains("AWS_ACCESS_KEY_ID"),
            "{msg}"
        );
        assert!(!msg.contains("DispatchFailure"), "no Debug dump: {msg}");
    }
}
