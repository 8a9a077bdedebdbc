//! `git-offsite list`: what `backup` would back up.

use std::io::Write;

use super::env;
use crate::cli::ListArgs;
use crate::config::{self, FileConfig};
use crate::error::Error;
use crate::provider::{RemoteRepo, choose};

pub(super) async fn run(args: ListArgs, file: &FileConfig) -> Result<(), Error> {
    let sources = config::sources(args.owner.as_deref(), &args.filter, &args.provider, file)?;
    super::check_hosts(&super::provider_hosts(&sources)).await?;
    let retry = config::retry_settings(&args.retry, file)?;
    let mut repos: Vec<RemoteRepo> = Vec::new();
    let mut rejected = Vec::new();
    for source in &sources {
        let provider = choose::build(&source.provider, &args.provider, &env, retry)?;
        let listing = crate::provider::list_vetted(provider.as_ref(), &source.owner).await?;
        repos.extend((listing.repos.into_iter()).filter(|r| source.filter.matches(&r.slug)));
        rejected.extend((listing.rejected.into_iter()).filter(|r| source.filter.matches(&r.slug)));
    }
    // What `backup` would record as failed: on stderr, so `--json` stays the backups' list.
    for r in &rejected {
        eprintln!(
            "cannot be backed up: {}: {}",
            r.full_name,
            crate::text::escape(&r.reason)
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &repos);
        let _ = writeln!(out);
        return Ok(());
    }
    // One owner: slugs; several: full names, so rows stay unambiguous.
    let name = |r: &RemoteRepo| {
        if sources.len() > 1 {
            r.full_name.clone()
        } else {
            r.slug.clone()
        }
    };
    let width = repos
        .iter()
        .map(|r| name(r).len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:<25}  DEFAULT BRANCH",
        "SLUG", "SIZE", "UPDATED"
    );
    for r in &repos {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:<25}  {}",
            name(r),
            r.size
                .map(|b| bytesize::ByteSize::b(b).display().iec().to_string())
                .unwrap_or_else(|| "-".into()),
            crate::text::escape(r.updated_on.as_deref().unwrap_or("-")),
            crate::text::escape(r.default_branch.as_deref().unwrap_or("(empty)")),
        );
    }
    eprintln!("{} repositories", repos.len());
    Ok(())
}
