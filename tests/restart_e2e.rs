//! The istiod restart step end to end: `sync` after a root change, and `check-root` for clusters where
//! something else keeps `cacerts` in sync. The real binary against the emulator and the Kubernetes test server.

mod common;

use common::{Env, NS, fingerprint};

/// Two istiod revisions side by side, as during a canary upgrade.
const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];

fn canary(env: &Env) {
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
}

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_phases_restart_every_istiod_revision_exactly_once_per_root_change() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let b = env.pki.root_b();
    let inter_a = env.pki.default_intermediate(&a);
    let inter_b = env.pki.default_intermediate(&b);

    // Phase 0: root A. cacerts is created in this pass, so istiod restarts (istio/istio#57853).
    env.upload(&env.pki.plugin_ca(&[&a], &inter_a));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![2, 2]);
    assert!(run.stderr.contains("Root certificate update detected. Restarting deployment..."), "{}", run.stderr);
    for (name, _) in REVISIONS {
        assert!(run.stderr.contains(&format!("deployment.apps/{name} restarted")), "{}", run.stderr);
    }

    // Phase A+B: the bundle gains root B, the intermediate is still A's. One restart each.
    let ab = env.pki.plugin_ca(&[&a, &b], &inter_a);
    env.upload(&ab);
    assert_eq!(env.sync(&[]).await.code, 0);
    assert_eq!(generations(&env), vec![3, 3]);
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ab.root_cert).as_str()));
    }

    // Intermediate switches to B, bundle still A+B: an intermediate-only change, no restart. (The time gates
    // are tested in rotation_e2e.rs; `--trust-propagation 0s` lets the steps follow each other at once.)
    env.upload(&env.pki.plugin_ca(&[&a, &b], &inter_b));
    let run = env.sync(&["--trust-propagation", "0s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("cacerts updated"));
    assert_eq!(generations(&env), vec![3, 3]);

    // Phase B: root A leaves the bundle. One more restart each.
    env.upload(&env.pki.plugin_ca(&[&b], &inter_b));
    assert_eq!(env.sync(&["--trust-propagation", "0s"]).await.code, 0);
    assert_eq!(generations(&env), vec![4, 4]);

    // A rerun changes nothing.
    let rv = env.secret_rv();
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), vec![4, 4]);
    assert_eq!(env.secret_rv(), rv);
    assert!(!run.stderr.contains("Restarting deployment"));
    let restarted = env.events("Restarted");
    for (name, _) in REVISIONS {
        let on_this = restarted.iter().filter(|e| e["regarding"]["name"] == name).count();
        assert_eq!(on_this, 3, "one Restarted event on {name} per root change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_only_rotation_never_restarts_istiod() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.upload(&env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a)));
    assert_eq!(env.sync(&[]).await.code, 0);
    let before = generations(&env);
    env.upload(&env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a)));
    assert_eq!(env.sync(&[]).await.code, 0);
    assert_eq!(generations(&env), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formatting_only_change_of_the_root_never_restarts_istiod() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let ca = env.synced(&[&a]).await;
    let before = generations(&env);
    // CRLF line endings and a comment before the block: same certificates, same fingerprint.
    let reformatted = format!("# root bundle\r\n{}", ca.root_cert.replace('\n', "\r\n"));
    env.kv.set_secret("root-cert", &reformatted);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.secret_value("root-cert.pem"), reformatted, "the new bytes are synced");
    assert_eq!(generations(&env), before, "but istiod is not restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_records_the_fingerprint_without_restarting() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let ca = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    env.upload(&ca);
    // cacerts already exists (made by hand), with the same root; istiod is running with it.
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert, "ca-key.pem": ca.ca_key, "cert-chain.pem": ca.cert_chain}}),
    );
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![1, 1], "no restart");
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&ca.root_cert).as_str()));
        assert_eq!(env.restarted_at(name), None);
    }
    // --restart-on-first-run overrides the rule, but only where nothing is recorded yet.
    let run = env.run_with("workload-identity", "check-root", &["--restart-on-first-run"]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), vec![1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_first_run_restarts_unrecorded_istiod() {
    let env = Env::start().await;
    env.istiod("istiod", "default");
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert, "ca-key.pem": ca.ca_key, "cert-chain.pem": ca.cert_chain}}),
    );
    let run = env.run_with("workload-identity", "check-root", &["--restart-on-first-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.generation("istiod"), 2);
    assert!(env.restarted_at("istiod").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_root_restarts_after_another_writer_changed_the_root_and_then_does_nothing() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.synced(&[&a]).await;
    let before = generations(&env);

    // The CSI driver (or a person) puts a new root bundle into cacerts.
    let b = env.pki.root_b();
    env.replace_root_in_secret(&format!("{}{}", a.cert_pem, b.cert_pem));

    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>());
    let run = env.run_with("workload-identity", "check-root", &[]).await;
    assert_eq!(run.code, 0);
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>(), "a rerun restarts nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_restart_twice() {
    let env = Env::start().await;
    canary(&env);
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    assert_eq!(env.sync(&[]).await.code, 0);
    let before = generations(&env);
    let b = env.pki.root_b();
    env.replace_root_in_secret(&b.cert_pem);

    // A CronJob run and a manual run at the same moment.
    let (one, two) = tokio::join!(
        env.run_with("workload-identity", "check-root", &[]),
        env.run_with("workload-identity", "check-root", &[]),
    );
    assert_eq!((one.code, two.code), (0, 0), "{}\n{}", one.stderr, two.stderr);
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_deployment_is_a_warning_that_names_the_selector_and_namespace() {
    let env = Env::start().await;
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let run = env.sync(&["--istiod-selector", "app=istiod,istio.io/rev=nope"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert!(run.stderr.contains("app=istiod,istio.io/rev=nope") && run.stderr.contains(NS), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_deployments_restrict_the_restart_to_those_revisions() {
    let env = Env::start().await;
    canary(&env);
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let run = env.sync(&["--istiod-deployment", "istiod-asm-1-23"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_the_restart_patch_exits_4_and_records_nothing() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    env.upload(&env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a)));
    assert_eq!(env.sync(&[]).await.code, 0);
    let recorded: Vec<_> = REVISIONS.iter().map(|(n, _)| env.recorded_fingerprint(n)).collect();
    let before = generations(&env);

    let b = env.pki.root_b();
    env.upload(&env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a)));
    let run = env.sync_as(&env.kubeconfig_without_deployment_patch(), &[]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("restart deployment"), "{}", run.stderr);
    assert_eq!(generations(&env), before);
    let after: Vec<_> = REVISIONS.iter().map(|(n, _)| env.recorded_fingerprint(n)).collect();
    assert_eq!(after, recorded, "nothing recorded as done");

    // With the permission back, the next pass finishes the job even though cacerts is already up to date.
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(generations(&env), before.iter().map(|g| g + 1).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_the_rollout_until_it_is_available() {
    let env = Env::start().await;
    env.istiod("istiod", "default");
    env.kube.set_auto_rollout(Some(std::time::Duration::from_millis(500)));
    let (_a, ca) = env.pki.valid_plugin_ca();
    env.upload(&ca);
    let run = env.sync(&["--wait", "--wait-timeout", "30s"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("successfully rolled out"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_change_never_lands_in_cacerts_while_istiod_cannot_be_tracked() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let first = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
    // A hand-made cacerts with root A; istiod runs it and has no fingerprint recorded yet.
    env.kube.create(
        "secrets",
        NS,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
            "stringData": {"root-cert.pem": first.root_cert, "ca-cert.pem": first.ca_cert, "ca-key.pem": first.ca_key, "cert-chain.pem": first.cert_chain}}),
    );
    let b = env.pki.root_b();
    let rotated = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
    env.upload(&rotated);
    let rv = env.secret_rv();

    // Deployments can be read but not patched: the pass must not change the root in cacerts, because it could
    // neither restart istiod nor leave a record that the next pass would act on.
    let run = env.sync_as(&env.kubeconfig_without_deployment_patch(), &[]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv, "cacerts untouched");
    assert_eq!(generations(&env), vec![1, 1]);

    // With the permission, the same pass records root A, writes A+B and restarts each revision once.
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    env.assert_secret_holds(&rotated);
    assert_eq!(generations(&env), vec![2, 2]);
    for (name, _) in REVISIONS {
        assert_eq!(env.recorded_fingerprint(name).as_deref(), Some(fingerprint(&rotated.root_cert).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_old_root_before_the_intermediate_moved_is_refused_and_explained() {
    let env = Env::start().await;
    canary(&env);
    let a = env.pki.root_a();
    let b = env.pki.root_b();
    let inter_a = env.pki.default_intermediate(&a);
    env.upload(&env.pki.plugin_ca(&[&a, &b], &inter_a));
    assert_eq!(env.sync(&[]).await.code, 0);
    let rv = env.secret_rv();
    let before = generations(&env);
    // Step 5 of the runbook run too early: root A leaves the bundle while the intermediate is still A's.
    env.kv.set_secret("root-cert", &b.cert_pem);
    let run = env.sync(&["--consistency-timeout", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(env.secret_rv(), rv, "cacerts untouched");
    assert_eq!(generations(&env), before, "istiod untouched");
    let last = run.stderr.lines().last().unwrap();
    assert!(
        last.contains("drops deployed root") && last.contains("Keep both roots"),
        "the message explains the dropped anchor: {last}"
    );
}
