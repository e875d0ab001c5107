//! The faulty soak (issue 13): `cacerts-sync watch` (the real binary) runs pass after pass while both servers
//! inject faults at random and the vault changes at random: new intermediates, every step of the root-rotation
//! runbook (A → A+B → intermediate under B → B → B+C …), invalid material, and uploads torn across the four
//! GETs. Throughout, an observer reads `cacerts` and the istiod Deployments every few milliseconds and asserts:
//!
//! - every state of `cacerts` is built, key by key, from values the vault held as part of a **valid** upload
//!   (nothing invalid, nothing half-written), and istiod's own verifier (the Go oracle, `x509.Verify` as
//!   istiod runs it) accepts every state;
//! - `root-cert.pem` never goes back to a root bundle older than one it already held;
//! - every istiod rollout is for a root bundle `cacerts` held (the recorded fingerprint), in order, never two
//!   for the same bundle; every revision is rolled for the bundle in place within 60 s of it landing; at the
//!   end, after the faults stop, each revision was rolled exactly once per root change, except for bundles
//!   replaced before their restart could go through (restart patches failing under injected faults): then
//!   the one rollout for the newer bundle serves both, which the summary counts;
//! - no private-key bytes in the log, Events, annotations or metrics; no panic;
//! - RSS does not grow (asserted on long runs; every run records it).
//!
//! CI runs 200 passes (about 75 s, four root changes). The long run (figures in benches/RESULTS.md):
//!
//! ```sh
//! cargo build --release --bin cacerts-sync
//! CACERTS_SYNC_SOAK_PASSES=10000 WATCH_TEST_BIN=target/release/cacerts-sync \
//!   CACERTS_SYNC_SOAK_SUMMARY=target/soak.json cargo test --test soak -- --nocapture
//! ```
//!
//! `CACERTS_SYNC_SOAK_SEED` picks the random sequence of faults and changes (default 13); their timing against
//! the daemon's passes is not replayable.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cacerts_testkit::keyvault::Fault as KvFault;
use cacerts_testkit::kube::Fault as KubeFault;
use cacerts_testkit::pki::{Intermediate, PluginCa, Root};
use common::{Env, NS, fingerprint};
use daemon::{Daemon, watch_logging};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const REVISIONS: [(&str, &str); 2] = [("istiod-asm-1-22", "asm-1-22"), ("istiod-asm-1-23", "asm-1-23")];
const KEYS: [&str; 4] = ["root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"];
const SECRETS: [&str; 4] = ["root-cert", "ca-cert", "ca-key", "cert-chain"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Where the vault stands in the root-rotation runbook. `k` indexes the roots made so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `root-cert` = [k], intermediate under k.
    Single(usize),
    /// [k, k+1], intermediate still under k.
    Added(usize),
    /// [k, k+1], intermediate under k+1.
    Switched(usize),
}

/// The vault side of the soak: what was uploaded, and which values belong to valid uploads.
struct Vault {
    roots: Vec<Root>,
    phase: Phase,
    intermediate: Intermediate,
    /// The last valid material uploaded (what the vault holds unless `broken`).
    current: PluginCa,
    /// The vault holds invalid material right now.
    broken: bool,
    /// For each cacerts key: value → index of the first valid upload that held it.
    valid: HashMap<&'static str, HashMap<String, usize>>,
    uploads: usize,
    counts: BTreeMap<&'static str, u64>,
}

impl Vault {
    fn new(env: &Env) -> Self {
        let root = env.pki.root("soak-root-0");
        let intermediate = env.pki.default_intermediate(&root);
        let current = env.pki.plugin_ca(&[&root], &intermediate);
        let mut vault = Self {
            roots: vec![root],
            phase: Phase::Single(0),
            intermediate,
            current: current.clone(),
            broken: false,
            valid: HashMap::new(),
            uploads: 0,
            counts: BTreeMap::new(),
        };
        vault.register(&current);
        env.upload(&current);
        vault
    }

    fn register(&mut self, ca: &PluginCa) {
        for (key, value) in ca.secret_files() {
            self.valid.entry(key).or_default().entry(value.to_string()).or_insert(self.uploads);
        }
        self.uploads += 1;
    }

    fn bundle(&self) -> Vec<&Root> {
        match self.phase {
            Phase::Single(k) => vec![&self.roots[k]],
            Phase::Added(k) | Phase::Switched(k) => vec![&self.roots[k], &self.roots[k + 1]],
        }
    }

    fn signing_root(&self) -> &Root {
        match self.phase {
            Phase::Single(k) | Phase::Added(k) => &self.roots[k],
            Phase::Switched(k) => &self.roots[k + 1],
        }
    }

