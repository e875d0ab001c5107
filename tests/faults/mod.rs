//! The fault matrix's runner: one [`Case`] is one row (a fault, the flags, the expected outcome). Each case
//! runs the real binary once (`cacerts-sync sync`) against fresh emulators, then asserts:
//! - the exit code;
//! - one clear final message: the last stderr line is the summary (`sync finished` or `sync failed: …`) and
//!   holds the expected text;
//! - `cacerts`: byte-identical to before (same `data` and `resourceVersion`), absent, or holding the new CA;
//! - the exact `metadata.generation` delta of both istiod revisions (a bump is a rollout);
//! - no private-key bytes (PEM body, or the PEM as base64 Secret data) in stdout, stderr, Events, or any
//!   annotation of `cacerts` or the Deployments.
//!
//! After the checks it prints one line `FAULT-CASE {json}` to stdout; `tests/faults/table.py` turns those lines
//! into the table in `docs/faults.md` (run it with `--nocapture`). With `CACERTS_SYNC_FAULT_LOG=FILE` the line
//! is also appended to FILE, which `tests/run.sh` hands to `table.py --check` so CI fails on a stale table.
#![allow(dead_code)]

use std::time::Duration;

use cacerts_testkit::kube::Rule;
use cacerts_testkit::pki::PluginCa;
use serde_json::{Value, json};

use crate::common::{Env, NS, Run};

/// The two istiod revisions every case runs with.
pub const ISTIODS: [(&str, &str); 2] = [("istiod", "default"), ("istiod-canary", "canary")];

/// The state before the faulty run.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// No `cacerts` yet; the vault holds a valid CA. Success creates `cacerts` and restarts both revisions.
    Fresh,
    /// `cacerts` was synced (root A); the vault now holds a CA whose root bundle is A+B. Success updates
    /// `cacerts` and restarts each revision once.
    Rotation,
    /// `cacerts` was synced and the vault still holds the same CA. Success changes nothing.
    Steady,
    /// Like [`Start::Rotation`], but the new CA is not in the vault yet: a `during` hook uploads it mid-pass.
    Pending,
}

/// What `cacerts` must hold after the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cacerts {
    /// Byte-identical to before the run (same data, same resourceVersion).
    Unchanged,
    /// Still does not exist.
    Absent,
    /// Holds the vault's new CA.
    New,
    /// Was edited by hand during the case and set back to the validated material.
    Restored,
}

/// What the case's hooks see.
pub struct Ctx {
    /// The CA in `cacerts` before the run (None for [`Start::Fresh`]).
    pub old: Option<PluginCa>,
    /// The CA the vault holds (for [`Start::Steady`], the same as `old`).
    pub new: PluginCa,
}

/// One row of the matrix.
pub struct Case {
    pub name: &'static str,
    /// The fault, in words, for the table.
    pub fault: &'static str,
    pub start: Start,
    /// Applied after the start state is set up, before the run (inject faults, change secrets).
    pub before: fn(&Env, &Ctx),
    /// Applied concurrently with the run, after `during_after` (a change mid-pass); None: nothing.
    pub during: Option<fn(&Env, &Ctx)>,
    pub during_after: Duration,
    pub args: &'static [&'static str],
    /// Run with a token limited to these rules instead of the admin kubeconfig.
    pub rules: Option<fn() -> Vec<Rule>>,
    /// Run with `SSL_CERT_FILE` naming a CA that did not sign the vault's certificate.
    pub untrusted_vault_tls: bool,
    pub exit: i32,
    /// A piece of the final stderr line.
    pub message: &'static str,
    pub cacerts: Cacerts,
    /// The generation delta of each istiod revision ([`ISTIODS`] order).
    pub rollouts: [i64; 2],
}

impl Case {
    /// A case with no hooks and no flags; fill in the rest with struct-update syntax.
    pub const fn new(name: &'static str, fault: &'static str, start: Start) -> Self {
        Case {
            name,
            fault,
            start,
            before: |_, _| {},
            during: None,
            during_after: Duration::ZERO,
            args: &[],
            rules: None,
            untrusted_vault_tls: false,
            exit: 0,
            message: "",
            cacerts: Cacerts::Unchanged,
            rollouts: [0, 0],
        }
    }
}

/// Sets up `start`, returning what the hooks need.
pub async fn prepare(env: &Env, start: Start) -> Ctx {
    for (name, rev) in ISTIODS {
        env.istiod(name, rev);
    }
    let a = env.pki.root_a();
    let b = env.pki.root_b();
    match start {
        Start::Fresh => {
            let new = env.pki.plugin_ca(&[&a], &env.pki.default_intermediate(&a));
            env.upload(&new);
            Ctx { old: None, new }
        }
        Start::Steady => {
            let old = env.synced(&[&a]).await;
            Ctx { old: Some(old.clone()), new: old }
        }
        Start::Rotation | Start::Pending => {
            let old = env.synced(&[&a]).await;
            let new = env.pki.plugin_ca(&[&a, &b], &env.pki.default_intermediate(&a));
            env.remember_key(&new.ca_key);
            if matches!(start, Start::Rotation) {
                env.upload(&new);
            }
            Ctx { old: Some(old), new }
        }
    }
}

