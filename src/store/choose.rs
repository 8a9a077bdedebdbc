//! Builds the store a [`Destination`] names: the one place that knows which store goes with
//! which scheme.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::fs::FsStore;
use super::s3::{S3Options, S3Store};
use super::{Store, StoreError};
use crate::config::{Destination, S3Settings};

pub async fn open(
    dest: &Destination,
    s3: &S3Settings,
    cancel: &CancellationToken,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match dest {
        Destination::Local(dir) => Arc::new(FsStore::new(dir.clone())),
        Destination::S3 { bucket, .. } => Arc::new(
            S3Store::from_env(
                S3Options {
                    bucket: bucket.clone(),
                    endpoint: s3.endpoint.clone(),
                    virtual_hosted: s3.virtual_hosted,
                    part_size: s3.part_size,
                    parts_in_flight: s3.parts_in_flight,
                    region: s3.region.clone(),
                    writes: s3.writes.clone(),
                    timeout: s3.timeout,
                    ..S3Options::new(bucket.clone())
                },
                cancel.clone(),
            )
            .await?,
        ),
    })
}