    /// Writes the four secrets one by one with short pauses, so that a pass may read across two uploads.
    async fn put(&self, env: &Env, ca: &PluginCa, rng: &mut SmallRng) {
        env.remember_key(&ca.ca_key);
        let mut order = ca.vault_secrets();
        if rng.random_bool(0.5) {
            order.reverse();
        }
        for (name, value) in order {
            env.kv.set_secret(name, value);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        }
    }

    async fn upload_valid(&mut self, env: &Env, ca: PluginCa, rng: &mut SmallRng, kind: &'static str) {
        self.register(&ca);
        self.put(env, &ca, rng).await;
        self.current = ca;
        self.broken = false;
        *self.counts.entry(kind).or_default() += 1;
    }

    /// One random change. Root steps wait until the previous upload has landed, as an operator would.
    async fn change(&mut self, env: &Env, rng: &mut SmallRng, landed: bool) {
        let roll = rng.random_range(0..100);
        if self.broken || roll < 45 {
            // A new intermediate under the current signing root (also how a broken vault is repaired).
            self.intermediate = env.pki.default_intermediate(self.signing_root());
            let ca = env.pki.plugin_ca(&self.bundle(), &self.intermediate);
            self.upload_valid(env, ca, rng, "new-intermediate").await;
        } else if roll < 85 && landed {
            let kind = match self.phase {
                Phase::Single(k) => {
                    self.roots.push(env.pki.root(&format!("soak-root-{}", k + 1)));
                    self.phase = Phase::Added(k);
                    "add-root"
                }
                Phase::Added(k) => {
                    self.intermediate = env.pki.default_intermediate(&self.roots[k + 1]);
                    self.phase = Phase::Switched(k);
                    "switch-intermediate"
                }
                Phase::Switched(k) => {
                    self.phase = Phase::Single(k + 1);
                    "drop-root"
                }
            };
            let ca = env.pki.plugin_ca(&self.bundle(), &self.intermediate);
            self.upload_valid(env, ca, rng, kind).await;
        } else if roll >= 85 {
            // Invalid: a fresh intermediate with a key that is not its own (never part of a valid upload).
            let inter = env.pki.default_intermediate(self.signing_root());
            let stranger = env.pki.default_intermediate(self.signing_root());
            let mut ca = env.pki.plugin_ca(&self.bundle(), &inter);
            ca.ca_key = stranger.key_pem.clone();
            self.put(env, &ca, rng).await;
            self.broken = true;
            *self.counts.entry("invalid").or_default() += 1;
        }
    }
}

fn kv_fault(rng: &mut SmallRng) -> (KvFault, &'static str) {
    let secret = SECRETS[rng.random_range(0..4)];
    let path = format!("/secrets/{secret}");
    match rng.random_range(0..9) {
        0 => (KvFault::status(500).times(rng.random_range(1..4)).path(&path), "kv-500"),
        1 => (KvFault::status(503).times(rng.random_range(1..4)), "kv-503"),
        2 => (KvFault::status(429).retry_after(1).path(&path), "kv-429-retry-after"),
        3 => (KvFault::status(429).path(&path), "kv-429"),
        4 => (KvFault::delay(Duration::from_millis(rng.random_range(200..1500))).times(2).path(&path), "kv-slow"),
        5 => (KvFault::status(401).path(&path), "kv-401"),
        6 => (KvFault::status(403).path(&path), "kv-403"),
        7 => (KvFault::status(404).path(&path), "kv-404"),
        _ => (KvFault::status(503).times(rng.random_range(1..4)).path("/oauth2/v2.0/token"), "entra-503"),
    }
}

/// A Kubernetes fault, or `None` for the stream faults applied directly.
fn kube_fault(rng: &mut SmallRng, env: &Env) -> Option<(KubeFault, &'static str)> {
    Some(match rng.random_range(0..11) {
        0 => (KubeFault::status(500).method("PATCH").path("/secrets/").times(1), "kube-500-patch-secret"),
        1 => (KubeFault::status(409).method("PATCH").path("/secrets/").times(rng.random_range(1..6)), "kube-409-storm"),
        2 => (KubeFault::status(500).method("PATCH").path("/deployments/").times(1), "kube-500-patch-deployment"),
        3 => (KubeFault::status(403).method("PATCH").path("/deployments/").times(1), "kube-403-patch-deployment"),
        4 => (KubeFault::status(429).method("GET").retry_after(1).times(1), "kube-429-get"),
        5 => (KubeFault::status(500).method("GET").times(rng.random_range(1..4)), "kube-500-get"),
        6 => (KubeFault::latency(Duration::from_millis(rng.random_range(200..1000))).times(2), "kube-slow"),
        7 => (KubeFault::corrupt_data("ca-cert.pem").times(1), "kube-422-echoing-data"),
        8 => (KubeFault::status(500).method("POST").times(1), "kube-500-post"),
        9 => {
            env.kube.close_watches();
            return None;
        }
        _ => {
            // 410 Gone on the resume of every watch.
            env.kube.compact();
            env.kube.close_watches();
            return None;
        }
    })
}

