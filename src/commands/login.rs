//! `git-offsite login`: check a provider's credentials and store them (0600).

use super::env;
use crate::cli::LoginArgs;
use crate::config::{self, ConfigError, FileConfig};
use crate::credentials;
use crate::error::Error;
use crate::provider::choose;

pub(super) async fn run(args: LoginArgs, file: &FileConfig) -> Result<(), Error> {
    if let Some(o) = &args.owner {
        config::check_owner(o)?;
    }
    // The host: `--provider`, else the config file's source for `--owner`, else the default.
    let source = (args.owner.as_ref()).and_then(|o| file.sources.iter().find(|s| &s.owner == o));
    let cfg = config::host_of(&args.provider, file, source)?;
    let kind = cfg.kind();
    super::check_hosts(&cfg.dialed()).await?;
    // `login` asks even when a stored file exists: replacing it is what it is for. Flags, env
    // and the config file's references still win so it can run in scripts.
    let login = choose::for_login(
        &cfg,
        &args.provider,
        &env,
        config::retry_settings(&Default::default(), file)?,
    )?;
    eprintln!("Checking the {} credentials …", kind.name());
    match login.provider.login_check(args.owner.as_deref()).await {
        Ok(ok) => eprintln!("OK: {ok}."),
        Err(e) => {
            if let Some(help) = login.provider.login_help() {
                eprintln!("{help}");
            }
            return Err(e.into());
        }
    }
    let path = credentials::default_path(&env).ok_or_else(|| {
        ConfigError::Other("cannot find a config directory: set XDG_CONFIG_HOME or HOME".into())
    })?;
    credentials::save(&path, login.section, login.table)?;
    eprintln!("Stored in {} (mode 0600).", path.display());
    Ok(())
}
