//! Gitea's (and Forgejo's) own flags, flattened into every command that talks to a host through
//! [`crate::provider::ProviderArgs`]. The token is never a flag: it is read from a file or the
//! environment by [`super::creds`].

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Default, Args)]
pub struct GiteaArgs {
    /// The Gitea or Forgejo instance, e.g. https://git.example.com (the API is its /api/v1;
    /// clone URLs must be on its scheme, host and port).
    #[arg(long, value_name = "URL", env = "GITEA_URL", hide_env_values = true)]
    pub gitea_url: Option<String>,

    /// An access token in a file (scopes read:repository and read:organization) [env:
    /// GITEA_TOKEN holds the token itself].
    #[arg(long, value_name = "PATH")]
    pub gitea_token_file: Option<PathBuf>,
}
