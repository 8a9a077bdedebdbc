//! Real test doubles: a Bitbucket Cloud emulator in front of real git smart HTTP (`git_http`,
//! shared by every host emulator), the provider contract suite, an S3 server on loopback, and
//! git fixture repositories.
#![allow(dead_code)]

pub mod bitbucket;
pub mod consistency;
pub mod emulated;
pub mod git;
pub mod git_http;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod harness;
pub mod plain_git;
pub mod procstat;
pub mod provider_contract;
pub mod readback;
pub mod s3;
pub mod server;
pub mod trap;
