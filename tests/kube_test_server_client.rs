//! Fidelity tests of the Kubernetes API test server through kube-rs's typed `Api`: create/get/list with
//! selectors, the error statuses, replace, patches, server-side apply, RBAC, 401, Deployment generation,
//! delete and injected faults, checked against what a real kube-apiserver v1.32 gives
//! (`../shared/kube-api-facts.md`; kubectl's side is in `kube_test_server.rs`).

#[path = "kube_test_server/helpers.rs"]
mod helpers;

use cacerts_testkit::kube::{Fault, KubeTestServer, Rule};
use helpers::{CONFLICT_MSG, admin_client, api_error, b64, client_for, istiod, limited_kubeconfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_string());
    s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect());
    s
}

// ---------------------------------------------------------------------------------------------------------
// kube-rs typed Api

#[tokio::test]
async fn kube_client_creates_gets_and_lists_by_label_and_field_selector() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut s = secret("cacerts", &[("root-cert.pem", "pem")]);
    s.metadata.labels = Some([("app".to_string(), "istiod".to_string())].into());
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    secrets.create(&PostParams::default(), &secret("other", &[])).await.unwrap();

    let got = secrets.get("cacerts").await.unwrap();
    assert_eq!(got.data.unwrap()["root-cert.pem"].0, b"pem");
    let list = secrets.list(&ListParams::default().labels("app=istiod")).await.unwrap();
    assert_eq!(list.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["cacerts"]);
    let list = secrets.list(&ListParams::default().labels("app!=istiod")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("other"));
    let list = secrets.list(&ListParams::default().fields("metadata.name=other")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.metadata.resource_version, Some(server.resource_version().to_string()));
    let list = secrets.list(&ListParams::default().labels("app in (istiod,x),!missing")).await.unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn kube_client_sees_already_exists_not_found_and_missing_namespace_statuses() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let e = api_error(secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "secrets \"cacerts\" already exists");
    assert_eq!(e.details.as_ref().unwrap().kind, "secrets");

    let e = api_error(secrets.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "secrets \"nope\" not found"));

    let missing: Api<Secret> = Api::namespaced(client, "nons");
    let e = api_error(missing.get("cacerts").await.unwrap_err());
    assert_eq!(e.message, "secrets \"cacerts\" not found", "a GET does not mention the missing namespace");
    let e = api_error(missing.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"nons\" not found"));
    assert_eq!(e.details.unwrap().kind, "namespaces");
}

#[tokio::test]
async fn kube_client_replace_with_a_stale_resource_version_gets_conflict() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let first = secrets.create(&PostParams::default(), &secret("cacerts", &[("a", "1")])).await.unwrap();
    let mut newer = first.clone();
    newer.data = Some([("a".to_string(), ByteString(b"2".to_vec()))].into());
    let replaced = secrets.replace("cacerts", &PostParams::default(), &newer).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, first.metadata.resource_version);

    let e = api_error(secrets.replace("cacerts", &PostParams::default(), &first).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (409, "Conflict", CONFLICT_MSG));
    assert_eq!(secrets.get("cacerts").await.unwrap().data.unwrap()["a"].0, b"2");
}

#[tokio::test]
async fn kube_client_merge_patch_with_bad_base64_is_invalid_at_the_offending_byte() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let e = api_error(
        secrets
            .patch("cacerts", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "YWJj!"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.ends_with("illegal base64 data at input byte 4"), "{}", e.message);
    assert_eq!(e.details.unwrap().causes[0].field, "patch");
}

#[tokio::test]
async fn kube_client_server_side_apply_conflicts_without_force_and_takes_ownership_with_force() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets
        .create(
            &PostParams { field_manager: Some("curl".into()), ..Default::default() },
            &secret("cacerts", &[("root-cert.pem", "old")]),
        )
        .await
        .unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
                      "data": {"root-cert.pem": b64("new")}});
    let e = api_error(
        secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"curl\" using v1: .data.root-cert.pem");
    let cause = &e.details.unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".data.root-cert.pem"));

    let applied =
        secrets.patch("cacerts", &PatchParams::apply("cacerts-sync").force(), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(applied.data.unwrap()["root-cert.pem"].0, b"new");
    // Re-applying the same configuration (now owned) changes nothing: same resourceVersion.
    let again = secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(again.metadata.resource_version, applied.metadata.resource_version);
    // Dropping a key from the applied configuration removes it (it is owned by nobody else).
    let body2 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "labels": {"a": "b"}}});
    let pruned = secrets.patch("cacerts", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body2)).await.unwrap();
    assert!(pruned.data.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn kube_client_apply_creates_a_missing_object() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let leases: Api<Lease> = Api::namespaced(admin_client(&server).await, "istio-system");
    let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "cacerts-sync"},
                      "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}});
    let lease = leases.patch("cacerts-sync", &PatchParams::apply("cacerts-sync"), &Patch::Apply(&body)).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("pod-a"));
    let patched = leases
        .patch(
            "cacerts-sync",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"holderIdentity": null, "leaseTransitions": 1}})),
        )
        .await
        .unwrap();
    let spec = patched.spec.unwrap();
    assert_eq!((spec.holder_identity, spec.lease_transitions, spec.lease_duration_seconds), (None, Some(1), Some(15)));
}

