//! The one check for every URL the tool dials: the Bitbucket API and token endpoint, the S3
//! endpoint (`--s3-endpoint`, the config file, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), the
//! Pushgateway and the healthcheck.
//!
//! Why it is strict:
//! - Each of those requests carries a secret (the consumer secret, a bearer token, SigV4
//!   credentials, a ping id, a Pushgateway password), so plain `http://` is refused unless the
//!   host is this machine (`localhost`, 127.0.0.0/8, `::1`: emulators, sidecars, port
//!   forwards) or the user said `--allow-insecure-http`. The refusal happens here, before any
//!   connection, and names the option or variable that holds the URL.
//! - A URL may itself be a secret (a healthcheck ping id, `user:password@` of a Pushgateway), so
//!   errors never quote a URL, only its scheme, host and port.
//! - A host name that does not resolve is a typo, not an outage: [`check_resolves`] turns it
//!   into a configuration error at once instead of a minute of retries. It is skipped when a
//!   proxy is configured, since then only the proxy needs to know the name.

use std::net::IpAddr;

use ::url::{Host, Url};

use super::ConfigError;

/// Where a URL came from, as the user would fix it: `--bitbucket-api-url (BITBUCKET_API_URL)`.
pub type UrlSource = &'static str;

/// The flag that lifts the `http://` rule (also `GIT_OFFSITE_ALLOW_INSECURE_HTTP`, or
/// `allow_insecure_http = true` in the config file).
pub const ALLOW_INSECURE_FLAG: &str = "--allow-insecure-http";

/// Parses `raw` as a URL the tool will dial and applies the rules above. `secret` URLs (ping
/// ids, passwords in user info) are never quoted, not even when they do not parse.
pub fn dial_url(
    from: UrlSource,
    raw: &str,
    secret: bool,
    allow_insecure: bool,
) -> Result<Url, ConfigError> {
    let quoted = || {
        if secret {
            "(not shown: it may be a credential)".to_string()
        } else {
            raw.to_string()
        }
    };
    let url = Url::parse(raw).map_err(|e| super::invalid(from, quoted(), e))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        let shown = if secret { quoted() } else { redact(&url) };
        return Err(super::invalid(
            from,
            shown,
            "expected an http:// or https:// URL with a host",
        ));
    }
    if url.scheme() == "http" && !allow_insecure && !is_loopback(&url) {
        return Err(ConfigError::InsecureUrl {
            what: from,
            shown: redact(&url),
        });
    }
    Ok(url)
}

/// `localhost`, 127.0.0.0/8 or `::1`: traffic that never leaves the machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Scheme, host and port only: what of a URL may appear in a message.
pub fn redact(url: &Url) -> String {
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}", url.scheme())
}

/// Scheme, host and port of `url`, compared as the one thing credentials may be sent to.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The host a provider's token may be sent to for git: `git_url` when given; for the host's
/// own public API (`default_api`), its git host (`default_git`); else the API URL's scheme, host
/// and port (a self-hosted server, a proxy or an emulator serves both).
pub fn git_origin(
    api_url: &Url,
    git_url: Option<&Url>,
    default_api: &str,
    default_git: &str,
) -> Url {
    if let Some(u) = git_url {
        return u.clone();
    }
    let default_api = Url::parse(default_api).expect("valid default URL");
    if api_url.origin() == default_api.origin() {
        return Url::parse(default_git).expect("valid default URL");
    }
    origin_of(api_url)
}

/// `url`'s scheme, host and port alone (`https://host:port/`): no path, query or user info.
pub fn origin_of(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    let _ = origin.set_username("");
    let _ = origin.set_password(None);
    origin
}

/// Resolves each URL's host name once (IP literals need nothing), so a typo in a host name is
/// a configuration error now rather than a transient failure retried for a minute. Skipped
/// entirely when a proxy is configured: then only the proxy needs to resolve the names.
pub async fn check_resolves(
    targets: &[(UrlSource, &Url)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let proxied = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|v| env(v).is_some_and(|s| !s.is_empty()));
    if proxied {
        return Ok(());
    }
    for (from, url) in targets {
        let Some(Host::Domain(host)) = url.host() else {
            continue;
        };
        if host.parse::<IpAddr>().is_ok() {
            continue;
        }
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::net::lookup_host((host, port))
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ConfigError::Unresolvable {
                    what: from,
                    host: host.to_string(),
                    message: "no addresses".into(),
                });
            }
            Err(e) => {
                return Err(ConfigError::Unresolvable {
                    what: from,
                    host: host.to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only_unless_allowed() {
        for ok in [
            "https://api.bitbucket.org/2.0",
            "http://127.0.0.1:9/x",
            "http://127.8.9.10/",
            "http://localhost:8080",
            "http://LOCALHOST/",
            "http://[::1]:9000",
        ] {
            assert!(dial_url("--x", ok, false, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.invalid/2.0",
            "http://10.0.0.1:9000",
            "http://[::2]/",
            "http://localhost.example.com/",
        ] {
            let e = dial_url("--x (X_VAR)", bad, false, false).unwrap_err();
            assert!(matches!(e, ConfigError::InsecureUrl { .. }), "{bad}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("--x (X_VAR)") && text.contains(ALLOW_INSECURE_FLAG),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
            assert!(dial_url("--x", bad, false, true).is_ok(), "{bad}");
        }
    }

    #[test]
    fn secret_urls_are_never_quoted() {
        for bad in [
            "http://user:pw-secret@hc.example/ping-secret",
            "not a url ping-secret",
            "ftp://hc/ping-secret",
        ] {
            let e = dial_url("--healthcheck-url", bad, true, false)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("secret"), "{e}");
            assert!(e.contains("--healthcheck-url"), "{e}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://bitbucket.org/a/b.git"),
            &u("https://BITBUCKET.org:443/")
        ));
        assert!(!same_origin(
            &u("https://bitbucket.org/"),
            &u("http://bitbucket.org/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.1:2/")
        ));
        assert!(!same_origin(
            &u("https://bitbucket.org/"),
            &u("https://bitbucket.org.evil/")
        ));
    }

    #[tokio::test]
    async fn unresolvable_hosts_are_config_errors_unless_proxied() {
        let url = Url::parse("https://no-such-host.invalid/").unwrap();
        let no_env = |_: &str| None;
        let e = check_resolves(&[("--bitbucket-api-url", &url)], &no_env)
            .await
            .unwrap_err();
        assert!(matches!(e, ConfigError::Unresolvable { .. }), "{e}");
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
        let proxied = |k: &str| (k == "HTTPS_PROXY").then(|| "http://proxy:3128".to_string());
        assert!(check_resolves(&[("--x", &url)], &proxied).await.is_ok());
        let ip = Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(check_resolves(&[("--x", &ip)], &no_env).await.is_ok());
    }
}
