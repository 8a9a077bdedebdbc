//! Client-side encryption end to end: real backups with `--encrypt-to` into a local directory
//! and the test S3 server, keys made by stock `age-keygen` and `ssh-keygen`, every stored
//! object decrypted by stock `age -d` and read back by stock git, restores through
//! `restore --identity`, and the ways a wrong or missing key must fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::git::{clone_mirror, git, git_output, show_refs};
use crate::support::harness::{Run, TestEnv};
use crate::support::readback::{DAY1, DAY2, Dest, OWNER, entry, fixtures, sha256_hex};
use crate::support::s3::TestS3;

const DAY3: &str = "2026-11-26";
const DAY4: &str = "2026-11-27";

/// A stock tool's output; panics with its stderr when it fails.
fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (apt-get install age openssh-client): {e}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new age identity file made by `age-keygen`, and its public key.
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    tool("age-keygen", &["-o", path.to_str().unwrap()]);
    let public = String::from_utf8(tool("age-keygen", &["-y", path.to_str().unwrap()])).unwrap();
    (path, public.trim().to_string())
}

/// A new unencrypted ed25519 key pair made by `ssh-keygen`: the private key file and the
/// `.pub` file.
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let path = dir.join(name);
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ops@example",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    let public = path.with_extension("pub");
    (path, public)
}

async fn backup(env: &TestEnv, dest: &Dest<'_>, date: &str, extra: &[&str]) -> Run {
    let d = dest.arg();
    let mut args = vec!["backup", "--owner", OWNER, "--dest", &d, "--date", date];
    args.extend_from_slice(extra);
    dest.run(env, &args).await
}

/// `restore --repo SLUG --to TARGET [--identity FILE]` from `dest`.
async fn restore(
    env: &TestEnv,
    dest: &Dest<'_>,
    slug: &str,
    target: &Path,
    identity: Option<&Path>,
) -> Run {
    let mut args = vec!["--repo", slug, "--to", target.to_str().unwrap()];
    if let Some(id) = identity {
        args.extend(["--identity", id.to_str().unwrap()]);
    }
    dest.read_command(env, "restore", &args).await
}

/// The stored object of `slug` on `date`, decrypted by stock `age -d -i identity` into
/// `<out>/<slug>.bundle`.
async fn stock_decrypt(
    dest: &Dest<'_>,
    date: &str,
    slug: &str,
    identity: &Path,
    out: &Path,
) -> PathBuf {
    let sealed = out.join(format!("{slug}.bundle.age"));
    std::fs::write(
        &sealed,
        dest.read(&dest.key(date, &format!("{slug}.bundle.age")))
            .await,
    )
    .unwrap();
    let plain = out.join(format!("{slug}.bundle"));
    tool(
        "age",
        &[
            "-d",
            "-i",
            identity.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ],
    );
    plain
}

