//! Runs the Kubernetes API test server standalone, to try cacerts-sync (or kubectl) locally.
//!
//! ```text
//! cargo run --example kube-test-server -- --kubeconfig-out /tmp/kubeconfig [--addr 127.0.0.1:6443] \
//!     [--seed-istiod istiod] [--seed-istiod istiod-1-24]
//! kubectl --kubeconfig /tmp/kubeconfig get deployments -n istio-system
//! ```
//! The kubeconfig holds the test CA as `certificate-authority-data` and an admin bearer token. Once the
//! server is ready, one line of JSON with `url` and `kubeconfig` is printed on stdout. Serves until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use cacerts_testkit::kube::KubeTestServer;
use clap::Parser;
use serde_json::json;

/// Kubernetes API test server (HTTPS, test CA, bearer-token auth).
#[derive(Parser)]
struct Args {
    /// Where to write the admin kubeconfig.
    #[arg(long)]
    kubeconfig_out: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Create an istiod Deployment with this name in istio-system (labels app=istiod, istio.io/rev). Repeatable.
    #[arg(long = "seed-istiod")]
    seed_istiod: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = KubeTestServer::start_on(args.addr).await;
    // A fresh cluster has no istio-system; an Istio install (which the seeded istiods stand for) creates it.
    server.create("namespaces", "", json!({"metadata": {"name": "istio-system"}}));
    for name in &args.seed_istiod {
        let rev = name.strip_prefix("istiod-").unwrap_or("default");
        server.create("deployments", "istio-system", istiod_deployment(name, rev));
    }
    server.write_kubeconfig(&args.kubeconfig_out, server.admin_token())?;
    println!("{}", json!({"url": server.url(), "kubeconfig": args.kubeconfig_out}));
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn istiod_deployment(name: &str, rev: &str) -> serde_json::Value {
    let labels = json!({"app": "istiod", "istio.io/rev": rev});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.24.0"}]}
            }
        }
    })
}
