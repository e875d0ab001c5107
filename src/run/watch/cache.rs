//! Watch mode's view of Kubernetes: a watch on the one `cacerts` Secret, on the istiod Deployments and on the
//! ConfigMap `istio-ca-root-cert` istiod publishes its roots in, each feeding a reflector store, so a pass
//! reads the cluster from memory instead of polling.
//!
//! Costs and permissions: after the initial LIST of each, the API server pushes changes over long-lived
//! watches (`secrets` with `fieldSelector=metadata.name=<secret>`, `deployments` with the istiod label
//! selector, or one watch per `--istiod-deployment` with `fieldSelector=metadata.name=<name>`). That needs
//! `list` and `watch` on both; a watch by field selector on the name is authorized by a Role rule with
//! `resourceNames`, so named Deployments need no rule on every Deployment. The ConfigMap watch (`configmaps` with
//! `fieldSelector=metadata.name=istio-ca-root-cert` in istiod's namespace) needs `list` and `watch` on
//! configmaps; it is advisory: while it is not synced, readiness does not wait for it and a first contact reads
//! the ConfigMap with one GET. The watcher uses the classic LIST-then-WATCH strategy (kube's default,
//! `InitialListStrategy::ListWatch`), not streaming lists, so any API server version works.
//!
//! Only the Secret and the istiod Deployments are stored, with `managedFields` dropped, so memory stays flat.
//! While a watch is failing or relisting, its store is marked not synced and passes fall back to GET/LIST.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::Notify;

use crate::config::IstiodSelector;
use crate::istiod_roots;
use crate::sync::Known;

/// One watched kind: its store and whether the store reflects a completed LIST.
struct Watched<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

/// The watch caches of the Secret and the istiod Deployments.
pub struct Cache {
    namespace: String,
    secret_name: String,
    secret: Watched<Secret>,
    /// One watch for a label selector, one per name for `--istiod-deployment`.
    deployments: Option<Vec<Watched<Deployment>>>,
    /// `istio-ca-root-cert` in istiod's namespace (when restarts are on), and that namespace.
    istiod_roots: Option<(String, Watched<ConfigMap>)>,
    /// Notified on every change to `istio-ca-root-cert`.
    roots_changed: Arc<Notify>,
    /// Notified on every change to the Secret (and when its store becomes synced).
    secret_changed: Arc<Notify>,
    /// Notified whenever a store becomes synced.
    synced_changed: Arc<Notify>,
}