fn generations(env: &Env) -> Vec<i64> {
    REVISIONS.iter().map(|(n, _)| env.generation(n)).collect()
}

fn decode(secret: &Value) -> Option<[String; 4]> {
    let data = secret.get("data")?;
    let get = |k: &str| -> Option<String> {
        let b = base64::engine::general_purpose::STANDARD.decode(data.get(k)?.as_str()?).ok()?;
        String::from_utf8(b).ok()
    };
    Some([get(KEYS[0])?, get(KEYS[1])?, get(KEYS[2])?, get(KEYS[3])?])
}

/// How long a root bundle may sit in `cacerts` without every revision restarted for it. Restarts follow the
/// write within milliseconds; only failing restart patches (injected faults) delay them, by a few passes.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

/// `cacerts` exists and holds exactly `ca`.
fn holds(env: &Env, ca: &PluginCa) -> bool {
    let want = ca.secret_files().map(|(_, v)| v.to_owned());
    env.secret().and_then(|s| decode(&s)).is_some_and(|f| f == want)
}

/// What the observer has seen of `cacerts` and istiod.
#[derive(Default)]
struct Observer {
    rv: String,
    root: Option<String>,
    /// Upload index of the newest root bundle held so far.
    root_index: usize,
    /// Root bundle changes (the creation of `cacerts` included).
    root_changes: i64,
    /// The root bundles `cacerts` held, in order: fingerprint and when it was first seen.
    held: Vec<(String, Instant)>,
    /// Per revision: the last generation seen, and the recorded root fingerprint of each rollout, in order.
    rollouts: Vec<(i64, Vec<String>)>,
    states: Vec<[String; 4]>,
    writes: u64,
}

impl Observer {
    fn new(gens0: &[i64]) -> Self {
        Self { rollouts: gens0.iter().map(|g| (*g, Vec::new())).collect(), ..Self::default() }
    }

    /// One look. Deployments first, then `cacerts`: a restart follows its write, so the `cacerts` read after a
    /// rollout was seen always holds the root that rollout was for (or a newer one).
    fn look(&mut self, env: &Env, vault: &Vault) {
        let deployments: Vec<Value> = REVISIONS.iter().map(|(n, _)| env.deployment(n)).collect();
        let Some(secret) = env.secret() else { return };
        let rv = secret["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        if rv != self.rv {
            self.rv = rv;
            self.writes += 1;
            let files = decode(&secret).expect("cacerts has all four keys, UTF-8 PEM");
            for (key, value) in KEYS.iter().zip(&files) {
                assert!(
                    vault.valid[key].contains_key(value),
                    "cacerts {key} holds a value that was never part of a valid upload"
                );
            }
            let index = vault.valid["root-cert.pem"][&files[0]];
            if self.root.as_deref() != Some(files[0].as_str()) {
                assert!(
                    index >= self.root_index,
                    "cacerts went back to an older root bundle (upload {index} after {})",
                    self.root_index
                );
                self.root_index = index;
                self.root = Some(files[0].clone());
                self.root_changes += 1;
                self.held.push((fingerprint(&files[0]), Instant::now()));
            }
            if !self.states.contains(&files) {
                self.states.push(files);
            }
        }
        for ((d, (name, _)), (last_gen, rolled)) in deployments.iter().zip(REVISIONS).zip(&mut self.rollouts) {
            let generation = d["metadata"]["generation"].as_i64().unwrap();
            let recorded = d["metadata"]["annotations"]["cacerts-sync.io/root-fingerprint"].as_str().map(str::to_owned);
            if generation != *last_gen {
                assert_eq!(generation, *last_gen + 1, "{name}: two rollouts between two looks");
                *last_gen = generation;
                let fp = recorded.clone().unwrap_or_else(|| panic!("{name} rolled without a recorded root"));
                let at = self.held.iter().position(|(f, _)| *f == fp);
                let at = at.unwrap_or_else(|| panic!("{name} rolled for a root bundle cacerts never held"));
                if let Some(prev) = rolled.last() {
                    let prev_at = self.held.iter().position(|(f, _)| f == prev).unwrap();
                    assert!(at > prev_at, "{name} rolled again for a root bundle it was already rolled for");
                }
                rolled.push(fp);
            }
            if let Some((fp, since)) = self.held.last() {
                assert!(
                    since.elapsed() < RESTART_DEADLINE || recorded.as_ref() == Some(fp),
                    "{name} was not restarted {RESTART_DEADLINE:?} after a new root bundle landed in cacerts"
                );
            }
        }
    }

