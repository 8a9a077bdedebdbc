//! What the user typed: clap types only, no validation beyond what clap does itself.
//!
//! Everything here is turned into a checked [`crate::config`] struct before any work starts
//! (ripgrep's "low args → high args" split), so the pipeline never sees raw strings. Secrets
//! are deliberately *not* read from the environment by clap: clap would print env values in
//! `--help`, and it could not tell a flag from a variable when working out precedence.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::provider::ProviderArgs;

const EXAMPLES: &str = "\
Examples:
  # Back up every repository of workspace `acme` into ./backup/acme/<date>/
  git-offsite backup --owner acme

  # ... into an S3 bucket (credentials from the standard AWS chain)
  git-offsite backup --owner acme --dest s3://backups/git

  # ... into MinIO or another S3-compatible store
  AWS_ENDPOINT_URL_S3=https://minio:9000 git-offsite backup --owner acme --dest s3://backups/git

  # A few repositories by URL, no account (credentials, if any, from a netrc file)
  git-offsite backup --provider urls --owner mirrors --url https://github.com/octocat/Hello-World.git

  # Store the OAuth consumer once, interactively
  git-offsite login --owner acme

  # Keep 7 daily, 4 weekly and 12 monthly snapshots, remove the rest (try --dry-run first)
  git-offsite prune --owner acme --dest s3://backups/git --keep-daily 7 --keep-weekly 4 --keep-monthly 12
";

#[derive(Debug, Parser)]
#[command(
    name = "git-offsite",
    version,
    about = "Offsite backups of every git repository a team owns, as git bundles in S3 or a directory",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file with any option and several owners (`[[source]]`); flags and env win over it.
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "GIT_OFFSITE_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    /// Log line format on stderr: `text` for people, `json` (one object a line) for CI and Kubernetes.
    #[arg(
        long,
        value_enum,
        global = true,
        env = "GIT_OFFSITE_LOG_FORMAT",
        hide_env_values = true
    )]
    pub log_format: Option<LogFormat>,

    /// Print more (`-v` debug, `-vv` trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print only warnings, errors and the final summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Accept plain http:// URLs (API, token endpoint, S3, Pushgateway, healthcheck) to hosts
    /// other than this machine; their secrets then cross the network unencrypted.
    #[arg(
        long,
        global = true,
        env = "GIT_OFFSITE_ALLOW_INSECURE_HTTP",
        value_parser = clap::builder::FalseyValueParser::new(),
        hide_env_values = true
    )]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// `BackupArgs` is much larger than the other variants; the enum exists once per process.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up every repository of an owner: mirror, bundle, upload, then write the manifest.
    Backup(BackupArgs),
    /// Show what `backup` would back up (slug, size, last update, default branch).
    List(ListArgs),
    /// Check an OAuth consumer's key and secret and store them for later runs.
    Login(LoginArgs),
    /// List an owner's snapshots (date folders): complete or not, what each holds.
    Snapshots(SnapshotsArgs),
    /// Check stored bundles against their manifests (size, SHA-256, refs; --deep: every object).
    Verify(VerifyArgs),
    /// Restore repositories from a snapshot into a directory, or push them to a new remote.
    Restore(RestoreArgs),
    /// Remove the snapshots a keep policy does not keep (restic `forget` rules).
    Prune(PruneArgs),
    /// Print a shell completion script (e.g. `git-offsite completions bash > /etc/bash_completion.d/git-offsite`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `git-offsite man | man -l -`).
    Man,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Workspace (Bitbucket) whose repositories to back up [default: every `[[source]]` of the config file].
    #[arg(long, short = 'o', value_name = "WORKSPACE")]
    pub owner: Option<String>,

    /// `s3://bucket[/prefix]` or a local directory [default: ./backup].
    #[arg(long, value_name = "DEST", alias = "backupFolder")]
    pub dest: Option<String>,

    /// Repositories in flight at once, the largest started first [default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Date folder (UTC) to write into [default: today].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// List what would be backed up and where, and check the destination; clone and upload nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// What to store for a repository whose refs equal an earlier run's: `copy` (a server-side
    /// copy into today's folder, self-contained) or `reference` (the manifest points at the
    /// earlier object; only safe when old dates are removed by git-offsite, never by a
    /// lifecycle rule) [default: copy].
    #[arg(long, value_enum, value_name = "MODE")]
    pub unchanged: Option<UnchangedMode>,

    /// Clone and upload every repository, ignoring earlier manifests.
    #[arg(long)]
    pub full: bool,

    /// After a backup that ended with exit 0, prune each owner with the config file's
    /// `[retention]` keep rules (also on with `after_backup = true` there).
    #[arg(long)]
    pub prune: bool,

    /// Take over the date folder's lock at once (only when the run holding it is dead), and back
    /// up into a past --date that already has a complete backup.
    #[arg(long)]
    pub force: bool,

    /// Directory for the temporary mirrors and bundles [default: $TMPDIR].
    #[arg(
        long,
        value_name = "DIR",
        env = "GIT_OFFSITE_TMP_DIR",
        hide_env_values = true
    )]
    pub tmp_dir: Option<PathBuf>,

    /// Longest one repository's clone may take (`90m`, `2h`; not counting the wait for a free
    /// job); past it the repository fails and the run goes on [default: 2h].
    #[arg(long, value_name = "DURATION")]
    pub repo_timeout: Option<String>,

    #[command(flatten)]
    pub s3: S3Args,

    #[command(flatten)]
    pub s3_writes: S3WriteArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub report: ReportArgs,

    #[command(flatten)]
    pub provider: ProviderArgs,

    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// Client-side encryption of every bundle with age: public keys only.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Encrypt every bundle with age to this public key (repeatable): an age recipient
    /// (`age1…`) or an SSH public key (`ssh-ed25519 …`, `ssh-rsa …`). Bundles are stored as
    /// `<slug>.bundle.age`.
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,

    /// Encrypt to every public key in this file (one per line, `#` comments; repeatable).
    #[arg(long, value_name = "PATH")]
    pub encrypt_to_file: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnchangedMode {
    Copy,
    Reference,
}

