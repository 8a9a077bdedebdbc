//! The one integration-test binary (`autotests = false`): one module per topic, shared
//! fixtures in `support/`. One binary links the crate and the test servers once.

mod support;

mod backup;
mod bbtokens;
mod bounds;
mod cli;
mod emulator;
mod encrypt;
mod faults;
mod gitea;
mod github;
mod gitlab;
mod incremental;
mod infra;
mod integrity;
mod leaks;
mod lock;
mod mirror;
mod names;
mod observe;
mod provider;
mod provider_contract;
mod prune;
mod readers;
mod reruns;
mod restore;
mod scale;
mod security;
mod snapshots;
mod store;
mod urls;
mod verify;
