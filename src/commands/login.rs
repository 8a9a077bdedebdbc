//! `git-offsite login`: check an OAuth consumer and store it (0600).

use super::{bitbucket, env};
use crate::cli::LoginArgs;
use crate::config::{self, BitbucketEndpoints, ConfigError, FileConfig, StoredCredentials};
use crate::credentials;
use crate::error::Error;

pub(super) async fn run(args: LoginArgs, file: &FileConfig) -> Result<(), Error> {
    if let Some(o) = &args.owner {
        config::check_owner(o)?;
    }
    let endpoints = BitbucketEndpoints::new(&args.bitbucket, file)?;
    super::check_hosts(&endpoints.dialed()).await?;
    // `login` asks even when a stored file exists: replacing it is what it is for. Flags, env
    // and the config file's references still win so it can run in scripts.
    let refs = [file.bitbucket.credentials(file.base_dir())];
    let creds = match config::resolve_consumer(
        &args.bitbucket,
        &env,
        &refs,
        &StoredCredentials::default(),
    )? {
        Some(c) => c,
        None if credentials::interactive() => credentials::prompt_consumer()?,
        None => {
            return Err(ConfigError::MissingCredentials {
                missing: "key and secret",
            }
            .into());
        }
    };
    let provider = bitbucket(
        &endpoints,
        config::retry_settings(&Default::default(), file)?,
        creds.clone(),
    )?;
    eprintln!("Checking the consumer against {} …", endpoints.token_url);
    if let Err(e) = provider.check_login(args.owner.as_deref()).await {
        eprintln!(
            "If the consumer has not been authorised yet, open this URL while logged in to Bitbucket \
             and grant access:\n  {}",
            provider.consent_url()
        );
        return Err(e.into());
    }
    match &args.owner {
        Some(o) => eprintln!("OK: the consumer can read workspace `{o}`."),
        None => eprintln!("OK: the consumer key and secret are valid."),
    }
    let path = credentials::default_path(&env).ok_or_else(|| {
        ConfigError::Other("cannot find a config directory: set XDG_CONFIG_HOME or HOME".into())
    })?;
    credentials::save(&path, &creds)?;
    eprintln!("Stored in {} (mode 0600).", path.display());
    Ok(())
}
