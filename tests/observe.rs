//! What a person or a monitoring system sees: the progress display's bookkeeping under
//! concurrent hooks, the Prometheus metrics file (parsed back with a strict reader written
//! here, not the crate's own), Pushgateway pushes and healthcheck pings received by a local
//! HTTP server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use chrono::{NaiveDate, TimeZone, Utc};

use git_offsite::backup::{Observer, Phase};
use git_offsite::healthcheck::{Healthcheck, HealthcheckError};
use git_offsite::manifest::{FORMAT, Manifest, RepoEntry, Status, Summary};
use git_offsite::metrics::{self, OwnerRun, PushError, Pushgateway, RunMetrics};
use git_offsite::progress::Progress;
use git_offsite::provider::RemoteRepo;

// ---------------------------------------------------------------- a recording HTTP server

#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    body: String,
}

#[derive(Clone, Default)]
struct Recorder {
    requests: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer, in order; 200 once empty.
    statuses: Arc<Mutex<VecDeque<u16>>>,
    /// Delay before answering.
    delay: Arc<Mutex<Duration>>,
}

impl Recorder {
    fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    fn answer(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.requests.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let delay = *r.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = r.statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// A server on 127.0.0.1 that records every request; returns its base URL.
async fn server() -> (String, Recorder) {
    let recorder = Recorder::default();
    let app = Router::new().fallback(record).with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), recorder)
}

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// ---------------------------------------------------------------- a strict exposition reader

#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Reads text format 0.0.4 and fails on anything a Prometheus scrape would reject or find
/// odd: a sample before its `# TYPE`, a family declared twice, a duplicate series, bad names,
/// bad escapes, a missing final newline.
fn parse_exposition(text: &str) -> (BTreeMap<String, (String, String)>, Vec<Series>) {
    assert!(text.is_empty() || text.ends_with('\n'), "no final newline");
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut series: Vec<Series> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(valid_name(name), "{line}");
            assert!(!families.contains_key(name), "family {name} declared twice");
            families.insert(name.to_string(), (help.to_string(), String::new()));
            current = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert_eq!(
                current.as_deref(),
                Some(name),
                "TYPE right after its HELP: {line}"
            );
            assert!(["gauge", "counter", "untyped"].contains(&kind), "{line}");
            families.get_mut(name).unwrap().1 = kind.to_string();
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.trim().is_empty(),
            "unexpected line {line:?}"
        );
        let (head, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert!(valid_name(&key), "label name {key:?}");
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut v = String::new();
                    loop {
                        match chars.next().expect("unterminated label value") {
                            '"' => break,
                            '\\' => match chars.next() {
                                Some('\\') => v.push('\\'),
                                Some('"') => v.push('"'),
                                Some('n') => v.push('\n'),
                                other => panic!("bad escape {other:?} in {line}"),
                            },
                            '\n' => panic!("raw newline"),
                            c => v.push(c),
                        }
                    }
                    assert!(labels.insert(key, v).is_none(), "duplicate label in {line}");
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        other => panic!("expected , got {other:?} in {line}"),
                    }
                }
                (name, labels)
            }
        };
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample outside its family: {line}"
        );
        assert!(!families[name].1.is_empty(), "sample before TYPE: {line}");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let s = Series {
            name: name.to_string(),
            labels,
            value,
        };
        assert!(
            !series
                .iter()
                .any(|o| o.name == s.name && o.labels == s.labels),
            "duplicate series {line}"
        );
        series.push(s);
    }
    (families, series)
}

fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    series
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

// ---------------------------------------------------------------- fixtures

fn entry(slug: &str, status: Status, size: Option<u64>) -> RepoEntry {
    RepoEntry {
        slug: slug.into(),
        full_name: format!("acme/{slug}"),
        status,
        key: None,
        size,
        sha256: None,
        head: None,
        refs: BTreeMap::new(),
        error: (status == Status::Failed).then(|| "mirror: timed out".into()),
        since: None,
        duration_ms: 5,
        encryption: None,
    }
}

fn manifest(owner: &str, entries: Vec<RepoEntry>, finished_unix: i64) -> Manifest {
    Manifest {
        format: FORMAT,
        tool: git_offsite::TOOL.into(),
        provider: "bitbucket".into(),
        owner: owner.into(),
        date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        started_at: Utc.timestamp_opt(finished_unix - 100, 0).unwrap(),
        finished_at: Utc.timestamp_opt(finished_unix, 0).unwrap(),
        summary: Summary::of(&entries),
        repositories: entries,
    }
}

