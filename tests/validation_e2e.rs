//! istiod's start-up check end to end, with the real binary against the test servers:
//! - `check-root` validates the whole `cacerts` before it restarts anything: material istiod would refuse
//!   (torn or invalid) exits 3 with a Warning Event on the Secret, restarts nothing and records no
//!   fingerprint, so that a later fix still restarts istiod;
//! - `sync` waits out only a torn upload: a finding no re-read can fix exits 3 at once.

mod common;

use base64::Engine as _;
use cacerts_testkit::pki::IntermediateOpts;
use common::{Env, NS, fingerprint};

const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

/// Replaces some keys of the `cacerts` Secret, as another writer would.
fn put(env: &Env, values: &[(&str, &str)]) {
    let mut secret = env.secret().expect("cacerts exists");
    for (key, value) in values {
        secret["data"][*key] = base64::engine::general_purpose::STANDARD.encode(value).into();
    }
    env.kube.update("secrets", NS, secret);
}

/// InvalidMaterial Events about the Secret (the events.k8s.io/v1 view; core/v1 lists the same events again).
fn invalid_material_events(env: &Env) -> Vec<serde_json::Value> {
    env.events("InvalidMaterial").into_iter().filter(|e| e["regarding"]["name"] == "cacerts").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_root_refuses_torn_or_invalid_cacerts_without_restarting_or_recording() {
    let env = Env::start().await;
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
    let a = env.pki.root_a();
    let ca = env.synced(&[&a]).await;
    let before = generations(&env);
    let recorded = fingerprint(&ca.root_cert);

    // Torn: another writer put root B alone into cacerts, but ca-cert is still A's intermediate. Restarting
    // istiod now would crash it at start-up.
    let b = env.pki.root_b();
    put(&env, &[("root-cert.pem", &b.cert_pem)]);
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("istiod would refuse this: x509: certificate signed by unknown authority"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing restarted"), "{}", run.stderr);
    assert_eq!(generations(&env), before, "no restart into material istiod refuses");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(recorded.as_str()), "no fingerprint recorded");
    }
    let events = invalid_material_events(&env);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["regarding"]["kind"], "Secret");
    assert_eq!(events[0]["regarding"]["name"], "cacerts");
    assert!(events[0]["note"].as_str().unwrap_or_default().contains("unknown authority"), "{events:?}");

    // Invalid: a consistent intermediate of B, but its key is PKCS#8 under an EC PRIVATE KEY label, which
    // istiod's key parser refuses.
    let inter_b = env.pki.intermediate(&b, IntermediateOpts::default());
    let ca_b = env.pki.plugin_ca(&[&b], &inter_b);
    let mislabelled = ca_b.ca_key.replace("PRIVATE KEY-----", "EC PRIVATE KEY-----");
    put(&env, &[("ca-cert.pem", &ca_b.ca_cert), ("ca-key.pem", &mislabelled), ("cert-chain.pem", &ca_b.cert_chain)]);
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("ParsePKCS8PrivateKey"), "{}", run.stderr);
    assert!(!run.stderr.contains(mislabelled.lines().nth(1).unwrap_or("-")), "no key bytes in the output");
    assert_eq!(generations(&env), before);
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(recorded.as_str()));
    }
    assert_eq!(invalid_material_events(&env).len(), 2);

    // Fixed: the same root change now restarts every revision exactly once.
    put(&env, &[("ca-key.pem", &ca_b.ca_key)]);
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>());
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ca_b.root_cert).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_finding_exits_3_at_once_even_while_the_upload_looks_torn() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    let rv = env.secret_rv();

    // Half an upload (new ca-cert, old cert-chain: torn), and the new key under the wrong label (permanent).
    let next = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.kv.set_secret("ca-cert", &next.ca_cert);
    env.kv.set_secret("ca-key", &next.ca_key.replace("PRIVATE KEY-----", "EC PRIVATE KEY-----"));
    env.remember_key(&next.ca_key);
    let run = env.sync(&["--consistency-timeout", "60s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("ParsePKCS8PrivateKey"), "istiod's reason: {}", run.stderr);
    assert!(!run.stderr.contains("re-reading the source"), "no wait for a finding no re-read can fix: {}", run.stderr);
    assert_eq!(env.secret_rv(), rv, "nothing written");

    // Torn alone (the old key back, ca-cert still the new one) is re-read until the short timeout passes.
    env.kv.set_secret("ca-key", &env.secret_value("ca-key.pem"));
    let run = env.sync(&["--consistency-timeout", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("re-reading the source"), "a torn upload is re-read: {}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
}
