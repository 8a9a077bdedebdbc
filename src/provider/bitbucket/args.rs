//! Bitbucket's own flags, flattened into every command that talks to a host through
//! [`crate::provider::ProviderArgs`]. Secrets are not read from the environment by clap (see
//! [`crate::cli`]); [`super::consumer`] reads `BITBUCKET_CONSUMER_*` itself and [`super::credential`] the token
//! kinds' `BITBUCKET_ACCESS_TOKEN`, `BITBUCKET_API_TOKEN` and `BITBUCKET_EMAIL`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Default, Args)]
pub struct BitbucketArgs {
    /// OAuth consumer key [env: BITBUCKET_CONSUMER_KEY].
    #[arg(long, value_name = "KEY", alias = "consumerKey")]
    pub consumer_key: Option<String>,

    /// OAuth consumer secret; prefer --consumer-secret-file or the env variable, argv is visible to other users [env: BITBUCKET_CONSUMER_SECRET].
    #[arg(long, value_name = "SECRET", alias = "consumerSecret")]
    pub consumer_secret: Option<String>,

    /// Read the consumer secret from this file (Kubernetes secrets are files).
    #[arg(long, value_name = "PATH")]
    pub consumer_secret_file: Option<PathBuf>,

    /// Read a workspace, project or repository access token from this file [env:
    /// BITBUCKET_ACCESS_TOKEN]. Instead of an OAuth consumer.
    #[arg(long, value_name = "PATH")]
    pub access_token_file: Option<PathBuf>,

    /// Atlassian account email of the user whose API token --api-token-file holds [env:
    /// BITBUCKET_EMAIL].
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,

    /// Read a user's scoped API token from this file (with --email) [env: BITBUCKET_API_TOKEN].
    /// Ties the backups to that person; an OAuth consumer does not.
    #[arg(long, value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,

    /// Bitbucket API base URL [default: https://api.bitbucket.org/2.0].
    #[arg(
        long,
        value_name = "URL",
        env = "BITBUCKET_API_URL",
        hide_env_values = true
    )]
    pub bitbucket_api_url: Option<String>,

    /// Bitbucket OAuth token endpoint [default: https://bitbucket.org/site/oauth2/access_token].
    #[arg(
        long,
        value_name = "URL",
        env = "BITBUCKET_TOKEN_URL",
        hide_env_values = true
    )]
    pub bitbucket_token_url: Option<String>,

    /// The git host clone links must be on; the token is sent nowhere else [default:
    /// https://bitbucket.org for bitbucket.org's API, else the API URL's scheme, host and port].
    #[arg(
        long,
        value_name = "URL",
        env = "BITBUCKET_GIT_URL",
        hide_env_values = true
    )]
    pub bitbucket_git_url: Option<String>,
}