const T1: i64 = 1_800_000_000;
const T2: i64 = 1_800_086_400;

// ---------------------------------------------------------------- metrics file

#[test]
fn metrics_file_is_valid_exposition_with_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("git-offsite.prom");
    let mut m = RunMetrics::new();
    m.add(OwnerRun::from_manifest(
        &manifest(
            "acme",
            vec![
                entry("api", Status::Ok, Some(2048)),
                entry("docs", Status::Ok, Some(100)),
                entry("void", Status::Empty, None),
            ],
            T1,
        ),
        Duration::from_secs(90),
    ));
    m.add(OwnerRun::from_manifest(
        &manifest("globex", vec![entry("x", Status::Failed, None)], T1),
        Duration::from_secs(3),
    ));
    metrics::write_file(&path, &m).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (families, s) = parse_exposition(&text);

    for name in [
        "git_offsite_last_success_timestamp_seconds",
        "git_offsite_last_run_timestamp_seconds",
        "git_offsite_last_run_success",
        "git_offsite_duration_seconds",
        "git_offsite_repositories",
        "git_offsite_bytes_uploaded_total",
        "git_offsite_bundle_size_bytes",
    ] {
        assert_eq!(
            families.get(name).map(|f| f.1.as_str()),
            Some("gauge"),
            "{name}"
        );
    }
    assert!(
        s.iter().all(|x| x.labels.contains_key("owner")),
        "every series has an owner"
    );
    let ts = T1 as f64;
    assert_eq!(
        value(
            &s,
            "git_offsite_last_success_timestamp_seconds",
            &[("owner", "acme")]
        ),
        Some(ts)
    );
    assert_eq!(
        value(
            &s,
            "git_offsite_last_success_timestamp_seconds",
            &[("owner", "globex")]
        ),
        None
    );
    assert_eq!(
        value(
            &s,
            "git_offsite_last_run_timestamp_seconds",
            &[("owner", "globex")]
        ),
        Some(ts)
    );
    assert_eq!(
        value(&s, "git_offsite_last_run_success", &[("owner", "acme")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "git_offsite_last_run_success", &[("owner", "globex")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "git_offsite_duration_seconds", &[("owner", "acme")]),
        Some(90.0)
    );
    for (status, n) in [("ok", 2.0), ("empty", 1.0), ("failed", 0.0)] {
        assert_eq!(
            value(
                &s,
                "git_offsite_repositories",
                &[("owner", "acme"), ("status", status)]
            ),
            Some(n)
        );
    }
    assert_eq!(
        value(
            &s,
            "git_offsite_repositories",
            &[("owner", "globex"), ("status", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "git_offsite_bytes_uploaded_total", &[("owner", "acme")]),
        Some(2148.0)
    );
    assert_eq!(
        value(
            &s,
            "git_offsite_bundle_size_bytes",
            &[("owner", "acme"), ("repository", "api")]
        ),
        Some(2048.0)
    );
    assert_eq!(
        s.iter()
            .filter(|x| x.name == "git_offsite_bundle_size_bytes")
            .count(),
        2
    );

    // Atomic replacement leaves nothing else behind, and the collector (another user) can read.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("git-offsite.prom")]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}

#[test]
fn metrics_file_carries_the_last_success_over_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("git-offsite.prom");

    // Day 1: both owners succeed.
    let mut day1 = RunMetrics::new();
    day1.add(OwnerRun::from_manifest(
        &manifest("acme", vec![entry("api", Status::Ok, Some(1))], T1),
        Duration::from_secs(1),
    ));
    day1.add(OwnerRun::from_manifest(
        &manifest("globex", vec![entry("web", Status::Ok, Some(1))], T1),
        Duration::from_secs(1),
    ));
    metrics::write_file(&path, &day1).unwrap();

    // Day 2: acme cannot even list (no manifest), globex has a failed repository, initech is new
    // and fails; globex's success of day 1 and acme's must survive.
    let mut day2 = RunMetrics::new();
    day2.add(OwnerRun::failed("acme", Duration::from_secs(2)));
    day2.add(OwnerRun::from_manifest(
        &manifest("globex", vec![entry("web", Status::Failed, None)], T2),
        Duration::from_secs(2),
    ));
    day2.add(OwnerRun::failed("initech", Duration::from_secs(2)));
    metrics::write_file(&path, &day2).unwrap();
    let (_, s) = parse_exposition(&std::fs::read_to_string(&path).unwrap());
    let last = "git_offsite_last_success_timestamp_seconds";
    assert_eq!(value(&s, last, &[("owner", "acme")]), Some(T1 as f64));
    assert_eq!(value(&s, last, &[("owner", "globex")]), Some(T1 as f64));
    assert_eq!(
        value(&s, last, &[("owner", "initech")]),
        None,
        "never succeeded: nothing to carry"
    );
    assert_eq!(
        value(&s, "git_offsite_last_run_success", &[("owner", "acme")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &s,
            "git_offsite_last_run_timestamp_seconds",
            &[("owner", "globex")]
        ),
        Some(T2 as f64)
    );

    // Day 3: globex succeeds again and moves forward; acme still failing keeps day 1.
    let mut day3 = RunMetrics::new();
    day3.add(OwnerRun::failed("acme", Duration::from_secs(2)));
    day3.add(OwnerRun::from_manifest(
        &manifest("globex", vec![entry("web", Status::Ok, Some(5))], T2 + 10),
        Duration::from_secs(2),
    ));
    metrics::write_file(&path, &day3).unwrap();
    let (_, s) = parse_exposition(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(value(&s, last, &[("owner", "acme")]), Some(T1 as f64));
    assert_eq!(
        value(&s, last, &[("owner", "globex")]),
        Some((T2 + 10) as f64)
    );
    assert_eq!(
        value(&s, last, &[("owner", "initech")]),
        None,
        "owners not in this run are dropped"
    );
}

#[test]
fn metrics_escape_label_values_and_survive_a_round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.prom");
    let owner = "we\\ird \"owner\"\nname";
    let mut m = RunMetrics::new();
    let mut man = manifest(owner, vec![entry("a\"b\\c", Status::Ok, Some(7))], T1);
    man.owner = owner.into();
    m.add(OwnerRun::from_manifest(&man, Duration::from_secs(1)));
    metrics::write_file(&path, &m).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#"owner="we\\ird \"owner\"\nname""#),
        "{text}"
    );
    let (_, s) = parse_exposition(&text);
    assert_eq!(
        value(
            &s,
            "git_offsite_bundle_size_bytes",
            &[("owner", owner), ("repository", "a\"b\\c")]
        ),
        Some(7.0)
    );

    // The carry-over reads the escaped owner back.
    let mut next = RunMetrics::new();
    next.add(OwnerRun::failed(owner, Duration::from_secs(1)));
    metrics::write_file(&path, &next).unwrap();
    let (_, s) = parse_exposition(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        value(
            &s,
            "git_offsite_last_success_timestamp_seconds",
            &[("owner", owner)]
        ),
        Some(T1 as f64)
    );
}

#[test]
fn metrics_file_into_a_missing_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = metrics::write_file(&dir.path().join("nope/m.prom"), &RunMetrics::new()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

// ---------------------------------------------------------------- Pushgateway

#[tokio::test]
async fn push_posts_one_group_per_owner() {
    let (base, rec) = server().await;
    let mut m = RunMetrics::new();
    m.add(OwnerRun::from_manifest(
        &manifest("acme", vec![entry("api", Status::Ok, Some(42))], T1),
        Duration::from_secs(9),
    ));
    m.add(OwnerRun::failed("globex", Duration::from_secs(1)));
    // A failed owner with a known previous success still must not push it: POST keeps the
    // gateway's own value.
    m.remember_success("globex", 1.0);
    metrics::push(&format!("{base}/"), &m).await.unwrap();

    let reqs = rec.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.method == "POST"));
    assert!(
        reqs.iter()
            .all(|r| r.content_type.as_deref() == Some(metrics::CONTENT_TYPE))
    );
    let acme = reqs
        .iter()
        .find(|r| r.path == "/metrics/job/git-offsite/owner/acme")
        .unwrap();
    let globex = reqs
        .iter()
        .find(|r| r.path == "/metrics/job/git-offsite/owner/globex")
        .unwrap();
    let (_, a) = parse_exposition(&acme.body);
    let (gf, g) = parse_exposition(&globex.body);
    assert!(
        a.iter().all(|s| s.labels["owner"] == "acme"),
        "one owner per group"
    );
    assert!(g.iter().all(|s| s.labels["owner"] == "globex"));
    assert_eq!(
        value(
            &a,
            "git_offsite_last_success_timestamp_seconds",
            &[("owner", "acme")]
        ),
        Some(T1 as f64)
    );
    assert_eq!(
        value(
            &a,
            "git_offsite_bundle_size_bytes",
            &[("owner", "acme"), ("repository", "api")]
        ),
        Some(42.0)
    );
    assert!(
        !gf.contains_key("git_offsite_last_success_timestamp_seconds"),
        "not even an empty family, which would wipe the gateway's value:\n{}",
        globex.body
    );
    assert!(
        !gf.contains_key("git_offsite_repositories"),
        "unknown without a manifest"
    );
    assert_eq!(
        value(&g, "git_offsite_last_run_success", &[("owner", "globex")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn push_retries_server_errors_and_reports_the_last_one() {
    let (base, rec) = server().await;
    let mut m = RunMetrics::new();
    m.add(OwnerRun::failed("acme", Duration::from_secs(1)));
    m.add(OwnerRun::failed("globex", Duration::from_secs(1)));

    // acme: 503 then 200 (retried); globex: 400 (not retried, reported).
    rec.answer(&[503, 200, 400]);
    let gw = Pushgateway::new(&base)
        .unwrap()
        .with_retries(2, Duration::from_millis(10));
    let err = gw.push(&m).await.unwrap_err();
    match &err {
        PushError::Status { status, url, .. } => {
            assert_eq!(*status, 400);
            assert!(url.ends_with("/owner/globex"), "{url}");
        }
        other => panic!("{other:?}"),
    }
    let paths: Vec<_> = rec.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec![
            "/metrics/job/git-offsite/owner/acme",
            "/metrics/job/git-offsite/owner/acme",
            "/metrics/job/git-offsite/owner/globex"
        ]
    );
}

#[tokio::test]
async fn push_to_nothing_fails_cleanly_without_leaking_credentials() {
    let url = dead_url().replace("http://", "http://user:hunter2@");
    let mut m = RunMetrics::new();
    m.add(OwnerRun::failed("acme", Duration::from_secs(1)));
    let gw = Pushgateway::new(&url)
        .unwrap()
        .with_retries(1, Duration::from_millis(10));
    let err = gw.push(&m).await.unwrap_err();
    assert!(matches!(err, PushError::Request { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("user"),
        "{text}"
    );
    assert!(
        text.contains("/metrics/job/git-offsite/owner/acme"),
        "{text}"
    );
}

// ---------------------------------------------------------------- healthcheck

#[tokio::test]
async fn healthcheck_pings_the_right_paths_in_order_with_the_body() {
    let (base, rec) = server().await;
    let hc = Healthcheck::new(&format!("{base}/ping/0d9a1c5e-uuid/")).unwrap();
    hc.start().await.unwrap();
    hc.success("acme: 3 ok, 1 empty, 0 failed, 12 MiB in 4.2s")
        .await
        .unwrap();
    hc.fail("globex: listing failed").await.unwrap();
    let reqs = rec.requests();
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.body.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST", "/ping/0d9a1c5e-uuid/start", ""),
            (
                "POST",
                "/ping/0d9a1c5e-uuid",
                "acme: 3 ok, 1 empty, 0 failed, 12 MiB in 4.2s"
            ),
            ("POST", "/ping/0d9a1c5e-uuid/fail", "globex: listing failed"),
        ]
    );
    assert!(
        reqs[1]
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn healthcheck_keeps_the_query_of_slug_urls() {
    let (base, rec) = server().await;
    let hc = Healthcheck::new(&format!("{base}/pingkey/nightly-backup?create=1")).unwrap();
    hc.start().await.unwrap();
    let r = &rec.requests()[0];
    assert_eq!(r.path, "/pingkey/nightly-backup/start");
    assert_eq!(r.query.as_deref(), Some("create=1"));
}

#[tokio::test]
async fn healthcheck_retries_then_gives_up_with_an_error() {
    let (base, rec) = server().await;
    let hc = Healthcheck::new(&format!("{base}/secret-uuid"))
        .unwrap()
        .with_retries(2, Duration::from_millis(10));

    rec.answer(&[500, 502]);
    hc.success("ok").await.unwrap();
    assert_eq!(rec.requests().len(), 3, "two retries, then the 200");

    rec.answer(&[500, 500, 500]);
    let err = hc.fail("boom").await.unwrap_err();
    assert!(
        matches!(err, HealthcheckError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(rec.requests().len(), 6);

    // 404 (unknown check) is not retried.
    rec.answer(&[404]);
    let err = hc.start().await.unwrap_err();
    assert!(
        matches!(err, HealthcheckError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(rec.requests().len(), 7);
    assert!(!err.to_string().contains("secret-uuid"), "{err}");
}

#[tokio::test]
async fn healthcheck_server_down_or_hanging_is_an_error_not_a_panic() {
    let hc = Healthcheck::new(&format!("{}/secret-uuid", dead_url()))
        .unwrap()
        .with_retries(1, Duration::from_millis(10));
    let err = hc.start().await.unwrap_err();
    assert!(
        matches!(err, HealthcheckError::Request { ping: "start", .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret-uuid"), "{err}");

    let (base, rec) = server().await;
    *rec.delay.lock().unwrap() = Duration::from_secs(30);
    let hc = Healthcheck::new(&format!("{base}/slow"))
        .unwrap()
        .with_timeout(Duration::from_millis(200))
        .with_retries(0, Duration::ZERO);
    let started = Instant::now();
    let err = hc.success("x").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout applies"
    );
    assert!(matches!(err, HealthcheckError::Request { .. }), "{err:?}");
}

#[tokio::test]
async fn healthcheck_bodies_are_capped() {
    let (base, rec) = server().await;
    let hc = Healthcheck::new(&base).unwrap();
    hc.fail(&"é".repeat(20_000)).await.unwrap();
    let body = &rec.requests()[0].body;
    assert!(
        body.len() <= git_offsite::healthcheck::MAX_BODY,
        "{}",
        body.len()
    );
    assert!(
        body.chars().all(|c| c == 'é'),
        "cut on a character boundary"
    );
}

// ---------------------------------------------------------------- progress

fn remote(slug: &str) -> RemoteRepo {
    RemoteRepo {
        slug: slug.into(),
        full_name: format!("acme/{slug}"),
        clone_url: url::Url::parse(&format!("https://example.invalid/acme/{slug}.git")).unwrap(),
        size: Some(1000),
        updated_on: None,
        default_branch: Some("main".into()),
        is_private: Some(true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_counts_a_concurrent_run_from_tasks_and_blocking_threads() {
    let progress = Arc::new(Progress::with_draw_target(
        indicatif::ProgressDrawTarget::hidden(),
    ));
    let observer: Arc<dyn Observer> = progress.clone();
    let slugs: Vec<String> = (0..24).map(|i| format!("repo-{i}")).collect();
    observer.listed(&slugs.iter().map(|s| remote(s)).collect::<Vec<_>>());

    let mut tasks = Vec::new();
    for (i, slug) in slugs.iter().cloned().enumerate() {
        let observer = observer.clone();
        tasks.push(tokio::spawn(async move {
            observer.phase(&slug, Phase::Mirror);
            // The fetch callback runs on a blocking thread, as in the pipeline.
            let (o, s) = (observer.clone(), slug.clone());
            tokio::task::spawn_blocking(move || {
                for n in 0..500 {
                    o.received(&s, n * 64);
                }
            })
            .await
            .unwrap();
            observer.phase(&slug, Phase::Bundle);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let status = match i % 6 {
                0 => Status::Failed,
                1 => Status::Empty,
                _ => Status::Ok,
            };
            if status == Status::Ok {
                observer.phase(&slug, Phase::Upload);
                for _ in 0..10 {
                    observer.uploaded(&slug, 100);
                    tokio::task::yield_now().await;
                }
            }
            let size = (status == Status::Ok).then_some(1000);
            let mut e = entry(&slug, status, size);
            e.full_name = format!("acme/{slug}");
            observer.finished(&e);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    progress.finish();
    let c = progress.counts();
    assert_eq!(c.total, 24);
    assert_eq!((c.ok, c.empty, c.failed), (16, 4, 4));
    assert_eq!(c.done(), 24);
    assert_eq!(c.bytes_uploaded, 16 * 1000);
    assert_eq!(c.in_flight, 0);
    // Hooks after the end are still harmless.
    observer.uploaded("late", 1);
    assert_eq!(progress.counts().bytes_uploaded, 16 * 1000 + 1);
}

#[test]
fn progress_is_off_when_stderr_is_not_a_terminal() {
    use std::io::IsTerminal;
    // Test runners capture stderr; when run from a terminal with --nocapture, skip.
    if !std::io::stderr().is_terminal() {
        assert!(Progress::new_if_terminal().is_none());
    }
}

// ---------------------------------------------------------------- through the binary

/// The wiring, end to end: one run of the binary writes a metrics file that parses back,
/// pushes the same set to a Pushgateway, and pings the healthcheck's `/start` then success;
/// a run with a failed repository pings `/fail` and keeps the last success of the day before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_metrics_pushes_them_and_pings_the_healthcheck() {
    use crate::support::harness::TestEnv;

    let env = TestEnv::new().await;
    for slug in ["api", "web"] {
        env.simple_repo("acme", slug, "main");
    }
    let (hc_url, hc) = server().await;
    let (gw_url, gw) = server().await;
    let metrics_file = env.path().join("metrics/git-offsite.prom");
    std::fs::create_dir_all(metrics_file.parent().unwrap()).unwrap();
    let dest = env.path().join("b");
    let args = |date: &'static str| {
        vec![
            "backup".to_string(),
            "--owner".into(),
            "acme".into(),
            "--dest".into(),
            dest.to_str().unwrap().into(),
            "--date".into(),
            date.into(),
            "--metrics-file".into(),
            metrics_file.to_str().unwrap().into(),
            "--pushgateway".into(),
            gw_url.clone(),
            "--healthcheck-url".into(),
            format!("{hc_url}/ping/abc"),
            "--retries".into(),
            "0".into(),
        ]
    };
    let a = args("2026-11-23");
    env.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .expect_code(0);

    let (_, series) = parse_exposition(&std::fs::read_to_string(&metrics_file).unwrap());
    let acme = [("owner", "acme")];
    let last_success = value(&series, "git_offsite_last_success_timestamp_seconds", &acme).unwrap();
    assert!((last_success - Utc::now().timestamp() as f64).abs() < 120.0);
    assert_eq!(
        value(
            &series,
            "git_offsite_repositories",
            &[("owner", "acme"), ("status", "ok")]
        ),
        Some(2.0)
    );
    assert!(
        value(
            &series,
            "git_offsite_bundle_size_bytes",
            &[("owner", "acme"), ("repository", "api")]
        )
        .unwrap()
            > 0.0
    );
    assert!(value(&series, "git_offsite_bytes_uploaded_total", &acme).unwrap() > 0.0);

    let pushes = gw.requests();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].method, "POST");
    assert!(
        pushes[0].path.starts_with("/metrics/job/git-offsite"),
        "{}",
        pushes[0].path
    );
    assert!(
        pushes[0]
            .body
            .contains("git_offsite_last_success_timestamp_seconds")
    );

    let pings: Vec<(String, String)> = hc
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        pings,
        [
            ("POST".to_string(), "/ping/abc/start".to_string()),
            ("POST".into(), "/ping/abc".into())
        ]
    );
    assert!(
        hc.requests()[1].body.contains("acme: 2 ok"),
        "{}",
        hc.requests()[1].body
    );

    // Next day one repository fails: `/fail`, exit 5, and the last success is carried over.
    env.emu.fail_repo("acme", "web", 500);
    let a = args("2026-11-24");
    env.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .expect_code(5);
    let (_, series) = parse_exposition(&std::fs::read_to_string(&metrics_file).unwrap());
    assert_eq!(
        value(&series, "git_offsite_last_success_timestamp_seconds", &acme),
        Some(last_success)
    );
    assert_eq!(
        value(&series, "git_offsite_last_run_success", &acme),
        Some(0.0)
    );
    assert_eq!(
        value(
            &series,
            "git_offsite_repositories",
            &[("owner", "acme"), ("status", "failed")]
        ),
        Some(1.0)
    );
    let last = hc.requests().last().unwrap().clone();
    assert_eq!(last.path, "/ping/abc/fail");
    assert!(last.body.contains("1 failed"), "{}", last.body);
    assert!(
        !gw.requests()
            .last()
            .unwrap()
            .body
            .contains("git_offsite_last_success_timestamp_seconds")
    );
}

/// A monitoring outage never fails a good backup: dead healthcheck and gateway → exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_monitoring_is_a_warning_not_a_failure() {
    use crate::support::harness::TestEnv;

    let env = TestEnv::new().await;
    env.simple_repo("acme", "api", "main");
    let dead = dead_url();
    let run = env
        .run(&[
            "backup",
            "--owner",
            "acme",
            "--dest",
            env.path().join("b").to_str().unwrap(),
            "--healthcheck-url",
            &dead,
            "--pushgateway",
            &dead,
        ])
        .await;
    run.expect_code(0);
    assert!(
        run.stderr.contains("healthcheck") && run.stderr.contains("push"),
        "{}",
        run.stderr
    );
}
