//! Multi-cluster harness: ONE Key Vault emulator and several Kubernetes test servers, each a cluster with its
//! own context in ONE merged kubeconfig file (as `kubectl config view --flatten` of several clusters looks),
//! each with two istiod revisions. Secrets follow the per-cluster naming teams use: a shared `root-cert` and
//! `ca-cert-<cluster>`, `ca-key-<cluster>`, `cert-chain-<cluster>`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use cacerts_testkit::keyvault::KeyVaultEmulator;
use cacerts_testkit::kube::KubeTestServer;
use cacerts_testkit::pki::{Intermediate, IntermediateOpts, PluginCa, Root, TestPki};
use serde_json::{Value, json};

use crate::common::Run;

pub const NS: &str = "istio-system";
/// The istiod revisions every cluster runs.
pub const REVISIONS: [(&str, &str); 2] = [("istiod-1-24", "1-24"), ("istiod-1-25", "1-25")];
/// The name flags of the per-cluster layout.
pub const NAME_FLAGS: [&str; 6] = [
    "--ca-cert-name",
    "ca-cert-{cluster}",
    "--ca-key-name",
    "ca-key-{cluster}",
    "--cert-chain-name",
    "cert-chain-{cluster}",
];

/// One cluster: a name (also its kubeconfig context) and its API server.
pub struct Cluster {
    pub name: String,
    pub kube: KubeTestServer,
}

pub struct Fleet {
    pub kv: KeyVaultEmulator,
    pub clusters: Vec<Cluster>,
    pub pki: TestPki,
    pub tmp: tempfile::TempDir,
    /// The merged kubeconfig: one context per cluster, plus any extra contexts added later.
    pub kubeconfig: PathBuf,
    extra_contexts: std::sync::Mutex<Vec<Context>>,
    keys: std::sync::Mutex<Vec<String>>,
}

/// A kubeconfig context entry.
#[derive(Clone)]
pub struct Context {
    pub name: String,
    pub server: String,
    pub ca_pem: String,
    pub token: String,
    pub namespace: String,
}

