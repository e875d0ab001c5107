//! `cacerts-sync sync` end to end: the real binary, the Key Vault emulator, the Kubernetes test server.

mod common;

use std::time::Duration;

use cacerts_testkit::keyvault::Fault as KvFault;
use cacerts_testkit::kube::{Fault as KubeFault, Rule};
use cacerts_testkit::pki::{IntermediateOpts, KeyKind, Validity};
use common::{Env, NS, fingerprint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_creates_cacerts_and_a_second_sync_writes_nothing() {
    let env = Env::start().await;
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);

    let first = env.sync(&[]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    env.assert_secret_holds(&ca);
    let secret = env.secret().unwrap();
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "cacerts-sync");
    let annotations = &secret["metadata"]["annotations"];
    assert_eq!(annotations["cacerts-sync.io/source"], env.kv.vault_url());
    assert_eq!(annotations["cacerts-sync.io/root-fingerprint"], fingerprint(&ca.root_cert));
    let versions = annotations["cacerts-sync.io/versions"].as_str().unwrap();
    let ca_key_version = env.kv.secret_versions("ca-key").pop().unwrap();
    assert!(versions.contains(&format!("ca-key={ca_key_version}")), "{versions}");
    assert!(annotations["cacerts-sync.io/synced-at"].is_string());
    let last_line = first.stderr.lines().last().unwrap();
    assert!(last_line.contains("sync finished") && last_line.contains("created"), "{last_line}");
    assert!(last_line.contains(&fingerprint(&ca.root_cert)), "{last_line}");

    let rv = env.secret_rv();
    let writes = env.kube.write_count();
    let second = env.sync(&[]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(env.secret_rv(), rv, "an unchanged sync must not write");
    assert!(second.stderr.lines().last().unwrap().contains("unchanged"));
    // Only Events may have been created; the Secret was not touched.
    assert_eq!(
        env.kube.request_count("PATCH", "/secrets/cacerts") + env.kube.request_count("PUT", "/secrets/cacerts"),
        0
    );
    let _ = writes;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_key_vault_gets_of_a_pass_run_concurrently_and_are_the_only_vault_reads() {
    let env = Env::start().await;
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    env.kv.reset_requests();
    // Hold the root-cert answer back. The tool asks for root-cert first; if the GETs ran one after another,
    // root-cert would be answered (and logged by the emulator) before the others were even sent.
    env.kv.inject_fault(KvFault::delay(Duration::from_secs(2)).path("/secrets/root-cert").method("GET").always());
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gets: Vec<String> = env
        .kv
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/secrets/") && r.authorized)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(gets.len(), 4, "one authorized GET per secret: {gets:?}");
    assert!(
        gets.last().unwrap().starts_with("/secrets/root-cert"),
        "the others finished while root-cert was held: {gets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_rotation_updates_cacerts() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    let first = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    env.upload(&first);
    assert_eq!(env.sync(&[]).await.code, 0);

    let second = env.pki.plugin_ca(&[&root], &env.pki.intermediate(&root, IntermediateOpts::with_key(KeyKind::EcSec1)));
    env.upload(&second);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.assert_secret_holds(&second);
    assert!(run.stderr.contains("cacerts updated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_rotation_is_waited_out_and_synced_once_it_heals() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    let old = env.synced(&[&root]).await;

    // The operator has set the new ca-cert, but not yet ca-key and cert-chain.
    let new = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    env.remember_key(&new.ca_key);
    env.kv.set_secret("ca-cert", &new.ca_cert);
    env.kv.reset_requests();
    let child = env.command(
        "workload-identity",
        &[
            "sync",
            "--vault-url",
            &env.kv.vault_url(),
            "--disable-challenge-resource-verification",
            "--consistency-timeout",
            "60s",
        ],
    );
    let running = tokio::spawn(async move {
        let mut child = child;
        child.output().await.unwrap()
    });
    // Once the tool has read the torn state at least twice, finish the rotation.
    wait_until(Duration::from_secs(30), || env.kv.request_count("GET", "/secrets/ca-cert") >= 4).await;
    assert_eq!(env.secret_value("ca-cert.pem"), old.ca_cert, "nothing is written while torn");
    env.kv.set_secret("ca-key", &new.ca_key);
    env.kv.set_secret("cert-chain", &new.cert_chain);
    let out = running.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    env.assert_no_key_bytes(&stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("half-finished rotation"), "{stderr}");
    env.assert_secret_holds(&new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_rotation_that_does_not_heal_exits_3_and_leaves_cacerts_untouched() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    env.synced(&[&root]).await;
    let rv = env.secret_rv();

    let new = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    env.kv.set_secret("ca-cert", &new.ca_cert);
    let run = env.sync(&["--consistency-timeout", "2s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("ca-key"), "the message names the mismatch: {}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
    assert!(!env.events("InvalidMaterial").is_empty(), "a Warning event is published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_material_exits_3_without_waiting() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    let expired = env.pki.intermediate(&root, IntermediateOpts { validity: Validity::Expired, ..Default::default() });
    env.upload(&env.pki.plugin_ca(&[&root], &expired));
    let run = env.sync(&["--consistency-timeout", "60s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(env.secret().is_none(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_one_secret_exits_4_and_leaves_cacerts_untouched() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    assert_eq!(env.sync(&[]).await.code, 0);
    let rv = env.secret_rv();
    env.kv.deny_secret("ca-key");
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("\"ca-key\""), "{}", run.stderr);
    assert!(run.stderr.contains("Key Vault Secrets User"), "the message says how to fix it: {}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_a_configuration_error() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let run = env.sync(&["--ca-key-name", "istio-ca-key"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("istio-ca-key") && run.stderr.contains("not found"), "{}", run.stderr);
    assert!(env.secret().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_honouring_retry_after_and_then_succeeds() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    env.kv.inject_fault(KvFault::status(429).times(2).retry_after(1).path("/secrets/root-cert"));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
    let throttled =
        env.kv.requests().iter().filter(|r| r.path.starts_with("/secrets/root-cert") && r.status == 429).count();
    assert_eq!(throttled, 2);
    env.assert_secret_holds(&ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_that_keeps_failing_with_5xx_exits_1_after_bounded_retries() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    assert_eq!(env.sync(&[]).await.code, 0);
    let rv = env.secret_rv();
    env.kv.reset_requests();
    env.kv.inject_fault(KvFault::status(503).path("/secrets/cert-chain").always());
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempts =
        env.kv.requests().iter().filter(|r| r.path.starts_with("/secrets/cert-chain") && r.status == 503).count();
    assert!((2..=4).contains(&attempts), "bounded retries, got {attempts}");
    assert_eq!(env.secret_rv(), rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_403_exits_4_and_a_persistent_409_exits_1() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    assert_eq!(env.sync(&[]).await.code, 0);
    let (_r2, ca2) = env.pki.valid_plugin_ca();
    env.upload(&ca2);
    let rv = env.secret_rv();

    // A Role that only grants get: the write is forbidden. (ca2 swaps root and intermediate in one step, which
    // the rotation time gates refuse: the override lets the pass reach the write.)
    let kubeconfig = env.limited_kubeconfig(
        "get-only",
        vec![Rule::new(&["get"], "", &["secrets"]), Rule::new(&["get", "list"], "apps", &["deployments"])],
    );
    let run = env.sync_as(&kubeconfig, &["--allow-unsafe-rotation"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("forbidden"), "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv);

    // Someone else writes the Secret every time we try: bounded conflict retries, then exit 1.
    env.kube.inject_fault(KubeFault::status(409).method("PATCH").path("/secrets/cacerts").times(100));
    let run = env.sync(&["--allow-unsafe-rotation"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_cacerts_is_adopted_and_no_adopt_refuses() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    let hand = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    let dir = env.path("hand");
    hand.write_dir(&dir).unwrap();
    std::fs::write(dir.join("extra.txt"), "keep me").unwrap();
    // Exactly what Istio's docs tell people to run.
    let status = std::process::Command::new("kubectl")
        .env("KUBECONFIG", env.kube.kubeconfig_path())
        .args(["create", "secret", "generic", "cacerts", "-n", NS])
        .args(
            ["root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem", "extra.txt"]
                .map(|f| format!("--from-file={}", dir.join(f).display())),
        )
        .status()
        .expect("kubectl runs");
    assert!(status.success());

    let new = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    env.upload(&new);
    let rv = env.secret_rv();
    let refused = env.sync(&["--no-adopt"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--no-adopt") && refused.stderr.contains("kubectl"),
        "says how to adopt: {}",
        refused.stderr
    );
    assert_eq!(env.secret_rv(), rv);

    let adopted = env.sync(&[]).await;
    assert_eq!(adopted.code, 0, "{}", adopted.stderr);
    env.assert_secret_holds(&new);
    assert_eq!(env.secret_value("extra.txt"), "keep me", "other keys are kept");
    assert!(adopted.stderr.contains("adopted"), "{}", adopted.stderr);
    assert!(!env.events("Adopted").is_empty());
    assert_eq!(env.secret().unwrap()["metadata"]["labels"]["app.kubernetes.io/managed-by"], "cacerts-sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cacerts_of_another_type_is_an_error_that_says_so() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}}),
    );
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("immutable"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_change_and_writes_nothing() {
    let env = Env::start().await;
    let root = env.pki.root_a();
    env.synced(&[&root]).await;
    let rv = env.secret_rv();
    let root_b = env.pki.root_b();
    let new = env.pki.plugin_ca(&[&root, &root_b], &env.pki.default_intermediate(&root));
    env.upload(&new);
    env.kube.reset_requests();
    let run = env.sync(&["--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
    let writes = env.kube.requests().iter().filter(|r| r.method != "GET" && !r.path.contains("/events")).count();
    assert_eq!(writes, 0, "dry run must not write");
    assert!(run.stdout.contains("root-cert.pem: would change"), "{}", run.stdout);
    assert!(run.stdout.contains("ca-key.pem: would change"), "{}", run.stdout);
    assert!(run.stdout.contains("Root B"), "new subjects are shown: {}", run.stdout);
    assert!(run.stdout.contains(&fingerprint(&new.root_cert)), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_service_principal_and_managed_identity_each_work_from_env_alone() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    for credential in ["workload-identity", "client-secret", "managed-identity"] {
        env.kube.delete("secrets", NS, "cacerts");
        let run = env.run_with(credential, "sync", &[]).await;
        assert_eq!(run.code, 0, "{credential}: {}", run.stderr);
        let expected = match credential {
            "workload-identity" => "workload identity",
            "client-secret" => "service principal",
            _ => "managed identity",
        };
        assert!(run.stderr.contains(expected), "{credential}: the log names the credential: {}", run.stderr);
        env.assert_secret_holds(&ca);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_exits_4_and_names_the_credential() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let mut cmd = env.command(
        "client-secret",
        &["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification"],
    );
    cmd.env("AZURE_CLIENT_SECRET", "not-the-secret");
    let run = env.output(cmd).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("service principal") && run.stderr.contains("AADSTS7000215"), "{}", run.stderr);
    assert!(!run.stderr.contains("not-the-secret"), "the client secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_vault_certificate_is_a_clear_configuration_error() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let other_ca = cacerts_testkit::tls::TestCa::new("someone else");
    let other = env.path("other-ca.pem");
    other_ca.write_cert(&other).unwrap();
    let mut cmd = env.command(
        "workload-identity",
        &["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification", "--timeout", "30s"],
    );
    cmd.env("SSL_CERT_FILE", &other);
    let run = env.output(cmd).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("SSL_CERT_FILE"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_a_directory_into_a_directory_needs_no_azure_and_no_cluster() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.remember_key(&ca.ca_key);
    let src = env.path("csi-mount");
    std::fs::create_dir_all(&src).unwrap();
    // The CSI driver mounts object names without an extension.
    for (name, value) in ca.vault_secrets() {
        std::fs::write(src.join(name), value).unwrap();
    }
    let out = env.path("out");
    let source = format!("dir:{}", src.display());
    let target = format!("dir:{}", out.display());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacerts-sync"));
    cmd.env_clear().args(["sync", "--source", &source, "--target", &target]);
    let run = env.output(cmd).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (file, value) in ca.secret_files() {
        assert_eq!(std::fs::read_to_string(out.join(file)).unwrap(), value);
    }
}

async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_key_vault_and_the_cluster_secret_and_prints_json() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let b = env.pki.root_b();
    let ca = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&ca);
    let run = env
        .run_with(
            "workload-identity",
            "inspect",
            &["--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification", "--output", "json"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(report["root_fingerprint"], fingerprint(&ca.root_cert));
    assert_eq!(report["root_count"], 2);
    assert_eq!(env.secret(), None, "inspect writes nothing");

    // The same material once it is in the cluster: --source secret:NAMESPACE/NAME.
    assert_eq!(env.sync(&[]).await.code, 0);
    let run = env.run_with("workload-identity", "inspect", &["--source", &format!("secret:{NS}/cacerts")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("x509 cert - Issuer: "), "{}", run.stdout);
    assert!(run.stdout.contains(&fingerprint(&ca.root_cert)), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_exits_3_on_torn_material_and_names_the_mismatch() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let ca = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    let other = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca);
    env.remember_key(&other.ca_key);
    env.kv.set_secret("ca-key", &other.ca_key);
    let run = env
        .run_with(
            "workload-identity",
            "inspect",
            &["--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification"],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.contains("ca-key"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_works_from_env_vars_alone_with_the_usual_boolean_spellings() {
    let env = Env::start().await;
    let out = env.path("out");
    let run_with = |dry_run: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacerts-sync"));
        cmd.env_clear()
            .env("CACERTS_SYNC_SOURCE", format!("dir:{}/examples/sample-ca", env!("CARGO_MANIFEST_DIR")))
            .env("CACERTS_SYNC_TARGET", format!("dir:{}", out.display()))
            .env("CACERTS_SYNC_DRY_RUN", dry_run)
            .env("CACERTS_SYNC_LOG_FORMAT", "json")
            .arg("sync");
        env.output(cmd)
    };
    for yes in ["yes", "1", "true"] {
        let run = run_with(yes).await;
        assert_eq!(run.code, 0, "{yes}: {}", run.stderr);
        assert!(!out.exists(), "CACERTS_SYNC_DRY_RUN={yes} is a dry run");
        let last: serde_json::Value = serde_json::from_str(run.stderr.lines().last().unwrap()).expect("JSON logs");
        assert_eq!(last["dry_run"], true);
    }
    let run = run_with("0").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(out.join("ca-cert.pem").exists(), "CACERTS_SYNC_DRY_RUN=0 writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_else_in_the_environment_auto_falls_back_to_the_azure_cli() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    // A stand-in `az` that behaves like `az account get-access-token`: it signs in to the emulator's Entra
    // endpoint as a developer's `az login` would have, and prints the CLI's JSON.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let az = bin.join("az");
    std::fs::write(
        &az,
        format!(
            r#"#!/bin/sh
case "$*" in *"account get-access-token"*) ;; *) echo "unexpected: $*" >&2; exit 2;; esac
token=$(curl -sf --cacert '{ca}' -d 'grant_type=client_credentials&client_id={client}&client_secret={secret}&scope=https%3A%2F%2Fvault.azure.net%2F.default' '{authority}/{tenant}/oauth2/v2.0/token' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
[ -n "$token" ] || exit 1
printf '{{"accessToken":"%s","expires_on":%s,"tokenType":"Bearer"}}\n' "$token" $(( $(date +%s) + 3600 ))
"#,
            ca = env.kv.ca_cert_file().display(),
            client = env.kv.client_id(),
            secret = env.kv.client_secret(),
            authority = env.kv.authority_host(),
            tenant = env.kv.tenant_id(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacerts-sync"));
    cmd.env_clear()
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("HOME", env.tmp.path())
        .env("KUBECONFIG", env.kube.kubeconfig_path())
        .env("SSL_CERT_FILE", env.kv.ca_cert_file())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .args(["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification"]);
    let run = env.output(cmd).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("azure cli"), "the log names the credential: {}", run.stderr);
    assert!(
        run.stderr.contains("AZURE_FEDERATED_TOKEN_FILE is not set"),
        "and why the others were skipped: {}",
        run.stderr
    );
    env.assert_secret_holds(&ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_jitter_logs_the_delay_then_syncs() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let run = env.sync(&["--jitter", "1s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.assert_secret_holds(&ca);
    let waiting = run.stderr.find("before the pass").unwrap_or_else(|| panic!("no jitter line: {}", run.stderr));
    let finished = run.stderr.find("sync finished").unwrap_or_else(|| panic!("no summary: {}", run.stderr));
    assert!(waiting < finished, "the delay is logged before the pass: {}", run.stderr);
    assert!(run.stderr.contains("up to --jitter"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_jitter_is_a_usage_error_before_any_request() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    env.kv.reset_requests();
    for bad in ["soon", "-5s", "10"] {
        let run = env.sync(&[&format!("--jitter={bad}")]).await;
        assert_eq!(run.code, 2, "--jitter={bad}: {}", run.stderr);
        assert!(run.stderr.contains("--jitter"), "the error names the flag: {}", run.stderr);
    }
    // The env var the chart and config.env use goes through the same parser.
    let mut cmd = env.command(
        "workload-identity",
        &["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification"],
    );
    cmd.env("CACERTS_SYNC_JITTER", "two minutes");
    let run = env.output(cmd).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(env.kv.request_count("GET", "/secrets/"), 0);
    assert!(env.secret().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_during_the_jitter_exits_143_without_reading_or_writing() {
    let env = Env::start().await;
    let (_r, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    env.kv.reset_requests();
    let log = env.path("sync.log");
    let mut cmd = env.command(
        "workload-identity",
        &["sync", "--vault-url", &env.kv.vault_url(), "--disable-challenge-resource-verification", "--jitter", "24h"],
    );
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    // The delay line comes once the signal handlers are in place.
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(60), || read().contains("before the pass")).await;
    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("ends promptly").unwrap();
    let stderr = read();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM: {stderr}");
    assert!(stderr.contains("stopped by SIGTERM during the jitter delay"), "{stderr}");
    assert!(!stderr.contains("sync finished"), "{stderr}");
    assert_eq!(env.kv.request_count("GET", "/secrets/"), 0, "nothing read");
    assert!(env.secret().is_none(), "nothing written");
}