#[tokio::test]
async fn kube_client_with_a_limited_token_gets_rbac_forbidden() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "other"}}));
    let dir = tempfile::tempdir().unwrap();
    let rules = vec![Rule::new(&["get", "patch", "list", "watch"], "", &["secrets"]).names(&["cacerts"])];
    let secrets: Api<Secret> =
        Api::namespaced(client_for(&limited_kubeconfig(&server, dir.path(), rules)).await, "istio-system");
    secrets.get("cacerts").await.unwrap();
    let e = api_error(secrets.get("other").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "secrets \"other\" is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot get resource \"secrets\" in API group \"\" in the namespace \"istio-system\""
    );
    let e = api_error(secrets.create(&PostParams::default(), &secret("new", &[])).await.unwrap_err());
    assert_eq!(
        e.message,
        "secrets is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot create resource \"secrets\" in API group \"\" in the namespace \"istio-system\""
    );
    // resourceNames limit a list only through a single-name field selector, as RBAC does.
    assert_eq!(api_error(secrets.list(&ListParams::default()).await.unwrap_err()).code, 403);
    assert_eq!(secrets.list(&ListParams::default().fields("metadata.name=cacerts")).await.unwrap().items.len(), 1);
    let deployments: Api<Deployment> = Api::namespaced(secrets.clone().into_client(), "istio-system");
    let e = api_error(deployments.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        e.message,
        "deployments.apps is forbidden: User \"system:serviceaccount:istio-system:syncer\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"istio-system\""
    );
}

#[tokio::test]
async fn kube_client_with_an_unknown_token_gets_unauthorized() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    server.write_kubeconfig(&kc, "wrong").unwrap();
    let secrets: Api<Secret> = Api::namespaced(client_for(&kc).await, "istio-system");
    let e = api_error(secrets.get("cacerts").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (401, "Unauthorized", "Unauthorized"));
}

#[tokio::test]
async fn kube_client_restart_bumps_generation_but_a_metadata_patch_does_not() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let d = deployments.restart("istiod").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    let d = deployments
        .patch("istiod", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.and_then(|s| s.observed_generation), None, "auto-rollout is off");

    server.set_deployment_status(
        "istio-system",
        "istiod",
        json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
    );
    let status = deployments.get("istiod").await.unwrap().status.unwrap();
    assert_eq!((status.observed_generation, status.updated_replicas), (Some(2), Some(1)));
    let list = deployments.list(&ListParams::default().labels("app=istiod")).await.unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn kube_client_delete_returns_success_and_a_second_delete_is_not_found() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    let gone = secrets.delete("cacerts", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_right(), "Secrets are deleted with a Success Status");
    assert!(server.get("secrets", "istio-system", "cacerts").is_none());
    assert_eq!(api_error(secrets.delete("cacerts", &DeleteParams::default()).await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn injected_faults_fail_the_matching_requests_the_given_number_of_times() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    secrets.create(&PostParams::default(), &secret("cacerts", &[])).await.unwrap();
    server.inject_fault(Fault::status(409).times(1).method("PATCH").path("/secrets/cacerts"));
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    let e = api_error(secrets.patch("cacerts", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (409, CONFLICT_MSG));
    secrets.patch("cacerts", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(server.request_count("PATCH", "/secrets/cacerts"), 2);
    assert_eq!(server.write_count(), 2, "the create and the second patch");

    server.inject_fault(Fault::status(500).path("/secrets"));
    let e = api_error(secrets.get("cacerts").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    server.clear_faults();
    secrets.get("cacerts").await.unwrap();

    // kube 5's client retries 503/429/504 by itself, so a short outage is invisible to the caller.
    server.reset_requests();
    server.inject_fault(Fault::status(503).times(2).method("GET").path("/secrets/cacerts"));
    secrets.get("cacerts").await.unwrap();
    assert_eq!(server.request_count("GET", "/secrets/cacerts"), 3);
}