impl Fleet {
    /// Starts the vault and one test server per name, each with the istiod revisions of [`REVISIONS`].
    pub async fn start(names: &[&str]) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kv = KeyVaultEmulator::start().await;
        let mut clusters = Vec::new();
        for name in names {
            // A cluster with Istio installed: its namespace exists before istiod does.
            let kube = KubeTestServer::start_seeded(&[NS]).await;
            for (deployment, revision) in REVISIONS {
                kube.create("deployments", NS, istiod(deployment, revision));
            }
            clusters.push(Cluster { name: name.to_string(), kube });
        }
        let tmp = tempfile::tempdir().unwrap();
        let kubeconfig = tmp.path().join("kubeconfig");
        let fleet = Self {
            kv,
            clusters,
            pki: TestPki::current(),
            tmp,
            kubeconfig,
            extra_contexts: Default::default(),
            keys: Default::default(),
        };
        fleet.write_kubeconfig();
        fleet
    }

    pub fn cluster(&self, name: &str) -> &Cluster {
        self.clusters.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no cluster {name}"))
    }

    fn contexts(&self) -> Vec<Context> {
        let mut all: Vec<Context> = self
            .clusters
            .iter()
            .map(|c| Context {
                name: c.name.clone(),
                server: c.kube.url(),
                ca_pem: c.kube.ca_pem().to_string(),
                token: c.kube.admin_token().to_string(),
                namespace: "default".into(),
            })
            .collect();
        all.extend(self.extra_contexts.lock().unwrap().iter().cloned());
        all
    }

    /// Adds a context to the merged kubeconfig (an unreachable server, a wrong token, ...).
    pub fn add_context(&self, context: Context) {
        self.extra_contexts.lock().unwrap().push(context);
        self.write_kubeconfig();
    }

    /// A context whose server does not listen: a port that was bound and released.
    pub fn unreachable_context(&self, name: &str) -> Context {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Context {
            name: name.into(),
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: self.clusters[0].kube.ca_pem().to_string(),
            token: "nobody-listens".into(),
            namespace: "default".into(),
        }
    }

    /// Writes the merged kubeconfig (current context: the first cluster).
    fn write_kubeconfig(&self) {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let contexts = self.contexts();
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": contexts.first().map(|c| c.name.clone()).unwrap_or_default(),
            "clusters": contexts.iter().map(|c| json!({
                "name": format!("{}-cluster", c.name),
                "cluster": {"server": c.server, "certificate-authority-data": b64(&c.ca_pem)},
            })).collect::<Vec<_>>(),
            "users": contexts.iter().map(|c| json!({"name": format!("{}-admin", c.name), "user": {"token": c.token}}))
                .collect::<Vec<_>>(),
            "contexts": contexts.iter().map(|c| json!({
                "name": c.name,
                "context": {"cluster": format!("{}-cluster", c.name), "user": format!("{}-admin", c.name), "namespace": c.namespace},
            })).collect::<Vec<_>>(),
        });
        // JSON is YAML: kube-rs and kubectl read it as a kubeconfig.
        std::fs::write(&self.kubeconfig, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }

    /// Root `root` plus this cluster's own intermediate under it (`L=<cluster>`-style distinct subjects).
    pub fn intermediate(&self, cluster: &str, root: &Root) -> Intermediate {
        let opts =
            IntermediateOpts { common_name: format!("Intermediate {} {cluster}", root.name), ..Default::default() };
        self.pki.intermediate(root, opts)
    }

    /// Uploads the shared root bundle (`root-cert`).
    pub fn upload_roots(&self, roots: &[&Root]) {
        let bundle: String = roots.iter().map(|r| r.cert_pem.as_str()).collect();
        self.kv.set_secret("root-cert", &bundle);
    }

    /// Uploads one cluster's intermediate (`ca-cert-<cluster>`, `ca-key-<cluster>`, `cert-chain-<cluster>`).
    pub fn upload_intermediate(&self, cluster: &str, intermediate: &Intermediate) {
        self.keys.lock().unwrap().push(intermediate.key_pem.clone());
        self.kv.set_secret(&format!("ca-cert-{cluster}"), &intermediate.cert_pem);
        self.kv.set_secret(&format!("ca-key-{cluster}"), &intermediate.key_pem);
        self.kv.set_secret(&format!("cert-chain-{cluster}"), &intermediate.cert_chain);
    }

    /// The plug-in CA a cluster gets from the vault for `roots` and `intermediate`.
    pub fn plugin_ca(&self, roots: &[&Root], intermediate: &Intermediate) -> PluginCa {
        self.pki.plugin_ca(roots, intermediate)
    }

    /// A command for the binary with a clean environment and the vault's workload-identity env.
    pub fn command(&self, kubeconfig: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cacerts-sync"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .envs(self.kv.child_env("workload-identity"))
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// `sync` of one cluster from the shared vault with the per-cluster names (its own admin kubeconfig).
    pub async fn sync(&self, cluster: &str, extra: &[&str]) -> Run {
        let url = self.kv.vault_url();
        let mut args =
            vec!["sync", "--vault-url", &url, "--disable-challenge-resource-verification", "--cluster-name", cluster];
        args.extend_from_slice(&NAME_FLAGS);
        args.extend_from_slice(extra);
        self.output(self.command(self.cluster(cluster).kube.kubeconfig_path(), &args)).await
    }

    /// `cacerts-sync fleet ...` with the merged kubeconfig.
    pub async fn fleet(&self, args: &[&str]) -> Run {
        let mut all = vec!["fleet"];
        all.extend_from_slice(args);
        self.output(self.command(&self.kubeconfig, &all)).await
    }

    pub async fn output(&self, mut cmd: tokio::process::Command) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("binary finished in time")
            .unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for key in self.keys.lock().unwrap().iter() {
            for line in key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
                assert!(!run.all().contains(line), "output contains private key bytes");
            }
        }
        run
    }

    /// A key of a cluster's `cacerts`, decoded.
    pub fn secret_value(&self, cluster: &str, key: &str) -> String {
        let s = self.cluster(cluster).kube.get("secrets", NS, "cacerts").expect("cacerts exists");
        let b64 = s["data"][key].as_str().unwrap_or_else(|| panic!("cacerts has no {key}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    /// What istiod does once it runs the roots in `cacerts`: publish them in `istio-ca-root-cert`.
    pub fn istiod_loaded(&self, cluster: &str) {
        let roots = self.secret_value(cluster, "root-cert.pem");
        self.cluster(cluster).kube.update(
            "configmaps",
            NS,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio-ca-root-cert", "namespace": NS, "labels": {"istio.io/config": "true"}},
                "data": {"root-cert.pem": roots}}),
        );
    }

    /// Syncs a cluster (must succeed) and lets its istiod load the roots.
    pub async fn synced(&self, cluster: &str, extra: &[&str]) {
        let run = self.sync(cluster, extra).await;
        assert_eq!(run.code, 0, "sync of {cluster}: {}", run.stderr);
        self.istiod_loaded(cluster);
    }

    /// Writes each cluster's material into `<dir>/<cluster>/` in the `cacerts` file layout (`--source dir:…/{cluster}`).
    pub fn write_material(&self, dir: &str, material: &[(&str, PluginCa)]) -> String {
        for (cluster, ca) in material {
            self.keys.lock().unwrap().push(ca.ca_key.clone());
            ca.write_dir(&self.tmp.path().join(dir).join(cluster)).unwrap();
        }
        format!("dir:{}/{{cluster}}", self.tmp.path().join(dir).display())
    }

    /// `fleet <sub> -o json` over `contexts`; the parsed JSON and the run.
    pub async fn fleet_json(&self, sub: &str, contexts: &str, extra: &[&str]) -> (Run, Value) {
        let mut args = vec![sub, "--context", contexts, "-o", "json"];
        args.extend_from_slice(extra);
        let run = self.fleet(&args).await;
        let json = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("fleet {sub} JSON: {e}\n{}", run.all()));
        (run, json)
    }

    /// `metadata.generation` of every istiod revision of a cluster.
    pub fn generations(&self, cluster: &str) -> Vec<i64> {
        REVISIONS
            .iter()
            .map(|(name, _)| {
                self.cluster(cluster).kube.get("deployments", NS, name).unwrap()["metadata"]["generation"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    }
}

/// An istiod Deployment of `revision`, as a revisioned install creates it.
pub fn istiod(name: &str, revision: &str) -> Value {
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
    })
}
