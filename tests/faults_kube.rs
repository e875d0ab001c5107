//! Fault matrix, Kubernetes: the real binary against the Kubernetes API test server (which answers as a real
//! kube-apiserver does, see `tests/testkit/src/kube.rs`) with one fault per case: 401, 403 on each verb the
//! tool uses, 409 storms, 422 (with the Secret data echoed, as the apiserver does), 500, an apiserver failing
//! mid-pass, a missing namespace, a `cacerts` of another type. The runner and what every case asserts:
//! `tests/faults/mod.rs`. The table of outcomes: `docs/faults.md`.

mod common;
mod faults;

use cacerts_testkit::kube::{Fault, Rule};
use common::NS;
use faults::{Cacerts, Case, Start};
use serde_json::json;

const ROTATED: [i64; 2] = [1, 1];

/// What the shipped Role grants (jobs/role.yaml), without the rules `drop` names (`"verb resource"`).
fn role_without(drop: &str) -> Vec<Rule> {
    let all: [(&str, &str, &str, bool); 8] = [
        ("get", "", "secrets", true),
        ("patch", "", "secrets", true),
        ("create", "", "secrets", false),
        ("get", "apps", "deployments", false),
        ("list", "apps", "deployments", false),
        ("patch", "apps", "deployments", false),
        ("create", "events.k8s.io", "events", false),
        ("patch", "events.k8s.io", "events", false),
    ];
    all.into_iter()
        .filter(|(verb, _, resource, _)| format!("{verb} {resource}") != drop)
        .map(|(verb, group, resource, named)| {
            let rule = Rule::new(&[verb], group, &[resource]);
            if named { rule.names(&["cacerts"]) } else { rule }
        })
        .collect()
}

