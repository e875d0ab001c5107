//! End-to-end harness: the real `cacerts-sync` binary as a child process, against the in-process Key Vault
//! emulator and Kubernetes API test server. The child gets only what a user would set: `KUBECONFIG`, the
//! Azure SDK's standard env vars (`SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`, credential inputs), flags.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use cacerts_testkit::keyvault::KeyVaultEmulator;
use cacerts_testkit::kube::KubeTestServer;
use cacerts_testkit::pki::{PluginCa, TestPki};
use serde_json::{Value, json};

pub const NS: &str = "istio-system";

pub struct Env {
    pub kv: KeyVaultEmulator,
    pub kube: KubeTestServer,
    pub pki: TestPki,
    pub tmp: tempfile::TempDir,
    /// Key PEMs uploaded so far: no output may ever contain them.
    keys: std::sync::Mutex<Vec<String>>,
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Env {
    pub async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Self {
            kv: KeyVaultEmulator::start().await,
            // istio-system exists wherever Istio is installed; a fresh test server doesn't have it.
            kube: KubeTestServer::start_seeded(&[NS]).await,
            pki: TestPki::current(),
            tmp: tempfile::tempdir().unwrap(),
            keys: Default::default(),
        }
    }

    /// Stores the four objects in the vault (four separate writes, as `az keyvault secret set` does).
    pub fn upload(&self, ca: &PluginCa) {
        self.remember_key(&ca.ca_key);
        for (name, value) in ca.vault_secrets() {
            self.kv.set_secret(name, value);
        }
    }

    /// A plug-in CA under `roots` (the intermediate signed by the first), uploaded and synced successfully.
    pub async fn synced(&self, roots: &[&cacerts_testkit::pki::Root]) -> PluginCa {
        let ca = self.pki.plugin_ca(roots, &self.pki.default_intermediate(roots[0]));
        self.upload(&ca);
        let run = self.sync(&[]).await;
        assert_eq!(run.code, 0, "setup sync: {}", run.stderr);
        ca
    }

    /// Another writer (the CSI driver, a person) puts `bundle` into `cacerts`'s `root-cert.pem`.
    pub fn replace_root_in_secret(&self, bundle: &str) {
        let mut secret = self.secret().expect("cacerts exists");
        secret["data"]["root-cert.pem"] = base64::engine::general_purpose::STANDARD.encode(bundle).into();
        self.kube.update("secrets", NS, secret);
    }

    pub fn remember_key(&self, key_pem: &str) {
        self.keys.lock().unwrap().push(key_pem.to_string());
    }

    /// A command for the binary with a clean environment: PATH, HOME, KUBECONFIG, the emulator's env for
    /// `credential`, and RUST_LOG.
    pub fn command(&self, credential: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacerts-sync"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("KUBECONFIG", self.kube.kubeconfig_path())
            .env("RUST_LOG", "info")
            .envs(self.kv.child_env(credential))
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// `cacerts-sync sync` against the emulator with workload identity and `extra` flags.
    pub async fn sync(&self, extra: &[&str]) -> Run {
        self.run_with("workload-identity", "sync", extra).await
    }

    /// `sync` as another identity: the kubeconfig of a limited token (see [`Env::limited_kubeconfig`]).
    pub async fn sync_as(&self, kubeconfig: &Path, extra: &[&str]) -> Run {
        let url = self.kv.vault_url();
        let mut args = vec!["sync", "--vault-url", url.as_str(), "--disable-challenge-resource-verification"];
        args.extend_from_slice(extra);
        let mut cmd = self.command("workload-identity", &args);
        cmd.env("KUBECONFIG", kubeconfig);
        self.output(cmd).await
    }

    pub async fn run_with(&self, credential: &str, subcommand: &str, extra: &[&str]) -> Run {
        let url = self.kv.vault_url();
        let mut args = vec![subcommand];
        if subcommand == "sync" || subcommand == "watch" {
            args.extend(["--vault-url", url.as_str(), "--disable-challenge-resource-verification"]);
        }
        args.extend_from_slice(extra);
        self.output(self.command(credential, &args)).await
    }

    pub async fn output(&self, mut cmd: tokio::process::Command) -> Run {
        let out: Output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("binary finished in time")
            .unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_key_bytes(&run.all());
        run
    }

    /// Fails if `text` holds any line of base64 from an uploaded private key (the PEM body, i.e. the DER in
    /// base64), or a piece of the key PEM as a Secret's `data` carries it (base64 of the whole PEM text, which
    /// is what an apiserver echoes in a 422).
    pub fn assert_no_key_bytes(&self, text: &str) {
        for key in self.keys.lock().unwrap().iter() {
            for line in key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
                assert!(!text.contains(line), "output contains private key bytes");
            }
            let data = base64::engine::general_purpose::STANDARD.encode(key);
            // Windows from inside the value (the first bytes only encode the "-----BEGIN" header).
            for at in [40, data.len() / 2, data.len().saturating_sub(80)] {
                let window = &data[at.min(data.len())..(at + 32).min(data.len())];
                assert!(window.len() < 32 || !text.contains(window), "output contains the key as Secret data");
            }
        }
    }