/// Runs `case` end to end and checks everything the module header lists.
pub async fn run(case: &Case) {
    let env = Env::start().await;
    let ctx = prepare(&env, case.start).await;
    (case.before)(&env, &ctx);
    let secret_before = env.secret();
    let gens_before: Vec<i64> = ISTIODS.iter().map(|(n, _)| env.generation(n)).collect();
    env.kube.reset_requests();

    let url = env.kv.vault_url();
    let mut args = vec!["sync", "--vault-url", url.as_str(), "--disable-challenge-resource-verification"];
    args.extend_from_slice(case.args);
    let mut cmd = env.command("workload-identity", &args);
    if let Some(rules) = case.rules {
        cmd.env("KUBECONFIG", env.limited_kubeconfig("limited", rules()));
    }
    if case.untrusted_vault_tls {
        let other_ca = env.path("other-ca.pem");
        std::fs::write(&other_ca, env.kube.ca_pem()).unwrap();
        cmd.env("SSL_CERT_FILE", other_ca);
    }
    let run = match case.during {
        None => env.output(cmd).await,
        Some(during) => {
            let (run, ()) = tokio::join!(env.output(cmd), async {
                tokio::time::sleep(case.during_after).await;
                during(&env, &ctx);
            });
            run
        }
    };
    env.kv.clear_faults();
    env.kube.clear_faults();
    check(case, &env, &ctx, &run, secret_before.as_ref(), &gens_before);
}

/// The checks of one finished run, then the `FAULT-CASE` line.
pub fn check(case: &Case, env: &Env, ctx: &Ctx, run: &Run, secret_before: Option<&Value>, gens_before: &[i64]) {
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    assert_eq!(run.code, case.exit, "[{}] exit code; stderr:\n{}", case.name, run.stderr);
    let summary = if case.exit == 0 { "sync finished" } else { "sync failed: " };
    assert!(last.contains(summary), "[{}] the last line is the summary: {last}", case.name);
    assert!(last.contains(case.message), "[{}] the final message holds {:?}: {last}", case.name, case.message);

    let secret = env.secret();
    match case.cacerts {
        Cacerts::Absent => assert!(secret.is_none(), "[{}] cacerts must not exist", case.name),
        Cacerts::Unchanged => {
            let (before, after) = (secret_before.expect("cacerts existed"), secret.as_ref().expect("cacerts exists"));
            assert_eq!(after["data"], before["data"], "[{}] cacerts data is byte-identical", case.name);
            assert_eq!(
                after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
                "[{}] cacerts was not written",
                case.name
            );
        }
        Cacerts::New | Cacerts::Restored => env.assert_secret_holds(&ctx.new),
    }
    let deltas: Vec<i64> =
        ISTIODS.iter().zip(gens_before).map(|((name, _), before)| env.generation(name) - before).collect();
    assert_eq!(deltas, case.rollouts, "[{}] generation delta per istiod revision", case.name);

    // Key bytes: stdout/stderr were checked by the harness; Events and annotations here.
    let mut recorded = env.kube.list("events", NS);
    recorded.extend(env.kube.list("events.events.k8s.io", NS));
    env.assert_no_key_bytes(&Value::Array(recorded).to_string());
    if let Some(s) = &secret {
        env.assert_no_key_bytes(&s["metadata"]["annotations"].to_string());
    }
    for (name, _) in ISTIODS {
        let d = env.deployment(name);
        env.assert_no_key_bytes(&d["metadata"]["annotations"].to_string());
        env.assert_no_key_bytes(&d["spec"]["template"]["metadata"]["annotations"].to_string());
    }

    report(case.name, case.fault, run.code, &last, case.cacerts, case.rollouts);
}

/// Prints the `FAULT-CASE` line of a checked case for `tests/faults/table.py`.
pub fn report(name: &str, fault: &str, exit: i32, last_line: &str, cacerts: Cacerts, rollouts: [i64; 2]) {
    let line = json!({
        "suite": suite(),
        "case": name,
        "fault": fault,
        "exit": exit,
        "message": trim_message(last_line),
        "cacerts": format!("{cacerts:?}").to_lowercase(),
        "rollouts": rollouts.iter().map(i64::to_string).collect::<Vec<_>>().join("/"),
    });
    println!("FAULT-CASE {line}");
    // tests/run.sh collects the outcomes in a file and checks docs/faults.md against them.
    if let Some(path) = std::env::var_os("CACERTS_SYNC_FAULT_LOG") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the fault log");
        writeln!(file, "FAULT-CASE {line}").expect("append to the fault log");
    }
}

fn suite() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.split('-').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// The message part of the final log line (after the level and target), shortened for the table.
fn trim_message(line: &str) -> String {
    let msg = line.find("sync ").map_or(line, |i| &line[i..]);
    // The structured fields (source=, versions=, class=, exit_code=) follow the message text.
    let msg = msg.find(" source=").map_or(msg, |i| &msg[..i]);
    msg.chars().take(320).collect()
}

/// Declares one `#[tokio::test]` per case of `$table`, named after the case, so that cases run in parallel and
/// fail one by one.
#[macro_export]
macro_rules! fault_cases {
    ($table:ident: $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let case = $table.iter().find(|c| c.name == stringify!($name)).expect("a case of that name");
                $crate::faults::run(case).await;
            }
        )+
        #[test]
        fn every_case_of_the_table_has_a_test() {
            let tested = [$(stringify!($name)),+];
            for case in $table.iter() {
                assert!(tested.contains(&case.name), "case {} has no test", case.name);
            }
        }
    };
}
