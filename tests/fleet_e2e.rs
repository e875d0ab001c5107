//! Many clusters, one vault: per-cluster secret names, `fleet status` and `fleet check`, end to end with the
//! real binary against one Key Vault emulator and several Kubernetes test servers (see tests/fleet_common).

mod common;
mod fleet_common;

use fleet_common::{Fleet, NS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_syncs_its_own_intermediate_and_the_shared_root_from_one_vault() {
    let fleet = Fleet::start(&["eastus", "westeu", "centralus"]).await;
    let root = fleet.pki.root_a();
    fleet.upload_roots(&[&root]);
    let mut intermediates = Vec::new();
    for c in &fleet.clusters {
        let i = fleet.intermediate(&c.name, &root);
        fleet.upload_intermediate(&c.name, &i);
        intermediates.push(i);
    }
    for (c, i) in fleet.clusters.iter().zip(&intermediates) {
        let run = fleet.sync(&c.name, &[]).await;
        assert_eq!(run.code, 0, "{}: {}", c.name, run.stderr);
        assert_eq!(fleet.secret_value(&c.name, "ca-cert.pem"), i.cert_pem, "{} got its own intermediate", c.name);
        assert_eq!(fleet.secret_value(&c.name, "cert-chain.pem"), i.cert_chain);
        assert_eq!(fleet.secret_value(&c.name, "root-cert.pem"), root.cert_pem, "the root bundle is shared");
    }
    // Every cluster read only its own intermediate's names and the shared root.
    for c in &fleet.clusters {
        assert!(fleet.kv.request_count("GET", &format!("/secrets/ca-key-{}", c.name)) >= 1);
    }
    assert_eq!(fleet.kv.request_count("GET", "/secrets/ca-cert/"), 0, "the unsubstituted name is never read");
    assert_eq!(fleet.kv.request_count("GET", "/secrets/ca-cert?"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_template_without_a_cluster_name_exits_2_before_any_request() {
    let fleet = Fleet::start(&["eastus"]).await;
    let url = fleet.kv.vault_url();
    let args = [
        "sync",
        "--vault-url",
        url.as_str(),
        "--disable-challenge-resource-verification",
        "--ca-cert-name",
        "ca-cert-{cluster}",
    ];
    let run = fleet.output(fleet.command(fleet.cluster("eastus").kube.kubeconfig_path(), &args)).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--ca-cert-name") && run.stderr.contains("--cluster-name"), "{}", run.stderr);
    // The same settings as env vars (a flag would win over its env var).
    let mut cmd = fleet.command(fleet.cluster("eastus").kube.kubeconfig_path(), &args[..4]);
    cmd.env("CACERTS_SYNC_CLUSTER_NAME", "eastus").env("CACERTS_SYNC_CA_CERT_NAME", "ca-cert-{region}");
    let unknown = fleet.output(cmd).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("{region}"), "{}", unknown.stderr);
    assert_eq!(fleet.kv.requests().len(), 0, "nothing was fetched");
    assert!(fleet.cluster("eastus").kube.get("secrets", NS, "cacerts").is_none());
}