impl Cache {
    /// Starts the watches in background tasks. `istiod`: istiod's namespace and selector, `None` when restarts
    /// are off (no Deployment or ConfigMap watch).
    pub fn start(client: kube::Client, namespace: &str, secret: &str, istiod: Option<(&str, &IstiodSelector)>) -> Self {
        let roots_changed = Arc::new(Notify::new());
        let istiod_roots = istiod.map(|(ns, _)| {
            let watched = spawn_watch(
                Api::<ConfigMap>::namespaced(client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={}", istiod_roots::CONFIGMAP)),
                vec![roots_changed.clone()],
                Arc::new(Notify::new()),
                format!("configmap {ns}/{}", istiod_roots::CONFIGMAP),
            );
            (ns.to_string(), watched)
        });
        let istiod = istiod.map(|(_, selector)| selector);
        let secret_changed = Arc::new(Notify::new());
        let synced_changed = Arc::new(Notify::new());
        let secret_config = watcher::Config::default().fields(&format!("metadata.name={secret}"));
        let secret_watch = spawn_watch(
            Api::<Secret>::namespaced(client.clone(), namespace),
            secret_config,
            vec![secret_changed.clone()],
            synced_changed.clone(),
            format!("secret {namespace}/{secret}"),
        );
        let deployments = istiod.map(|selector| {
            let api = Api::<Deployment>::namespaced(client, namespace);
            match selector {
                IstiodSelector::Label(labels) => vec![spawn_watch(
                    api,
                    watcher::Config::default().labels(labels),
                    vec![],
                    synced_changed.clone(),
                    format!("istiod deployments in {namespace} ({labels})"),
                )],
                IstiodSelector::Names(names) => names
                    .iter()
                    .map(|name| {
                        spawn_watch(
                            api.clone(),
                            watcher::Config::default().fields(&format!("metadata.name={name}")),
                            vec![],
                            synced_changed.clone(),
                            format!("deployment {namespace}/{name}"),
                        )
                    })
                    .collect(),
            }
        });
        Self {
            namespace: namespace.into(),
            secret_name: secret.into(),
            secret: secret_watch,
            deployments,
            istiod_roots,
            roots_changed,
            secret_changed,
            synced_changed,
        }
    }

    /// Completes when `istio-ca-root-cert` changed.
    pub async fn roots_changed(&self) {
        self.roots_changed.notified().await;
    }

    /// `istio-ca-root-cert` as last seen: `None` if not watched or not synced, `Some(None)` if it does not exist.
    pub fn istiod_roots(&self) -> Option<Option<ConfigMap>> {
        let (ns, watched) = self.istiod_roots.as_ref()?;
        if !watched.synced.load(Ordering::Acquire) {
            return None;
        }
        let key = ObjectRef::<ConfigMap>::new(istiod_roots::CONFIGMAP).within(ns);
        Some(watched.store.get(&key).map(|c| (*c).clone()))
    }

    /// Completes when the Secret changed (a permit is kept if nobody waits, so no change is missed).
    pub async fn secret_changed(&self) {
        self.secret_changed.notified().await;
    }

    /// Completes when a store became synced.
    pub async fn synced_changed(&self) {
        self.synced_changed.notified().await;
    }

    /// Whether every store reflects a completed LIST.
    pub fn is_synced(&self) -> bool {
        self.secret.synced.load(Ordering::Acquire)
            && self.deployments.iter().flatten().all(|d| d.synced.load(Ordering::Acquire))
    }

    /// The Secret as last seen: `None` if the store is not synced, `Some(None)` if it does not exist.
    pub fn secret(&self) -> Option<Option<Secret>> {
        if !self.secret.synced.load(Ordering::Acquire) {
            return None;
        }
        let key = ObjectRef::<Secret>::new(&self.secret_name).within(&self.namespace);
        Some(self.secret.store.get(&key).map(|s| (*s).clone()))
    }

    /// What a pass may use instead of reading the API server.
    pub fn known(&self) -> Known {
        let deployments =
            self.deployments.as_ref().filter(|ws| ws.iter().all(|w| w.synced.load(Ordering::Acquire))).map(|ws| {
                let mut list: Vec<Deployment> = ws.iter().flat_map(|w| w.store.state()).map(|d| (*d).clone()).collect();
                list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                list
            });
        Known { secret: self.secret(), deployments, istiod_roots: self.istiod_roots() }
    }
}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    on_change: Vec<Arc<Notify>>,
    on_synced: Arc<Notify>,
    what: String,
) -> Watched<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    tokio::spawn(async move {
        // The default backoff spaces out relists after errors (no hot loop on a 403 or an outage).
        let mut events = pin!(watcher(api, config).default_backoff());
        let mut failing = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    if !failing {
                        tracing::warn!(watch = %what, error = %crate::error::chain(&error), "watch failed; retrying with backoff (passes read the API server meanwhile)");
                    }
                    failing = true;
                    flag.store(false, Ordering::Release);
                    continue;
                }
            };
            failing = false;
            // managedFields can be larger than the object itself and no decision reads them.
            let event = event.modify(|o| o.meta_mut().managed_fields = None);
            writer.apply_watcher_event(&event);
            match event {
                watcher::Event::InitDone => {
                    tracing::debug!(watch = %what, "watch cache synced");
                    flag.store(true, Ordering::Release);
                    on_synced.notify_one();
                    on_change.iter().for_each(|n| n.notify_one());
                }
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => on_change.iter().for_each(|n| n.notify_one()),
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
    });
    Watched { store, synced }
}
