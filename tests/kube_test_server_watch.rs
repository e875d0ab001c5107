//! Fidelity tests of the Kubernetes API test server's watches, and of what controllers build on its API: watch
//! streams (from a resourceVersion, synthetic ADDED, 410 Expired, bookmarks), kube-rs's `watcher` (with and
//! without streaming lists), the event recorder, Event validation, a lease manager, Deployment generation and
//! the simulated istiod (see `kube_test_server.rs`).

#[path = "kube_test_server/helpers.rs"]
mod helpers;

use std::time::Duration;

use cacerts_testkit::kube::KubeTestServer;
use futures::{StreamExt, TryStreamExt};
use helpers::{admin_client, api_error, istiod};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------
// watches

#[tokio::test]
async fn api_watch_from_a_resource_version_streams_added_modified_and_deleted() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    server.create("secrets", "istio-system", json!({"metadata": {"name": "before"}}));
    let rv = server.resource_version().to_string();
    let mut stream = secrets.watch(&WatchParams::default().fields("metadata.name=cacerts"), &rv).await.unwrap().boxed();
    server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "unrelated"}}));
    server.update("secrets", "istio-system", json!({"metadata": {"name": "cacerts", "labels": {"x": "y"}}}));
    server.delete("secrets", "istio-system", "cacerts");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(s) => seen.push(("ADDED", s.metadata.name.unwrap())),
            WatchEvent::Modified(s) => seen.push(("MODIFIED", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(("DELETED", s.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let names: Vec<(&str, &str)> = seen.iter().map(|(t, n)| (*t, n.as_str())).collect();
    assert_eq!(names, [("ADDED", "cacerts"), ("MODIFIED", "cacerts"), ("DELETED", "cacerts")]);
}

#[tokio::test]
async fn api_watch_without_resource_version_starts_with_synthetic_added_events() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.create("secrets", "istio-system", json!({"metadata": {"name": "a"}}));
    server.create("secrets", "istio-system", json!({"metadata": {"name": "b"}}));
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    for want in ["a", "b"] {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some(want)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn api_watch_from_a_compacted_resource_version_gets_410_expired() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let old = server.resource_version().to_string();
    server.create("secrets", "istio-system", json!({"metadata": {"name": "a"}}));
    server.compact();
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = secrets.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version: "), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn api_watch_with_bookmarks_allowed_receives_bookmarks() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_bookmark_interval(Duration::from_millis(50));
    let secrets: Api<Secret> = Api::namespaced(admin_client(&server).await, "istio-system");
    let rv = server.resource_version().to_string();
    let mut stream = secrets.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("unexpected {other:?}"),
    }
}

async fn watcher_sees_lifecycle(config: watcher::Config) -> Vec<String> {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    // No simulated controller: its status write would be one more (timing-dependent) event.
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let mut stream = watcher(deployments, config.labels("app=istiod")).boxed();
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Init => seen.push("Init".to_string()),
            watcher::Event::InitApply(d) => seen.push(format!("InitApply {}", d.metadata.name.unwrap())),
            watcher::Event::InitDone => {
                seen.push("InitDone".into());
                server.create("deployments", "istio-system", istiod("istiod-canary"));
                server.delete("deployments", "istio-system", "istiod");
            }
            watcher::Event::Apply(d) => seen.push(format!("Apply {}", d.metadata.name.unwrap())),
            watcher::Event::Delete(d) => {
                seen.push(format!("Delete {}", d.metadata.name.unwrap()));
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn runtime_watcher_lists_then_sees_apply_and_delete() {
    let seen = watcher_sees_lifecycle(watcher::Config::default()).await;
    assert_eq!(seen, ["Init", "InitApply istiod", "InitDone", "Apply istiod-canary", "Delete istiod"]);
}

#[tokio::test]
async fn runtime_watcher_with_streaming_lists_gets_initial_events_and_the_end_bookmark() {
    let seen = watcher_sees_lifecycle(watcher::Config::default().streaming_lists()).await;
    assert_eq!(seen, ["Init", "InitApply istiod", "InitDone", "Apply istiod-canary", "Delete istiod"]);
}

#[tokio::test]
async fn events_published_through_events_k8s_io_are_stored_as_core_events() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let recorder = Recorder::new(client, Reporter { controller: "cacerts-sync".into(), instance: None });
    let reference = cacerts_ref();
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("cacerts updated".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.list("events", "istio-system");
    assert_eq!(events.len(), 1, "the second publish patches the series");
    let e = &events[0];
    assert_eq!((e["apiVersion"].as_str(), e["message"].as_str()), (Some("v1"), Some("cacerts updated")));
    assert_eq!(e["reportingComponent"], "cacerts-sync");
    assert_eq!(e["involvedObject"]["name"], "cacerts");
    assert_eq!(e["series"]["count"], 2);
    let v1 = server.list("events.events.k8s.io", "istio-system");
    assert_eq!(
        (v1[0]["note"].as_str(), v1[0]["reportingController"].as_str()),
        (Some("cacerts updated"), Some("cacerts-sync"))
    );
}

#[tokio::test]
async fn kube_lease_manager_acquires_releases_and_hands_over_the_lease() {
    use kube_lease_manager::LeaseManagerBuilder;
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let manager = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "cacerts-sync")
            .with_namespace("istio-system")
            .with_identity(id)
            .with_duration(15)
            .with_field_manager("cacerts-sync")
            .build()
    };
    let a = manager("pod-a").await.unwrap();
    let b = manager("pod-b").await.unwrap();
    assert!(a.changed().await.unwrap(), "pod-a becomes leader");
    let lease = server.get("leases", "istio-system", "cacerts-sync").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    a.release().await.unwrap();
    assert!(server.get("leases", "istio-system", "cacerts-sync").unwrap()["spec"].get("holderIdentity").is_none());
    assert!(b.changed().await.unwrap(), "pod-b takes the released lease");
    let lease = server.get("leases", "istio-system", "cacerts-sync").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "one per acquisition");
}

#[tokio::test]
async fn events_are_validated_like_the_apiserver_does() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    let client = admin_client(&server).await;
    let reference = cacerts_ref();
    // A note longer than 1024 bytes is rejected (events.k8s.io validates `note` as the core `message`).
    let recorder = Recorder::new(client.clone(), Reporter { controller: "cacerts-sync".into(), instance: None });
    let long = Event {
        type_: EventType::Warning,
        reason: "SyncFailed".into(),
        note: Some("x".repeat(1025)),
        action: "Sync".into(),
        secondary: None,
    };
    let e = api_error(recorder.publish(&long, &reference).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.starts_with("Event.events.k8s.io "), "{}", e.message);
    assert!(
        e.message.ends_with("is invalid: message: Invalid value: \"\": can have at most 1024 characters"),
        "{}",
        e.message
    );

    // A core/v1 Event with eventTime must name its reporting component and instance, action and reason.
    let events: Api<CoreEvent> = Api::namespaced(client, "istio-system");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "cacerts.1"},
        "involvedObject": {"kind": "Secret", "name": "cacerts", "namespace": "istio-system"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Synced", "message": "cacerts updated", "type": "Normal", "action": "Sync",
        "reportingComponent": "cacerts-sync"
    }))
    .unwrap();
    let e = api_error(events.create(&PostParams::default(), &ev).await.unwrap_err());
    assert_eq!(e.message, "Event \"cacerts.1\" is invalid: reportingInstance: Required value");
    let mut ev = ev;
    ev.reporting_instance = Some("pod-a".into());
    events.create(&PostParams::default(), &ev).await.unwrap();
}