static CASES: &[Case] = &[
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(401)),
        exit: 4,
        message: "Unauthorized",
        ..Case::new("kube_401_on_every_request", "the API server answers 401 to everything", Start::Rotation)
    },
    Case {
        rules: Some(|| role_without("get secrets")),
        exit: 4,
        message: "forbidden",
        ..Case::new("kube_403_get_secret", "RBAC: no get on secrets", Start::Rotation)
    },
    Case {
        rules: Some(|| role_without("patch secrets")),
        exit: 4,
        message: "cannot patch resource \\\"secrets\\\"",
        ..Case::new("kube_403_patch_secret", "RBAC: no patch on secrets", Start::Rotation)
    },
    Case {
        rules: Some(|| role_without("create secrets")),
        exit: 4,
        message: "cannot create resource \\\"secrets\\\"",
        cacerts: Cacerts::Absent,
        ..Case::new("kube_403_create_secret", "RBAC: no create on secrets (first sync)", Start::Fresh)
    },
    Case {
        rules: Some(|| role_without("list deployments")),
        // Before a root change is written, the roots istiod runs are pinned (which lists them): refused, so
        // the new root isn't written either.
        exit: 4,
        message: "cannot list resource \\\"deployments\\\"",
        ..Case::new("kube_403_list_deployments", "RBAC: no list on deployments", Start::Rotation)
    },
    Case {
        rules: Some(|| role_without("patch deployments")),
        exit: 4,
        message: "cannot patch resource \\\"deployments\\\"",
        cacerts: Cacerts::New,
        ..Case::new("kube_403_patch_deployment", "RBAC: no patch on deployments (restart refused)", Start::Rotation)
    },
    Case {
        rules: Some(|| role_without("create events")),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kube_403_create_event", "RBAC: no create on events (events are best effort)", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(409).method("PATCH").path("/secrets/cacerts").times(1)),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kube_409_once_on_the_secret", "one 409 Conflict on the Secret patch, then OK", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(409).method("PATCH").path("/secrets/cacerts").times(100)),
        exit: 1,
        message: "it kept changing under us",
        ..Case::new("kube_409_storm_on_the_secret", "409 Conflict on every Secret patch", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(409).method("POST").path("/secrets").times(100)),
        exit: 1,
        message: "it kept changing under us",
        cacerts: Cacerts::Absent,
        ..Case::new("kube_409_storm_on_create", "409 AlreadyExists on every create", Start::Fresh)
    },
    Case {
        before: |env, _| {
            env.kube.inject_fault(Fault::status(409).method("PATCH").path("/deployments/istiod-canary").times(100))
        },
        exit: 1,
        message: "istiod-canary",
        cacerts: Cacerts::New,
        rollouts: [1, 0],
        ..Case::new("kube_409_storm_on_a_deployment", "409 Conflict on every patch of one revision", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::corrupt_data("root-cert.pem").method("PATCH")),
        exit: 2,
        message: "illegal base64 data",
        ..Case::new(
            "kube_422_echoing_the_key",
            "422 Invalid whose message echoes the merged Secret, private key included",
            Start::Rotation,
        )
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(500).method("GET").path("/secrets/cacerts").times(100)),
        exit: 1,
        message: "get secret istio-system/cacerts",
        ..Case::new("kube_500_on_get_secret", "500 on every GET of the Secret", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(500).method("PATCH").path("/secrets/cacerts").times(100)),
        exit: 1,
        message: "patch secret istio-system/cacerts",
        ..Case::new("kube_500_on_patch_secret", "500 on every patch of the Secret", Start::Rotation)
    },
    Case {
        before: |env, _| env.kube.inject_fault(Fault::status(503).method("GET").path("/secrets/cacerts").times(2)),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kube_503_burst", "503 twice on the Secret GET (kube-rs retries), then OK", Start::Rotation)
    },
    Case {
        // Deterministic stand-in for "the apiserver goes down right after the Secret write": from the write on,
        // every request that changes a Deployment fails (reads before the write, which pin the running roots,
        // went through). The rerun that converges is in tests/faults_process.rs.
        before: |env, _| env.kube.inject_fault(Fault::status(500).method("PATCH").path("/deployments/")),
        exit: 1,
        message: "an error on the server",
        cacerts: Cacerts::New,
        rollouts: [0, 0],
        ..Case::new(
            "kube_apiserver_down_mid_pass",
            "the API server fails every write after the Secret write (500 on the restarts)",
            Start::Rotation,
        )
    },
    Case {
        args: &["--namespace", "no-such-namespace"],
        exit: 2,
        message: "namespaces \\\"no-such-namespace\\\" not found",
        cacerts: Cacerts::Absent,
        ..Case::new("kube_namespace_missing", "--namespace names a namespace that doesn't exist", Start::Fresh)
    },
    Case {
        before: |env, _| {
            env.kube.delete("secrets", NS, "cacerts");
            env.kube.create(
                "secrets",
                NS,
                json!({"metadata": {"name": "cacerts"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            );
        },
        exit: 2,
        message: "must be Opaque; a Secret's type is immutable",
        ..Case::new("kube_secret_of_another_type", "cacerts is a kubernetes.io/tls Secret", Start::Rotation)
    },
];

fault_cases!(CASES:
    kube_401_on_every_request,
    kube_403_get_secret,
    kube_403_patch_secret,
    kube_403_create_secret,
    kube_403_list_deployments,
    kube_403_patch_deployment,
    kube_403_create_event,
    kube_409_once_on_the_secret,
    kube_409_storm_on_the_secret,
    kube_409_storm_on_create,
    kube_409_storm_on_a_deployment,
    kube_422_echoing_the_key,
    kube_500_on_get_secret,
    kube_500_on_patch_secret,
    kube_503_burst,
    kube_apiserver_down_mid_pass,
    kube_namespace_missing,
    kube_secret_of_another_type,
);

/// The 422 case is only meaningful if the server really echoes the key: send the same corrupted patch with a
/// plain HTTP client and look for the key's data in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_422_really_echoes_the_private_key_so_only_redaction_keeps_it_out() {
    use base64::Engine as _;
    let env = common::Env::start().await;
    let ca = env.synced(&[&env.pki.root_a()]).await;
    let key_data = base64::engine::general_purpose::STANDARD.encode(&ca.ca_key);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(env.kube.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client
        .patch(format!("{}/api/v1/namespaces/{NS}/secrets/cacerts", env.kube.url()))
        .bearer_auth(env.kube.admin_token())
        .header("content-type", "application/merge-patch+json")
        .body(json!({"data": {"root-cert.pem": "*not base64*"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "Invalid");
    assert!(body["message"].as_str().unwrap().contains(&key_data), "the apiserver's 422 carries ca-key.pem");
}
