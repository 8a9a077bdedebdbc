//! GitLab's own flags, flattened into every command that talks to a host through
//! [`crate::provider::ProviderArgs`]. The token is never a flag: it is read from a file or the
//! environment by [`super::creds`].

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Default, Args)]
pub struct GitlabArgs {
    /// GitLab instance: https://gitlab.com or a self-managed one (https://HOST, or with its
    /// relative URL root); the API is <URL>/api/v4 and the git host its scheme, host and port
    /// [default: https://gitlab.com].
    #[arg(long, value_name = "URL", env = "GITLAB_URL", hide_env_values = true)]
    pub gitlab_url: Option<String>,

    /// A group access token (the group's own credential, recommended) or a personal access
    /// token in a file; scopes read_api and read_repository [env: GITLAB_TOKEN holds the token
    /// itself].
    #[arg(long, value_name = "PATH")]
    pub gitlab_token_file: Option<PathBuf>,
}