/// `metadata.generation` of a Deployment as kube-api-facts.md records it (measured on v1.32): +1 on every
/// change to `spec` (scale, pod template), none for metadata-only changes, status writes or no-op patches.
/// (Upstream's `deploymentStrategy.PrepareForUpdate` also bumps on `metadata.annotations` changes; that
/// disagreement is reported to the lead rather than silently changed here, since every rollout assertion of
/// the suite rests on this rule.)
#[tokio::test]
async fn deployment_generation_moves_by_one_per_spec_change_and_never_otherwise() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.set_auto_rollout(None);
    server.create("deployments", "istio-system", istiod("istiod"));
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    let generation = async || deployments.get("istiod").await.unwrap().metadata.generation.unwrap();
    let merge = async |v: Value| {
        deployments.patch("istiod", &PatchParams::default(), &Patch::Merge(v)).await.unwrap();
    };
    assert_eq!(generation().await, 1);
    merge(json!({"spec": {"replicas": 3}})).await;
    assert_eq!(generation().await, 2, "scale");
    merge(json!({"spec": {"template": {"metadata": {"annotations": {"a": "1"}}}}})).await;
    assert_eq!(generation().await, 3, "pod-template annotation");
    merge(json!({"spec": {"template": {"metadata": {"annotations": {"a": "1"}}}}})).await;
    assert_eq!(generation().await, 3, "the same value again changes nothing");
    merge(json!({"metadata": {"labels": {"l": "x"}, "annotations": {"cacerts-sync.io/root-fingerprint": "none"}}}))
        .await;
    assert_eq!(generation().await, 3, "metadata only");
    server.set_deployment_status("istio-system", "istiod", json!({"observedGeneration": 3}));
    assert_eq!(generation().await, 3, "status");
}

#[tokio::test]
async fn a_simulated_istiod_publishes_cacerts_roots_after_a_rollout_and_its_own_ca_without_cacerts() {
    let server = KubeTestServer::start_seeded(&["istio-system"]).await;
    server.simulate_istiod_roots(true);
    server.set_auto_rollout(Some(Duration::from_millis(50)));
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin_client(&server).await, "istio-system");
    let published = async || {
        configmaps.get_opt("istio-ca-root-cert").await.unwrap().and_then(|c| c.data?.get("root-cert.pem").cloned())
    };
    server.create("deployments", "istio-system", istiod("istiod"));
    let mut self_signed = None;
    for _ in 0..100 {
        self_signed = published().await;
        if self_signed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let self_signed = self_signed.expect("istiod without cacerts publishes its self-signed root");
    assert!(self_signed.contains("BEGIN CERTIFICATE"));

    let root = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    server.create(
        "secrets",
        "istio-system",
        json!({"metadata": {"name": "cacerts"}, "stringData": {"root-cert.pem": root}}),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(published().await, Some(self_signed), "running pods never notice a new cacerts");
    let deployments: Api<Deployment> = Api::namespaced(admin_client(&server).await, "istio-system");
    deployments.restart("istiod").await.unwrap();
    let mut now = None;
    for _ in 0..100 {
        now = published().await;
        if now.as_deref() == Some(root) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(now.as_deref(), Some(root), "restarted pods publish cacerts' root-cert.pem");
}

/// The `cacerts` Secret in istio-system, as Events refer to it.
fn cacerts_ref() -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some("cacerts".into()),
        namespace: Some("istio-system".into()),
        ..Default::default()
    }
}
