//! Real test doubles: a Bitbucket Cloud emulator with git smart HTTP, an S3 server on
//! loopback, and git fixture repositories.
#![allow(dead_code)]

pub mod bitbucket;
pub mod git;
pub mod harness;
pub mod readback;
pub mod s3;
pub mod trap;