    /// Every revision was rolled for the bundle `cacerts` holds now.
    fn restarted_for_current(&self) -> bool {
        let current = self.held.last().map(|(f, _)| f);
        self.rollouts.iter().all(|(_, rolled)| rolled.last() == current)
    }

    /// Root bundles a revision was never rolled for because a newer one replaced them first (their restart
    /// patches failed until then). Each must have been replaced within [`RESTART_DEADLINE`].
    fn superseded(&self, revision: usize) -> usize {
        let rolled = &self.rollouts[revision].1;
        let mut skipped = 0;
        for (i, (fp, since)) in self.held.iter().enumerate() {
            if !rolled.contains(fp) {
                let until = self.held.get(i + 1).map(|(_, t)| *t).expect("the current bundle was rolled for");
                assert!(
                    until - *since < RESTART_DEADLINE,
                    "{}: a root bundle held {:?} without a restart",
                    REVISIONS[revision].0,
                    until - *since
                );
                skipped += 1;
            }
        }
        skipped
    }
}

/// The number of finished passes, from `/metrics`.
fn passes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("cacerts_sync_passes_total{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn by_result(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("cacerts_sync_passes_total{result=\""))
        .filter_map(|l| {
            let (result, rest) = l.split_once('"')?;
            Some((result.to_string(), rest.split_whitespace().last()?.parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// Istiod's verifier over every state `cacerts` held.
fn oracle_accepts_all(env: &Env, states: &[[String; 4]]) {
    let Some(oracle) = std::env::var_os("CACERTS_SYNC_ORACLE").map(PathBuf::from).filter(|p| p.is_file()) else {
        panic!("CACERTS_SYNC_ORACLE must name the Go oracle (tests/run.sh builds it)");
    };
    let mut dirs = Vec::new();
    for (i, files) in states.iter().enumerate() {
        let dir = env.path(&format!("state-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in KEYS.iter().zip(files) {
            std::fs::write(dir.join(key), value).unwrap();
        }
        dirs.push(dir);
    }
    let mut child = Command::new(oracle).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let input: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), dirs.len());
    for line in lines {
        assert_eq!(line["accept"], true, "istiod would refuse a state cacerts held: {line}");
    }
}

fn no_key_bytes_anywhere(env: &Env, d: &Daemon, metrics: &str) {
    env.assert_no_key_bytes(&d.logs());
    env.assert_no_key_bytes(metrics);
    for event in env.kube.list("events", NS) {
        env.assert_no_key_bytes(&event.to_string());
    }
    let secret = env.secret().unwrap();
    env.assert_no_key_bytes(&secret["metadata"].to_string());
    for (name, _) in REVISIONS {
        env.assert_no_key_bytes(&env.deployment(name).to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_keeps_cacerts_valid_forward_only_and_rolls_once_per_root_change_under_random_faults() {
    let target = env_u64("CACERTS_SYNC_SOAK_PASSES", 200);
    let seed = env_u64("CACERTS_SYNC_SOAK_SEED", 13);
    let mut rng = SmallRng::seed_from_u64(seed);
    let env = Env::start().await;
    env.kube.simulate_istiod_roots(true);
    for (name, rev) in REVISIONS {
        env.istiod(name, rev);
    }
    let gens0 = generations(&env);
    let mut vault = Vault::new(&env);
    let args = ["--interval", "100ms", "--trust-propagation", "1s", "--consistency-timeout", "2s", "--timeout", "30s"];
    let d = watch_logging(&env, "soak", None, &args, "info");

    let started = Instant::now();
    let mut obs = Observer::new(&gens0);
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rss: Vec<(u64, u64)> = Vec::new();
    let (mut done, mut progress_at, mut next_tick, mut next_metrics) =
        (0, Instant::now(), Instant::now(), Instant::now());
    let mut ticks = 0u64;
    while done < target {
        obs.look(&env, &vault);
        let now = Instant::now();
        if now >= next_metrics {
            next_metrics = now + Duration::from_millis(500);
            let count = passes(&d.metrics().await);
            if count > done {
                done = count;
                progress_at = now;
            }
            if rss.last().is_none_or(|(p, _)| done >= p + target.div_ceil(40).max(25)) {
                rss.push((done, d.rss_kib()));
            }
            assert!(now - progress_at < Duration::from_secs(120), "no pass finished for 2 minutes (at {done})");
        }
        if now >= next_tick {
            next_tick = now + Duration::from_millis(rng.random_range(150..700));
            ticks += 1;
            if ticks.is_multiple_of(200) {
                env.kv.clear_faults();
                env.kube.clear_faults();
                env.kv.reset_requests();
                env.kube.reset_requests();
            }
            match rng.random_range(0..100) {
                0..30 => {
                    let (fault, name) = kv_fault(&mut rng);
                    env.kv.inject_fault(fault);
                    *faults.entry(name).or_default() += 1;
                }
                30..60 => match kube_fault(&mut rng, &env) {
                    Some((fault, name)) => {
                        env.kube.inject_fault(fault);
                        *faults.entry(name).or_default() += 1;
                    }
                    None => *faults.entry("kube-watch-closed").or_default() += 1,
                },
                60..72 => {
                    let landed = holds(&env, &vault.current);
                    vault.change(&env, &mut rng, landed).await;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The faults stop; the vault ends on valid material; everything must converge.
    env.kv.clear_faults();
    env.kube.clear_faults();
    if vault.broken {
        vault.change(&env, &mut rng, false).await;
    }
    let want = vault.current.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        obs.look(&env, &vault);
        let settled = holds(&env, &want) && obs.restarted_for_current();
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence after the faults stopped: generations {:?} from {gens0:?}, {} root changes, rolled for {:?}",
            generations(&env),
            obs.root_changes,
            obs.rollouts.iter().map(|(_, r)| r.len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it stays that way: no late extra rollout.
    let quiet = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet {
        obs.look(&env, &vault);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One rollout per root bundle `cacerts` held, except bundles replaced before their restart could go
    // through (a newer bundle then needs only one rollout): never two for one bundle, never a missing one for
    // the bundle in place, and none skipped for longer than RESTART_DEADLINE (checked by `superseded`).
    let gens = generations(&env);
    let mut superseded = Vec::new();
    for (i, ((g, g0), (name, _))) in gens.iter().zip(&gens0).zip(REVISIONS).enumerate() {
        assert_eq!(*g - g0, obs.rollouts[i].1.len() as i64, "{name}: every generation bump was a rollout for a root");
        let skipped = obs.superseded(i);
        assert_eq!(g - g0 + skipped as i64, obs.root_changes, "{name}: one rollout per root change, or superseded");
        superseded.push(skipped);
    }

    let metrics = d.metrics().await;
    rss.push((passes(&metrics), d.rss_kib()));
    assert!(!d.logs().contains("panicked"), "the daemon panicked");
    no_key_bytes_anywhere(&env, &d, &metrics);
    oracle_accepts_all(&env, &obs.states);
    let roots_made = vault.roots.len();
    assert!(obs.root_changes >= 1);

    // Leak check on long runs: after a warm-up fifth, RSS may wobble but not climb.
    let warm = rss.iter().find(|(p, _)| *p >= target / 5).map_or(0, |(_, r)| *r);
    let last = rss.last().unwrap().1;
    let peak = rss.iter().map(|(_, r)| *r).max().unwrap();
    if target >= 2000 {
        assert!(last <= warm + 2048, "RSS grew from {warm} KiB (at a fifth) to {last} KiB");
    }
    let summary = json!({
        "passes": passes(&metrics),
        "by_result": by_result(&metrics),
        "seed": seed,
        "seconds": started.elapsed().as_secs(),
        "binary": std::env::var("WATCH_TEST_BIN").unwrap_or_else(|_| "debug".into()),
        "faults": faults,
        "vault_changes": vault.counts,
        "roots_made": roots_made,
        "root_changes_in_cacerts": obs.root_changes,
        "cacerts_writes_seen": obs.writes,
        "distinct_states_checked_by_oracle": obs.states.len(),
        "rollouts_per_revision": gens.iter().zip(&gens0).map(|(g, g0)| g - g0).collect::<Vec<_>>(),
        "root_changes_superseded_before_their_restart": superseded,
        "rss_kib": {"at_fifth": warm, "last": last, "peak": peak, "samples": rss},
    });
    println!("SOAK {summary}");
    if let Ok(path) = std::env::var("CACERTS_SYNC_SOAK_SUMMARY") {
        std::fs::write(path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    }
}
