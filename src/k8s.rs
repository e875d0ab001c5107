//! The Kubernetes side's shared pieces: the client, error classification, names and Events.

use std::path::PathBuf;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::error::{Classify, FailureClass};

/// Field manager and Event reporter name.
pub const MANAGER: &str = "cacerts-sync";
/// Label cacerts-sync puts on the Secrets it manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation prefix for everything cacerts-sync records on objects.
pub const ANNOTATION_PREFIX: &str = "cacerts-sync.io/";
/// The root fingerprint a Secret holds, or an istiod Deployment was last (re)started for.
pub const ROOT_FINGERPRINT_ANNOTATION: &str = "cacerts-sync.io/root-fingerprint";
/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// A failed Kubernetes call, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}: {}", describe(.source))]
pub struct KubeError {
    pub action: String,
    #[source]
    pub source: kube::Error,
}

impl KubeError {
    pub fn new(action: impl Into<String>, source: kube::Error) -> Self {
        Self { action: action.into(), source }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        status(&self.source)
    }
}

/// The HTTP status of an API error (`None` for transport and config errors).
pub fn status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => {
            let hint = match s.code {
                401 => " (the API server rejected our credentials)",
                403 => " (grant the missing verb in the cacerts-sync Role)",
                _ => "",
            };
            format!("{} {}: {}{hint}", s.code, s.reason, crate::error::redact(&s.message))
        }
        other => crate::error::redact(&crate::error::chain(other)),
    }
}

impl Classify for KubeError {
    fn class(&self) -> FailureClass {
        match &self.source {
            kube::Error::Api(s) => match s.code {
                401 | 403 => FailureClass::Auth,
                400 | 404 | 422 => FailureClass::Usage,
                _ => FailureClass::Transient,
            },
            kube::Error::Auth(_) => FailureClass::Auth,
            kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => FailureClass::Usage,
            _ => FailureClass::Transient,
        }
    }
}

/// kubectl's connection flags (`--kubeconfig`, `--context`), the same for every Kubernetes call of the process.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

// Process-wide, set once from the command line before any client exists (like the KUBECONFIG variable they
// stand in for): every subcommand, present and future, gets them through `client()` without plumbing.
static OPTIONS: OnceLock<KubeOptions> = OnceLock::new();

/// Sets the connection flags for every later [`client`]; the first call wins.
pub fn configure(options: KubeOptions) {
    let _ = OPTIONS.set(options);
}

/// Builds a client: the `--kubeconfig` file and/or `--context` when given, else `KUBECONFIG`/`~/.kube/config`
/// or the in-cluster service account.
pub async fn client() -> Result<kube::Client, KubeError> {
    let config = load_config(OPTIONS.get().cloned().unwrap_or_default()).await?;
    kube::Client::try_from(config).map_err(|e| KubeError::new("create the Kubernetes client", e))
}

async fn load_config(options: KubeOptions) -> Result<kube::Config, KubeError> {
    let context_options = KubeConfigOptions { context: options.context.clone(), ..Default::default() };
    let failed = |action: String| move |e| KubeError::new(action, kube::Error::InferKubeconfig(e));
    let use_context = match &options.context {
        Some(context) => format!("use context {context:?} of the kubeconfig"),
        None => "use the kubeconfig's current context".to_string(),
    };
    match options.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(&path).map_err(failed(format!("read the kubeconfig {}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &context_options).await.map_err(failed(use_context))
        }
        // Only a context: the kubeconfig kubectl would read (KUBECONFIG, else ~/.kube/config), never in-cluster.
        None if options.context.is_some() => {
            kube::Config::from_kubeconfig(&context_options).await.map_err(failed(use_context))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KubeError::new("load a kubeconfig or the in-cluster config", kube::Error::InferConfig(e))),
    }
}

/// Publishes Kubernetes Events. Events are best effort: a failure is logged, never fatal.
#[derive(Clone)]
pub struct Events {
    /// `None`: a dry run, which publishes nothing (an Event is a write too).
    recorder: Option<Recorder>,
}

impl Events {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { recorder: Some(Recorder::new(client, reporter)) }
    }

    /// Events that are only logged at debug level, never published: `--dry-run` is side-effect free.
    pub fn disabled() -> Self {
        Self { recorder: None }
    }

    /// Publishes a Normal event. `note` must never contain secret bytes.
    pub async fn normal(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(regarding, EventType::Normal, reason, action, note).await;
    }

    /// Publishes a Warning event. `note` must never contain secret bytes.
    pub async fn warning(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(regarding, EventType::Warning, reason, action, note).await;
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        mut note: String,
    ) {
        // The Events API caps the note at 1 kB.
        if note.len() > 1000 {
            let mut cut = 997;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let Some(recorder) = &self.recorder else {
            tracing::debug!(reason, note, "dry run: not publishing the event");
            return;
        };
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = recorder.publish(&event, regarding).await {
            tracing::warn!(reason, error = %crate::error::chain(&error), "failed to publish Kubernetes event");
        }
    }
}

/// An ObjectReference for an object we know by kind and name (events can be published before the object exists).
pub fn reference(api_version: &str, kind: &str, namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}