fn status(manifest: &Value, slug: &str) -> String {
    entry(manifest, slug)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_bundles_decrypt_with_stock_age_and_restore_with_the_identity() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let keys = env.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (identity, recipient) = age_key(&keys, "ops.key");
    let (stranger, _) = age_key(&keys, "stranger.key");
    // The wrong key's secret must never be echoed by the runs that are given it.
    let secret = std::fs::read_to_string(&stranger).unwrap();
    let secret_line = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let s3 = TestS3::start().await;
    let local = Dest::Local(env.path().join("backups"));
    let remote = Dest::S3(&s3);
    for (n, dest) in [&local, &remote].into_iter().enumerate() {
        backup(&env, dest, DAY1, &["--encrypt-to", &recipient])
            .await
            .expect_code(0);
        let manifest = dest.manifest(DAY1).await;
        let work = env.path().join(format!("work-{n}"));
        std::fs::create_dir_all(&work).unwrap();
        for (slug, (source, _)) in &sources {
            let e = entry(&manifest, slug);
            let key = e["key"].as_str().unwrap();
            assert!(key.ends_with(&format!("/{slug}.bundle.age")), "{key}");
            let stored = dest
                .read(&dest.key(DAY1, &format!("{slug}.bundle.age")))
                .await;
            // Nobody who can read the bucket reads the code: the stored bytes are age, not a
            // bundle, and hold none of the source's ref names.
            assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{slug}");
            assert!(
                !stored.windows(15).any(|w| w == b"# v2 git bundle"),
                "{slug}"
            );
            assert!(!stored.windows(11).any(|w| w == b"refs/heads/"), "{slug}");
            let as_bundle = work.join(format!("{slug}.stored"));
            std::fs::write(&as_bundle, &stored).unwrap();
            let listed = git_output(
                &work,
                &["bundle", "list-heads", as_bundle.to_str().unwrap()],
            );
            assert!(
                !listed.status.success(),
                "git must not read {slug}'s stored bytes"
            );
            // The manifest holds both hashes: the stored object's and the plaintext's.
            assert_eq!(e["size"], stored.len() as u64, "{slug}");
            assert_eq!(e["sha256"], sha256_hex(&stored), "{slug}");
            assert_eq!(e["encryption"]["scheme"], "age");
            assert!(
                e["encryption"]["recipients"]
                    .as_str()
                    .unwrap()
                    .starts_with("sha256:"),
                "{e}"
            );
            let plain = stock_decrypt(dest, DAY1, slug, &identity, &work).await;
            let plain_bytes = std::fs::read(&plain).unwrap();
            assert_eq!(e["encryption"]["plaintext_size"], plain_bytes.len() as u64);
            assert_eq!(
                e["encryption"]["plaintext_sha256"],
                sha256_hex(&plain_bytes)
            );
            let mirror = clone_mirror(&plain, &work.join(format!("{slug}.git")));
            assert_eq!(
                show_refs(&mirror),
                show_refs(source),
                "{slug} via stock age and git"
            );
        }
        assert_eq!(status(&manifest, "hollow"), "empty");
        let names: Vec<String> = match dest {
            Dest::Local(p) => crate::support::readback::names_in(&p.join(OWNER).join(DAY1)),
            Dest::S3(s3) => s3
                .keys()
                .await
                .into_iter()
                .filter(|k| k.contains(DAY1))
                .collect(),
        };
        assert!(
            !names.iter().any(|k| k.ends_with(".bundle")),
            "no plaintext bundle is stored: {names:?}"
        );
        if let Dest::S3(s3) = dest {
            let meta = s3.metadata(&dest.key(DAY1, "api.bundle.age")).await;
            assert_eq!(
                meta.get("sha256").map(String::as_str),
                entry(&manifest, "api")["sha256"].as_str(),
                "the stored object's sha256 metadata is the stored bytes' (verify --quick)"
            );
        }

        // Plain verify needs no key; --deep does, and reads the contents with it.
        let run = dest.read_command(&env, "verify", &[]).await;
        run.expect_code(0);
        assert!(run.stdout.contains("encrypted"), "{}", run.stdout);
        dest.read_command(&env, "verify", &["--quick"])
            .await
            .expect_code(0);
        let run = dest.read_command(&env, "verify", &["--deep"]).await;
        run.expect_code(5);
        assert!(run.stdout.contains("--identity"), "{}", run.stdout);
        let id = identity.to_str().unwrap();
        let run = dest
            .read_command(&env, "verify", &["--deep", "--identity", id])
            .await;
        run.expect_code(0);
        assert!(run.stdout.contains("all present"), "{}", run.stdout);
        let run = dest.read_command(&env, "verify", &["--identity", id]).await;
        run.expect_code(0);
        assert!(run.stdout.contains("decrypted"), "{}", run.stdout);

        // Restore with the identity: ref for ref the source, fsck clean.
        let out = env.path().join(format!("restored-{n}"));
        for (slug, (source, _)) in &sources {
            let target = out.join(slug);
            restore(&env, dest, slug, &target, Some(&identity))
                .await
                .expect_code(0);
            assert_eq!(show_refs(&target), show_refs(source), "{slug}");
            git(&target, &["fsck", "--strict", "--no-dangling"]);
        }

        // No key, or the wrong one: a usage error naming the fix, nothing left behind, and
        // the key file's content nowhere in the output.
        let target = out.join("api-again");
        let run = restore(&env, dest, "api", &target, None).await;
        run.expect_code(2);
        assert!(run.stderr.contains("--identity"), "{}", run.stderr);
        let run = restore(&env, dest, "api", &target, Some(&stranger)).await;
        run.expect_code(2);
        assert!(
            run.stderr.contains("cannot decrypt") && run.stderr.contains("stranger.key"),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains(&secret_line) && !run.stderr.contains(&secret_line));
        assert!(!target.exists(), "a failed restore leaves no target");
        assert!(
            !crate::support::readback::names_in(&out)
                .iter()
                .any(|n| n.contains(".restore-")),
            "no temp dirs left"
        );
        let run = dest
            .read_command(
                &env,
                "verify",
                &["--deep", "--identity", stranger.to_str().unwrap()],
            )
            .await;
        run.expect_code(5);
        assert!(run.stdout.contains("cannot decrypt"), "{}", run.stdout);
        assert!(!run.stdout.contains(&secret_line) && !run.stderr.contains(&secret_line));
        assert!(env.tmp_leftovers().is_empty(), "{:?}", env.tmp_leftovers());
    }
}

