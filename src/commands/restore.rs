//! `git-offsite restore`: bring repositories back from a snapshot.

use tokio_util::sync::CancellationToken;

use crate::cli::{LogFormat, RestoreArgs};
use crate::config::FileConfig;
use crate::error::Error;

pub(super) async fn run(
    _args: RestoreArgs,
    _file: &FileConfig,
    _format: LogFormat,
    _cancel: CancellationToken,
) -> Result<(), Error> {
    Err(Error::Internal("restore: in progress".into()))
}