/// Where backups are read from: the same `--dest`, owner and S3 options as `backup`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Workspace whose backups to read [default: the config file's only `[[source]]`].
    #[arg(long, short = 'o', value_name = "WORKSPACE")]
    pub owner: Option<String>,

    /// `s3://bucket[/prefix]` or a local directory [default: ./backup].
    #[arg(long, value_name = "DEST", alias = "backupFolder")]
    pub dest: Option<String>,

    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Which snapshot: `YYYY-MM-DD`, `latest` (the newest complete one) or `all` (every
    /// complete one) [default: latest].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,

    /// Only repositories whose slug matches this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub repo: Vec<String>,

    /// Bundles checked at once [default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Only check that each object exists with the manifest's size and `sha256` metadata (no download).
    #[arg(long, conflicts_with = "deep")]
    pub quick: bool,

    /// Also index each pack with libgit2 and walk every object reachable from every ref.
    #[arg(long)]
    pub deep: bool,

    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// age identity file (from age-keygen) or unencrypted SSH private key, to check the
    /// contents of encrypted bundles (needed with --deep; without it, encrypted bundles are
    /// checked by size and SHA-256 of the stored bytes).
    #[arg(long, value_name = "FILE", env = "GIT_OFFSITE_IDENTITY")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// The repository (slug) to restore.
    #[arg(
        long,
        value_name = "SLUG",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub repo: Option<String>,

    /// Restore every repository of the snapshot into `DIR/<slug>` (`DIR/<slug>.git` with --bare).
    #[arg(long)]
    pub all: bool,

    /// Which snapshot: `YYYY-MM-DD` or `latest` (the newest one holding the repository) [default: latest].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,

    /// Directory to restore into; must not exist or be empty.
    #[arg(long, value_name = "DIR", required_unless_present = "push_to")]
    pub to: Option<PathBuf>,

    /// A bare repository (every ref, no working tree), like `git clone --mirror`.
    #[arg(long)]
    pub bare: bool,

    /// Repositories restored at once with --all [default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Push every restored ref to this empty remote repository (https URL); credentials from
    /// GIT_OFFSITE_PUSH_USERNAME / GIT_OFFSITE_PUSH_PASSWORD or git's credential helpers.
    #[arg(long, value_name = "URL", requires = "repo")]
    pub push_to: Option<String>,

    /// age identity file (from age-keygen) or unencrypted SSH private key, to decrypt
    /// encrypted bundles.
    #[arg(long, value_name = "FILE", env = "GIT_OFFSITE_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// Keep rules (restic `forget` semantics): each keeps the newest snapshot of that many
/// periods that have one; `unlimited` keeps every period. Rules combine (OR).
#[derive(Debug, Default, Args)]
pub struct KeepArgs {
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<String>,

    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<String>,

    /// Keep the newest snapshot of each of the last N ISO weeks (Monday to Sunday) that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<String>,

    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<String>,

    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<String>,

    /// Let the last bundle of a repository that no snapshot has listed for more than DAYS
    /// days go too [default: keep it forever].
    #[arg(long, value_name = "DAYS")]
    pub forget_vanished_after: Option<u64>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub keep: KeepArgs,

    /// Show what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write Prometheus text-format metrics here at the end (node_exporter textfile collector).
    #[arg(
        long,
        value_name = "PATH",
        env = "GIT_OFFSITE_METRICS_FILE",
        hide_env_values = true
    )]
    pub metrics_file: Option<PathBuf>,

    /// Push the same metrics to this Prometheus Pushgateway.
    #[arg(
        long,
        value_name = "URL",
        env = "GIT_OFFSITE_PUSHGATEWAY",
        hide_env_values = true
    )]
    pub pushgateway: Option<String>,

    /// Ping this dead-man's-switch URL (healthchecks.io style: `/start`, success, `/fail`).
    #[arg(
        long,
        value_name = "URL",
        env = "GIT_OFFSITE_HEALTHCHECK_URL",
        hide_env_values = true
    )]
    pub healthcheck_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Workspace (Bitbucket) whose repositories to list [default: every `[[source]]` of the config file].
    #[arg(long, short = 'o', value_name = "WORKSPACE")]
    pub owner: Option<String>,

    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub provider: ProviderArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Also check that this workspace's repositories can be listed.
    #[arg(long, short = 'o', value_name = "WORKSPACE")]
    pub owner: Option<String>,

    #[command(flatten)]
    pub provider: ProviderArgs,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only repositories whose slug matches this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Skip repositories whose slug matches this glob (repeatable; wins over --include).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Default, Args)]
