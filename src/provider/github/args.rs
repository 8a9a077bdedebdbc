//! GitHub's own flags, flattened into every command that talks to a host through
//! [`crate::provider::ProviderArgs`]. Secrets are never flags: the private key and the personal
//! token are read from files or the environment by [`super::creds`].

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Default, Args)]
pub struct GithubArgs {
    /// GitHub App ID (or its client ID) of an app installed on the owner: the organisation's
    /// own credential, recommended [env: GITHUB_APP_ID].
    #[arg(long, value_name = "ID")]
    pub github_app_id: Option<String>,

    /// The GitHub App's private key, the .pem file GitHub generated [env:
    /// GITHUB_APP_PRIVATE_KEY_FILE, or GITHUB_APP_PRIVATE_KEY holding the PEM itself].
    #[arg(long, value_name = "PATH")]
    pub github_private_key_file: Option<PathBuf>,

    /// The app's installation to use [default: the one on --owner, looked up] [env:
    /// GITHUB_INSTALLATION_ID].
    #[arg(long, value_name = "ID")]
    pub github_installation_id: Option<u64>,

    /// A fine-grained or classic personal access token in a file, instead of an app; ties the
    /// backups to one person [env: GITHUB_TOKEN holds the token itself].
    #[arg(long, value_name = "PATH")]
    pub github_token_file: Option<PathBuf>,

    /// GitHub API base URL; GitHub Enterprise Server: https://HOST/api/v3 [default:
    /// https://api.github.com].
    #[arg(
        long,
        value_name = "URL",
        env = "GITHUB_API_URL",
        hide_env_values = true
    )]
    pub github_api_url: Option<String>,

    /// The git host clone URLs must be on; the token is sent nowhere else [default:
    /// https://github.com for api.github.com, else the API URL's scheme, host and port].
    #[arg(
        long,
        value_name = "URL",
        env = "GITHUB_GIT_URL",
        hide_env_values = true
    )]
    pub github_git_url: Option<String>,

    /// Leave forks out of the backup (GitHub only).
    #[arg(long)]
    pub exclude_forks: bool,

    /// Leave archived repositories out of the backup (GitHub only).
    #[arg(long)]
    pub exclude_archived: bool,
}
