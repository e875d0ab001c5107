//! Adopting a `cacerts` Secret that cacerts-sync did not create: the real binary against the test server.
//!
//! The rules (docs/how-it-works.md, "First contact"): identical content is never an error, even under
//! `--no-adopt`; the first pass over an adopted Secret labels it even when nothing else changes; a Secret that
//! holds the `kubernetes.io/tls` keys istiod prefers (`tls.crt`, `tls.key`, `ca.crt`) is refused, nothing is
//! written, and a Warning Event says why.

mod common;

use base64::Engine as _;
use cacerts_testkit::pki::PluginCa;
use common::{Env, NS};
use serde_json::{Value, json};

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Events with `reason` (the test server shows each one through both Event APIs; count it once).
fn events(env: &Env, reason: &str) -> Vec<Value> {
    env.events(reason).into_iter().filter(|e| e["apiVersion"] == "events.k8s.io/v1").collect()
}

/// A hand-made Opaque `cacerts` (as `kubectl create secret generic --from-file` makes it) with `extra` keys.
fn hand_made(env: &Env, ca: &PluginCa, extra: &[(&str, &str)]) {
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let mut data: serde_json::Map<String, Value> =
        ca.secret_files().into_iter().map(|(k, v)| (k.into(), b64(v).into())).collect();
    for (k, v) in extra {
        data.insert(k.to_string(), b64(v).into());
    }
    env.kube.create(
        "secrets",
        NS,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS}, "type": "Opaque", "data": data}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_under_no_adopt_is_fine_and_writes_nothing() {
    let env = Env::start().await;
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    hand_made(&env, &ca, &[]);
    let rv = env.secret_rv();
    let writes = env.kube.write_count();

    let run = env.sync(&["--no-adopt"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.lines().last().unwrap().contains("unchanged"), "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv, "nothing written");
    assert_eq!(env.kube.write_count(), writes, "no request wrote anything");
    assert!(env.secret().unwrap()["metadata"]["labels"][MANAGED_BY].is_null(), "--no-adopt never labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_secret_is_labeled_on_its_first_unchanged_pass() {
    let env = Env::start().await;
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    hand_made(&env, &ca, &[("extra.txt", "keep me")]);

    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let secret = env.secret().unwrap();
    assert_eq!(secret["metadata"]["labels"][MANAGED_BY], "cacerts-sync", "labeled on the first pass");
    assert!(secret["metadata"]["annotations"]["cacerts-sync.io/root-fingerprint"].is_string());
    env.assert_secret_holds(&ca);
    assert_eq!(env.secret_value("extra.txt"), "keep me");
    assert_eq!(events(&env, "Adopted").len(), 1, "one Adopted event");

    // From now on it is ours: the next pass writes nothing at all.
    let rv = env.secret_rv();
    let run = env.sync(&["--no-adopt"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
    assert_eq!(events(&env, "Adopted").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cacerts_holding_the_tls_keys_istiod_prefers_is_refused_with_a_warning() {
    let env = Env::start().await;
    let (root, old) = env.pki.valid_plugin_ca();
    hand_made(&env, &old, &[("tls.crt", &old.ca_cert), ("tls.key", &old.ca_key), ("ca.crt", &old.root_cert)]);
    env.remember_key(&old.ca_key);
    // A new intermediate under the root already in cacerts: a change to write, but not a rotation step the time
    // gates judge unsafe (a cacerts without history counts its roots as propagated, and no root is dropped). This
    // test is about the tls.* refusal, which must come from the target Secret, not from the gates.
    let new = env.pki.plugin_ca(&[&root], &env.pki.default_intermediate(&root));
    env.upload(&new);
    let before = env.secret().unwrap();

    let run = env.sync(&[]).await;
    assert_eq!(run.code, 3, "a refused change: {}", run.stderr);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.contains("tls.crt, tls.key, ca.crt") && last.contains("istiod"), "{last}");
    assert!(last.contains(r#""op":"remove","path":"/data/tls.crt""#), "says how to fix it: {last}");
    assert_eq!(env.secret().unwrap(), before, "nothing written");
    let warnings = events(&env, "SyncFailed");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let note = warnings[0]["note"].as_str().unwrap();
    assert!(note.contains("tls.crt"), "{note}");
    env.assert_no_key_bytes(&warnings[0].to_string());

    // Once the operator removes them, the next pass adopts and syncs.
    let mut secret = env.secret().unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        secret["data"].as_object_mut().unwrap().remove(key);
    }
    env.kube.update("secrets", NS, secret);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.assert_secret_holds(&new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_cacerts_that_gains_tls_crt_later_is_refused_too() {
    let env = Env::start().await;
    let (_root, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    assert_eq!(env.sync(&[]).await.code, 0);
    let mut secret = env.secret().unwrap();
    secret["data"]["tls.crt"] = base64::engine::general_purpose::STANDARD.encode(&ca.ca_cert).into();
    env.kube.update("secrets", NS, secret);
    let rv = env.secret_rv();

    let run = env.sync(&[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.lines().last().unwrap().contains("tls.crt"), "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv);
}