pub struct RetryArgs {
    /// Further attempts after a transient failure (network, HTTP 5xx) of a clone or upload;
    /// API calls get a few more, since waiting out a rate limit costs nothing [default: 2].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// Pause before the first retry, doubled (with jitter) for each further one, e.g. `2s`, `500ms` [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub retry_delay: Option<String>,
}

#[derive(Debug, Default, Args)]
pub struct S3Args {
    /// S3 endpoint URL for S3-compatible stores [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS].
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Use virtual-hosted-style addressing even with a custom endpoint (path style is the default there).
    #[arg(long)]
    pub s3_virtual_hosted: bool,

    /// S3 region [default: the AWS chain, else us-east-1 for custom endpoints].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,

    /// Multipart part size, e.g. `16MiB`; grown so no bundle needs more than 10,000 parts [default: 16MiB].
    #[arg(long, value_name = "SIZE")]
    pub part_size: Option<String>,

    /// Parts of one bundle uploaded at once [default: 4].
    #[arg(long, value_name = "N")]
    pub parts_in_flight: Option<usize>,

    /// Longest one S3 request may take, upload of its body included, before it is retried, e.g. `90s` [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub s3_timeout: Option<String>,
}

/// What every object written to S3 carries: Object Lock retention, encryption, storage class.
#[derive(Debug, Default, Args)]
pub struct S3WriteArgs {
    /// S3 Object Lock retention on every object written (the bucket must have Object Lock enabled);
    /// needs --object-lock-days.
    #[arg(long, value_enum, ignore_case = true, value_name = "MODE")]
    pub object_lock_mode: Option<LockModeArg>,

    /// Days each object stays locked from the moment it is written; needs --object-lock-mode.
    #[arg(long, value_name = "N")]
    pub object_lock_days: Option<u32>,

    /// Server-side encryption of every object written.
    #[arg(long, value_enum, ignore_case = true, value_name = "ALGORITHM")]
    pub sse: Option<SseArg>,

    /// KMS key (id, ARN or alias) for --sse aws:kms [default: the bucket's or account's default key].
    #[arg(long, value_name = "ID")]
    pub sse_kms_key_id: Option<String>,

    /// Storage class of every object written, e.g. STANDARD_IA, GLACIER_IR [default: the bucket's].
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockModeArg {
    /// Users allowed to bypass governance retention can still delete early.
    Governance,
    /// Nobody can delete before the retention ends, not even the root account.
    Compliance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseArg {
    /// SSE-S3: keys managed by S3.
    #[value(name = "AES256")]
    Aes256,
    /// SSE-KMS: keys in AWS KMS (see --sse-kms-key-id).
    #[value(name = "aws:kms")]
    AwsKms,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_script_spellings_are_aliases() {
        let cli = Cli::try_parse_from([
            "git-offsite",
            "backup",
            "--owner",
            "acme",
            "--backupFolder",
            "/b",
            "--consumerKey",
            "k",
            "--consumerSecret",
            "s",
        ])
        .unwrap();
        let Command::Backup(b) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(b.dest.as_deref(), Some("/b"));
        assert_eq!(b.provider.bitbucket.consumer_key.as_deref(), Some("k"));
        assert_eq!(b.provider.bitbucket.consumer_secret.as_deref(), Some("s"));
    }
}
