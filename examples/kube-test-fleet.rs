//! Many Kubernetes API test servers in one process, for the fleet benchmark (`benches/fleet.py`).
//!
//! ```text
//! cargo run --example kube-test-fleet -- --servers 100 --kubeconfig-out /tmp/fleet-kubeconfig \
//!     [--seed-dir examples/sample-ca] [--namespaces 50]
//! ```
//! Each server is one cluster, with its own context (`cluster-000`, …) in ONE merged kubeconfig. With
//! `--seed-dir`, every cluster gets the plug-in CA from that directory as `cacerts` in istio-system, two istiod
//! revisions and the `istio-ca-root-cert` ConfigMap (what a running istiod publishes). `--namespaces M` creates
//! `ns-000` … on the first server (one namespace per simulated watch process). Prints one line of JSON
//! (`kubeconfig`, `servers`) when ready and serves until killed.

use std::path::PathBuf;

use base64::Engine as _;
use cacerts_testkit::kube::KubeTestServer;
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1)]
    servers: usize,
    #[arg(long)]
    kubeconfig_out: PathBuf,
    #[arg(long)]
    seed_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    namespaces: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let seed = match &args.seed_dir {
        Some(dir) => {
            let mut data = serde_json::Map::new();
            for key in ["root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"] {
                data.insert(key.into(), b64(&std::fs::read_to_string(dir.join(key))?).into());
            }
            Some((data, std::fs::read_to_string(dir.join("root-cert.pem"))?))
        }
        None => None,
    };
    let mut servers = Vec::new();
    let (mut clusters, mut users, mut contexts) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.servers {
        // A cluster with Istio has its namespace; a fresh test server has only the four of a fresh cluster.
        let server = KubeTestServer::start_seeded(&["istio-system"]).await;
        let name = format!("cluster-{i:03}");
        if let Some((data, roots)) = &seed {
            server.create("secrets", "istio-system", json!({"metadata": {"name": "cacerts"}, "data": data}));
            for rev in ["1-24", "1-25"] {
                let labels = json!({"app": "istiod", "istio.io/rev": rev});
                server.create("deployments", "istio-system", json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": format!("istiod-{rev}"), "labels": labels},
                    "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]}}}
                }));
            }
            server.create(
                "configmaps",
                "istio-system",
                json!({"metadata": {"name": "istio-ca-root-cert"}, "data": {"root-cert.pem": roots}}),
            );
        }
        if i == 0 {
            for n in 0..args.namespaces {
                server.create("namespaces", "", json!({"metadata": {"name": format!("ns-{n:03}")}}));
            }
        }
        clusters.push(json!({"name": name, "cluster": {"server": server.url(), "certificate-authority-data": b64(server.ca_pem())}}));
        users.push(json!({"name": name, "user": {"token": server.admin_token()}}));
        contexts.push(json!({"name": name, "context": {"cluster": name, "user": name}}));
        servers.push(server);
    }
    let doc = json!({"apiVersion": "v1", "kind": "Config", "current-context": "cluster-000",
        "clusters": clusters, "users": users, "contexts": contexts});
    std::fs::write(&args.kubeconfig_out, serde_json::to_vec_pretty(&doc)?)?;
    println!("{}", json!({"kubeconfig": args.kubeconfig_out, "servers": servers.len()}));
    tokio::signal::ctrl_c().await?;
    Ok(())
}
