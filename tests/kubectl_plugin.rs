//! The binary as a kubectl plugin: linked as `kubectl-cacerts` on PATH, the real kubectl (v1.32, `/usr/bin/kubectl`
//! or `$KUBECTL`) finds it (`kubectl plugin list`) and runs it for `kubectl cacerts ...` against the Kubernetes
//! test server, with kubectl's `--kubeconfig`, `--context` and `-n` taken by the plugin. kubectl execs a plugin
//! with its own environment and every argument after the plugin name; it does not pass its own flags on.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::{Env, NS, Run, fingerprint};
use serde_json::{Value, json};

fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

/// A PATH directory holding `kubectl-cacerts`, a symlink to the built binary (what a manual install does).
fn plugin_dir(env: &Env) -> PathBuf {
    let dir = env.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cacerts-sync"), dir.join("kubectl-cacerts")).unwrap();
    dir
}

/// Runs the real kubectl with the plugin directory first on PATH; `kubeconfig` becomes KUBECONFIG when given
/// (otherwise HOME is an empty directory, so only a `--kubeconfig` flag can name a cluster).
async fn kubectl(env: &Env, plugins: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> Run {
    let path = format!("{}:{}", plugins.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = tokio::process::Command::new(kubectl_path());
    cmd.env_clear().env("PATH", path).env("HOME", env.tmp.path()).env("RUST_LOG", "info").args(args);
    cmd.envs(env.kv.child_env("workload-identity"));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("kubectl finished").unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    env.assert_no_key_bytes(&run.all());
    run
}

/// The test server's kubeconfig plus a second context, `unreachable` (a closed port), made the current one.
fn two_context_kubeconfig(env: &Env) -> PathBuf {
    let text = std::fs::read_to_string(env.kube.kubeconfig_path()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut dead = config["clusters"][0].clone();
    dead["name"] = "unreachable".into();
    dead["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    config["clusters"].as_array_mut().unwrap().push(dead);
    let mut context = config["contexts"][0].clone();
    context["name"] = "unreachable".into();
    context["context"]["cluster"] = "unreachable".into();
    config["contexts"].as_array_mut().unwrap().push(context);
    config["current-context"] = "unreachable".into();
    let path = env.path("kubeconfig-two-contexts");
    // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_finds_the_plugin_and_runs_inspect_on_the_current_context() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let ca = env.synced(&[&a]).await;
    let plugins = plugin_dir(&env);
    let kubeconfig = Some(env.kube.kubeconfig_path());

    let list = kubectl(&env, &plugins, kubeconfig, &["plugin", "list"]).await;
    assert_eq!(list.code, 0, "{}", list.all());
    assert!(list.stdout.contains(&plugins.join("kubectl-cacerts").display().to_string()), "{}", list.all());

    let spec = format!("secret:{NS}/cacerts");
    let run = kubectl(&env, &plugins, kubeconfig, &["cacerts", "inspect", "--source", &spec]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(&fingerprint(&ca.root_cert)), "{}", run.stdout);
    // Same answer as the binary under its own name.
    let direct = env.run_with("workload-identity", "inspect", &["--source", &spec]).await;
    assert_eq!(run.stdout, direct.stdout);

    let help = kubectl(&env, &plugins, kubeconfig, &["cacerts", "--help"]).await;
    assert_eq!(help.code, 0, "{}", help.all());
    assert!(help.stdout.contains("Usage: kubectl cacerts "), "{}", help.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_and_context_flags_choose_the_cluster_before_or_after_the_subcommand() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let ca = env.synced(&[&a]).await;
    let plugins = plugin_dir(&env);
    let file = two_context_kubeconfig(&env);
    let file = file.to_str().unwrap();
    let root = fingerprint(&ca.root_cert);

    // No KUBECONFIG and an empty HOME: without --kubeconfig there is no cluster at all.
    let none = kubectl(&env, &plugins, None, &["cacerts", "inspect", "--source", "secret:cacerts"]).await;
    assert_eq!(none.code, 2, "no kubeconfig is a configuration error: {}", none.all());

    // The file's current context is the unreachable one.
    let current =
        kubectl(&env, &plugins, None, &["cacerts", "--kubeconfig", file, "inspect", "--source", "secret:cacerts"])
            .await;
    assert_eq!(current.code, 1, "connection refused is transient: {}", current.all());

    for args in [
        &["cacerts", "--kubeconfig", file, "--context", "kube-test-server", "inspect", "--source", "secret:cacerts"][..],
        &["cacerts", "inspect", "--source", "secret:cacerts", "--context=kube-test-server", "--kubeconfig", file],
    ] {
        let run = kubectl(&env, &plugins, None, args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        assert!(run.stdout.contains(&root), "{}", run.stdout);
    }

    // --context alone reads KUBECONFIG like kubectl does.
    let run = kubectl(
        &env,
        &plugins,
        Some(Path::new(file)),
        &["cacerts", "--context", "kube-test-server", "inspect", "--source", "secret:cacerts"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.all());

    let missing = kubectl(&env, &plugins, Some(Path::new(file)), &["cacerts", "--context", "nope", "check-root"]).await;
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(missing.stderr.contains("failed to use context \"nope\" of the kubeconfig"), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_flag_works_before_the_subcommand_as_kubectl_users_type_it() {
    let env = Env::start().await;
    let a = env.pki.root_a();
    let b = env.pki.root_b();
    let in_istio_system = env.synced(&[&a]).await;
    // Another mesh's plug-in CA in another namespace.
    let other = env.pki.plugin_ca(&[&b], &env.pki.default_intermediate(&b));
    env.remember_key(&other.ca_key);
    env.kube.create("namespaces", "", json!({"metadata": {"name": "mesh-b"}}));
    let data: serde_json::Map<String, Value> = other
        .secret_files()
        .iter()
        .map(|(k, v)| (k.to_string(), base64::engine::general_purpose::STANDARD.encode(v).into()))
        .collect();
    env.kube.create("secrets", "mesh-b", json!({"metadata": {"name": "cacerts", "namespace": "mesh-b"}, "data": data}));
    let plugins = plugin_dir(&env);
    let kubeconfig = Some(env.kube.kubeconfig_path());

    for args in [
        &["cacerts", "-n", "mesh-b", "inspect", "--source", "secret:cacerts"][..],
        &["cacerts", "--namespace=mesh-b", "inspect", "--source", "secret:cacerts"],
        &["cacerts", "inspect", "--source", "secret:cacerts", "-n", "mesh-b"],
    ] {
        let run = kubectl(&env, &plugins, kubeconfig, args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        assert!(run.stdout.contains(&fingerprint(&other.root_cert)), "{args:?}: {}", run.stdout);
        assert!(!run.stdout.contains(&fingerprint(&in_istio_system.root_cert)), "{args:?}");
    }

    // A subcommand that writes honours it too: the dry run diffs against mesh-b's cacerts (another root).
    // Replacing mesh-b's root outright is a rotation step the time gates refuse (it drops the root anchoring the
    // live intermediate); this test is about where `-n` lands, not rotation safety (tests/rotation_gates*), so it
    // overrides them to get the diff of a write.
    let url = env.kv.vault_url();
    let args = [
        "cacerts",
        "-n",
        "mesh-b",
        "sync",
        "--dry-run",
        "--allow-unsafe-rotation",
        "--vault-url",
        &url,
        "--disable-challenge-resource-verification",
    ];
    let run = kubectl(&env, &plugins, kubeconfig, &args).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.all().contains(&fingerprint(&other.root_cert)[..16]), "the diff names mesh-b's root: {}", run.all());
    assert_eq!(env.kube.get("secrets", "mesh-b", "cacerts").unwrap()["data"]["root-cert.pem"], data["root-cert.pem"]);
}