/// An encrypted object whose bytes were changed fails `verify` without a key (stored hash)
/// and `restore` with one, and a manifest whose plaintext hash was edited fails the check
/// of the decrypted bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_encrypted_bundles_fail_with_and_without_the_key() {
    let env = TestEnv::new().await;
    fixtures(&env);
    let keys = env.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (identity, recipient) = age_key(&keys, "ops.key");
    let id = identity.to_str().unwrap();
    let dest = Dest::Local(env.path().join("backups"));
    backup(&env, &dest, DAY1, &["--encrypt-to", &recipient])
        .await
        .expect_code(0);
    let key = dest.key(DAY1, "api.bundle.age");
    let good = dest.read(&key).await;
    let mut bad = good.clone();
    let last = bad.len() - 40;
    bad[last] ^= 0x55;
    dest.write(&key, bad, None).await;
    let run = dest.read_command(&env, "verify", &["--repo", "api"]).await;
    run.expect_code(5);
    assert!(run.stdout.contains("SHA-256 mismatch"), "{}", run.stdout);
    let target = env.path().join("out/api");
    let run = restore(&env, &dest, "api", &target, Some(&identity)).await;
    run.expect_code(5);
    assert!(run.stderr.contains("do not authenticate"), "{}", run.stderr);
    assert!(!target.exists());

    dest.write(&key, good, None).await;
    let mut manifest = dest.manifest(DAY1).await;
    crate::support::readback::entry_mut(&mut manifest, "api")["encryption"]["plaintext_sha256"] =
        "00".repeat(32).into();
    dest.write_manifest(DAY1, &manifest).await;
    dest.read_command(&env, "verify", &["--repo", "api"])
        .await
        .expect_code(0);
    let run = dest
        .read_command(&env, "verify", &["--repo", "api", "--identity", id])
        .await;
    run.expect_code(5);
    assert!(run.stdout.contains("SHA-256 mismatch"), "{}", run.stdout);

    // And with the plaintext hash right but the stored one edited, the decrypting read
    // still holds the stored bytes against the manifest.
    let mut manifest = dest.manifest(DAY1).await;
    let good_plain = {
        let dir = env.path().join("plain");
        std::fs::create_dir_all(&dir).unwrap();
        let plain = stock_decrypt(&dest, DAY1, "api", &identity, &dir).await;
        sha256_hex(&std::fs::read(plain).unwrap())
    };
    let e = crate::support::readback::entry_mut(&mut manifest, "api");
    e["encryption"]["plaintext_sha256"] = good_plain.into();
    e["sha256"] = "11".repeat(32).into();
    dest.write_manifest(DAY1, &manifest).await;
    let run = dest
        .read_command(&env, "verify", &["--repo", "api", "--identity", id])
        .await;
    run.expect_code(5);
    assert!(
        run.stdout.contains("SHA-256 mismatch") && run.stdout.contains(&"11".repeat(32)),
        "{}",
        run.stdout
    );

    // A plain bundle put in its place (manifest sizes and hashes fixed to match) is no
    // encrypted bundle, even to a check that holds no key.
    let impostor = dest.read(&dest.key(DAY1, "web.bundle.age")).await;
    let impostor = [b"# v2 git bundle\n".as_slice(), &impostor].concat();
    dest.write(&key, impostor.clone(), None).await;
    let mut manifest = dest.manifest(DAY1).await;
    crate::support::readback::fix_entry(
        crate::support::readback::entry_mut(&mut manifest, "api"),
        &impostor,
    );
    dest.write_manifest(DAY1, &manifest).await;
    let run = dest.read_command(&env, "verify", &["--repo", "api"]).await;
    run.expect_code(5);
    assert!(
        run.stdout.contains("not an age-encrypted file"),
        "{}",
        run.stdout
    );
}

