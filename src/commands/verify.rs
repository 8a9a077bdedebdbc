//! `git-offsite verify`: check stored bundles against their manifests.

use tokio_util::sync::CancellationToken;

use crate::cli::{LogFormat, VerifyArgs};
use crate::config::FileConfig;
use crate::error::Error;

pub(super) async fn run(
    _args: VerifyArgs,
    _file: &FileConfig,
    _format: LogFormat,
    _cancel: CancellationToken,
) -> Result<(), Error> {
    Err(Error::Internal("verify: in progress".into()))
}