    pub fn secret(&self) -> Option<Value> {
        self.kube.get("secrets", NS, "cacerts")
    }

    pub fn secret_rv(&self) -> String {
        self.secret().expect("cacerts exists")["metadata"]["resourceVersion"].as_str().unwrap().to_string()
    }

    /// A key of `cacerts`, decoded.
    pub fn secret_value(&self, key: &str) -> String {
        let s = self.secret().expect("cacerts exists");
        let b64 = s["data"][key].as_str().unwrap_or_else(|| panic!("cacerts has no {key}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    pub fn assert_secret_holds(&self, ca: &PluginCa) {
        for (key, value) in ca.secret_files() {
            assert_eq!(self.secret_value(key), value, "cacerts {key}");
        }
    }

    /// Creates an istiod Deployment like a revisioned Istio install does.
    pub fn istiod(&self, name: &str, revision: &str) {
        self.kube.create(
            "deployments",
            NS,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": NS, "labels": {"app": "istiod", "istio.io/rev": revision}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": revision}},
                    "template": {
                        "metadata": {"labels": {"app": "istiod", "istio.io/rev": revision}},
                        "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]}
                    }
                }
            }),
        );
    }

    pub fn deployment(&self, name: &str) -> Value {
        self.kube.get("deployments", NS, name).unwrap_or_else(|| panic!("deployment {name}"))
    }

    /// The pod-template restartedAt annotation of a Deployment (None if never restarted).
    pub fn restarted_at(&self, name: &str) -> Option<String> {
        self.deployment(name)["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .map(str::to_string)
    }

    pub fn generation(&self, name: &str) -> i64 {
        self.deployment(name)["metadata"]["generation"].as_i64().unwrap()
    }

    pub fn recorded_fingerprint(&self, name: &str) -> Option<String> {
        self.deployment(name)["metadata"]["annotations"]["cacerts-sync.io/root-fingerprint"]
            .as_str()
            .map(str::to_string)
    }

    /// Events (events.k8s.io/v1 and core/v1) whose reason is `reason`.
    pub fn events(&self, reason: &str) -> Vec<Value> {
        let mut all = self.kube.list("events", NS);
        all.extend(self.kube.list("events.events.k8s.io", NS));
        all.retain(|e| e["reason"].as_str() == Some(reason));
        all
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A kubeconfig whose token may write `cacerts` and Events and read istiod, but not patch Deployments.
    pub fn kubeconfig_without_deployment_patch(&self) -> PathBuf {
        use cacerts_testkit::kube::Rule;
        self.limited_kubeconfig(
            "no-deployment-patch",
            vec![
                Rule::new(&["get", "create", "update", "patch"], "", &["secrets"]),
                Rule::new(&["create", "patch"], "events.k8s.io", &["events"]),
                Rule::new(&["get", "list"], "apps", &["deployments"]),
            ],
        )
    }

    /// Writes a kubeconfig for a token limited by `rules` and returns its path.
    pub fn limited_kubeconfig(&self, token: &str, rules: Vec<cacerts_testkit::kube::Rule>) -> PathBuf {
        self.kube.add_token(token, "system:serviceaccount:istio-system:syncer", rules);
        let path = self.path(&format!("kubeconfig-{token}"));
        self.kube.write_kubeconfig(&path, token).unwrap();
        path
    }
}

/// The SHA-256 root fingerprint, computed independently of the crate: hex of SHA-256 over the DER of every
/// certificate in the bundle, in order.
pub fn fingerprint(root_pem: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for block in root_pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body: String = block.split("-----END CERTIFICATE-----").next().unwrap().split_whitespace().collect();
        h.update(base64::engine::general_purpose::STANDARD.decode(body).unwrap());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn write_files(dir: &Path, ca: &PluginCa) {
    ca.write_dir(dir).unwrap();
}