/// SSH keys work both ways: an `ssh-ed25519` public key in an `--encrypt-to-file`, and the
/// private key as `--identity` and for stock `age -d -i`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_keys_from_a_recipients_file_encrypt_and_decrypt() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let keys = env.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (private, public) = ssh_key(&keys, "id_ed25519");
    let recipients = keys.join("recipients.txt");
    std::fs::write(
        &recipients,
        format!(
            "# the ops team\n{}\n",
            std::fs::read_to_string(&public).unwrap().trim()
        ),
    )
    .unwrap();
    let dest = Dest::Local(env.path().join("backups"));
    backup(
        &env,
        &dest,
        DAY1,
        &["--encrypt-to-file", recipients.to_str().unwrap()],
    )
    .await
    .expect_code(0);
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (source, _) = &sources["rich"];
    let plain = stock_decrypt(&dest, DAY1, "rich", &private, &work).await;
    let mirror = clone_mirror(&plain, &work.join("rich.git"));
    assert_eq!(show_refs(&mirror), show_refs(source));
    let target = work.join("restored");
    restore(&env, &dest, "rich", &target, Some(&private))
        .await
        .expect_code(0);
    assert_eq!(show_refs(&target), show_refs(source));
}

/// An incremental run reuses an earlier bundle only when it is encrypted as this run would
/// encrypt: switching encryption on, changing the keys or switching it off backs every
/// repository up afresh; the same keys (in another order, from a file) reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_encryption_forces_fresh_bundles() {
    let env = TestEnv::new().await;
    let sources = fixtures(&env);
    let keys = env.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (identity, r1) = age_key(&keys, "one.key");
    let (_, r2) = age_key(&keys, "two.key");
    let both = keys.join("both.txt");
    std::fs::write(&both, format!("{r2}\n{r1}\n")).unwrap();
    let s3 = TestS3::start().await;
    let dest = Dest::S3(&s3);
    let slugs: Vec<&String> = sources.keys().collect();
    let statuses = |m: &Value| -> Vec<String> { slugs.iter().map(|s| status(m, s)).collect() };
    let packs = || env.emu.stats().pack_requests;

    backup(&env, &dest, DAY1, &[]).await.expect_code(0);
    let before = packs();
    backup(
        &env,
        &dest,
        DAY2,
        &["--encrypt-to", &r1, "--encrypt-to", &r2],
    )
    .await
    .expect_code(0);
    let m2 = dest.manifest(DAY2).await;
    assert_eq!(
        statuses(&m2),
        ["ok", "ok", "ok"],
        "encryption switched on: fresh bundles"
    );
    assert_eq!(packs() - before, 3, "every repository was cloned again");
    for s in &slugs {
        assert!(
            entry(&m2, s)["key"]
                .as_str()
                .unwrap()
                .ends_with(".bundle.age")
        );
    }

    let before = packs();
    backup(
        &env,
        &dest,
        DAY3,
        &["--encrypt-to-file", both.to_str().unwrap()],
    )
    .await
    .expect_code(0);
    let m3 = dest.manifest(DAY3).await;
    assert_eq!(
        statuses(&m3),
        ["unchanged", "unchanged", "unchanged"],
        "same keys"
    );
    assert_eq!(packs(), before, "nothing cloned");
    assert_eq!(
        entry(&m3, "api")["encryption"],
        entry(&m2, "api")["encryption"]
    );
    // The copy is the same encrypted object, and still decrypts.
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let plain = stock_decrypt(&dest, DAY3, "api", &identity, &work).await;
    assert_eq!(
        sha256_hex(&std::fs::read(plain).unwrap()),
        entry(&m3, "api")["encryption"]["plaintext_sha256"]
            .as_str()
            .unwrap()
    );

    backup(&env, &dest, DAY4, &["--encrypt-to", &r1])
        .await
        .expect_code(0);
    let m4 = dest.manifest(DAY4).await;
    assert_eq!(
        statuses(&m4),
        ["ok", "ok", "ok"],
        "other recipients: fresh bundles"
    );
    assert_ne!(
        entry(&m4, "api")["encryption"]["recipients"],
        entry(&m3, "api")["encryption"]["recipients"]
    );

    backup(&env, &dest, "2026-11-28", &[]).await.expect_code(0);
    let m5 = dest.manifest("2026-11-28").await;
    assert_eq!(
        statuses(&m5),
        ["ok", "ok", "ok"],
        "encryption switched off: fresh bundles"
    );
    for s in &slugs {
        let e = entry(&m5, s);
        assert!(e["key"].as_str().unwrap().ends_with(".bundle"), "{e}");
        assert!(e.get("encryption").is_none(), "{e}");
    }
}
