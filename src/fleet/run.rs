//! `fleet status` and `fleet check`: read the clusters, fetch the material, print, and pick the exit code.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::bundle::{self, RawMaterial, ValidationOptions, Verdict};
use crate::error::{Classify, FailureClass, chain, exit};
use crate::rotation::{CaFacts, assess, format_time};
use crate::source::{Source, dir::DirSource, keyvault::VaultSource};

use super::check::{ClusterState, FleetBlock, gates};
use super::clusters::{self, ClusterError, ClusterRef};
use super::config::{CheckSource, ClustersConfig, FleetCheckConfig, FleetStatusConfig};
use super::verdict::{ClusterOutcome, FleetVerdict, verdict};

fn usage(error: &(dyn std::error::Error + 'static)) -> u8 {
    tracing::error!(error = %chain(error), "invalid configuration");
    exit::USAGE
}

/// Loads the kubeconfig and resolves the selection (exit 2 on failure, before any request).
fn clusters_of(config: &ClustersConfig) -> Result<(kube::config::Kubeconfig, Vec<ClusterRef>), u8> {
    let kubeconfig = clusters::load(config.kubeconfig.as_deref()).map_err(|e| usage(&e))?;
    let selected = clusters::select(&kubeconfig, config).map_err(|e| usage(&e))?;
    Ok((kubeconfig, selected))
}

/// `cacerts-sync fleet status`.
pub async fn status(config: FleetStatusConfig) -> u8 {
    let c = &config.clusters;
    let (kubeconfig, selected) = match clusters_of(c) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let views = clusters::read_all(&kubeconfig, &selected, c).await;
    let now = jiff::Timestamp::now();
    let outcomes: Vec<ClusterOutcome> = selected
        .into_iter()
        .zip(views)
        .map(|(cluster, view)| ClusterOutcome { cluster, result: view.map(|v| assess(&v, now, &c.rotation)) })
        .collect();
    let fleet = verdict(&outcomes, now);
    if c.json {
        let clusters: Vec<_> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(a) => {
                    json!({"name": o.cluster.name, "namespace": o.cluster.namespace, "error": null, "assessment": a})
                }
                Err(e) => {
                    json!({"name": o.cluster.name, "namespace": o.cluster.namespace, "error": e, "assessment": null})
                }
            })
            .collect();
        let doc = json!({"now": format_time(now), "clusters": clusters, "fleet": fleet});
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON value serializes"));
    } else {
        print!("{}", super::render::status_text(&outcomes, &fleet, now));
    }
    let code = fleet.exit_code();
    log_summary("fleet status", &fleet, code);
    code
}

fn log_summary(command: &str, fleet: &FleetVerdict, code: u8) {
    tracing::info!(
        consistent = fleet.consistent,
        roots_agree = fleet.roots_agree,
        broken_pairs = fleet.broken_pairs.len(),
        unreachable = %fleet.unreachable.join(","),
        invalid = %fleet.invalid.join(","),
        exit_code = code,
        "{command} finished: {}",
        if fleet.consistent { "consistent" } else { "not consistent" }
    );
}

/// The material for one cluster, or why it could not be had.
type Material = Result<RawMaterial, (FailureClass, String)>;

/// Fetches the material for every cluster, once per distinct source (a shared vault layout is fetched once).
async fn materials(source: &CheckSource, clusters: &[ClusterRef]) -> Vec<Material> {
    let mut cache: HashMap<String, Material> = HashMap::new();
    let mut out = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let (key, fetch) = match source {
            CheckSource::Dir(template) => {
                let path = template.replace(crate::config::CLUSTER_PLACEHOLDER, &cluster.name);
                (format!("dir:{path}"), Ok(Source::Dir(DirSource::new(std::path::Path::new(&path)))))
            }
            CheckSource::Vault { vault, names } => match names.resolve(Some(&cluster.name)) {
                Ok(resolved) => {
                    let key = format!("{resolved:?}");
                    let config = crate::config::VaultConfig { names: resolved, ..(**vault).clone() };
                    (key, VaultSource::new(&config, None).map(Source::Vault).map_err(|e| (e.class(), chain(&e))))
                }
                Err(e) => {
                    (cluster.name.clone(), Err((FailureClass::Usage, format!("cluster {:?}: {e}", cluster.name))))
                }
            },
        };
        if let Some(hit) = cache.get(&key) {
            out.push(hit.clone());
            continue;
        }
        let material = match fetch {
            Ok(source) => source.fetch().await.map(|f| f.material).map_err(|e| (e.class(), chain(&e))),
            Err(e) => Err(e),
        };
        cache.insert(key, material.clone());
        out.push(material);
    }
    out
}

/// One cluster in `fleet check`.
struct CheckRow {
    cluster: ClusterRef,
    state: Result<ClusterState, ClusterError>,
    material: Material,
    /// The proposed material's report (when fetched).
    report: Option<bundle::Report>,
}

/// `cacerts-sync fleet check`.
pub async fn check(config: FleetCheckConfig) -> u8 {
    let c = &config.clusters;
    let (kubeconfig, selected) = match clusters_of(c) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // Every cluster's material name must be a valid secret name before anything is fetched.
    if let CheckSource::Vault { names, .. } = &config.source {
        for cluster in &selected {
            if let Err(e) = names.resolve(Some(&cluster.name)) {
                tracing::error!(cluster = %cluster.name, error = %e, "invalid configuration: a context name can't fill {{cluster}}");
                return exit::USAGE;
            }
        }
    }
    let (views, materials) =
        tokio::join!(clusters::read_all(&kubeconfig, &selected, c), materials(&config.source, &selected));
    let now = jiff::Timestamp::now();
    let options = ValidationOptions { now, expiry_warning: c.rotation.expiry_warning };
    let rows: Vec<CheckRow> = selected
        .into_iter()
        .zip(views.into_iter().zip(materials))
        .map(|(cluster, (view, material))| {
            let report = material.as_ref().ok().map(|m| bundle::validate(m, &options, None));
            let state = view.map(|v| ClusterState::from_view(&cluster.name, &v, now, &c.rotation));
            CheckRow { cluster, state, material, report }
        })
        .collect();

    let states: Vec<ClusterState> = rows.iter().filter_map(|r| r.state.as_ref().ok().cloned()).collect();
    let proposals: Vec<(String, CaFacts)> = rows
        .iter()
        .filter(|r| r.report.as_ref().is_some_and(|rep| rep.verdict == Verdict::Valid))
        .filter_map(|r| Some((r.cluster.name.clone(), CaFacts::from_report(r.report.as_ref()?)?)))
        .collect();
    let blocks = gates(&states, &proposals, now, &c.rotation);

    let invalid: Vec<&str> = rows
        .iter()
        .filter(|r| r.report.as_ref().is_some_and(|rep| rep.verdict != Verdict::Valid))
        .map(|r| r.cluster.name.as_str())
        .collect();
    let fetch_failure = rows.iter().find_map(|r| r.material.as_ref().err().map(|(class, _)| *class));
    let unreachable: Vec<&str> = rows.iter().filter(|r| r.state.is_err()).map(|r| r.cluster.name.as_str()).collect();
    let code = if !blocks.is_empty() || !invalid.is_empty() {
        exit::INVALID
    } else if let Some(class) = fetch_failure {
        class.exit_code()
    } else if !unreachable.is_empty() {
        exit::TRANSIENT
    } else {
        exit::OK
    };
    let safe_after = safe_after(&blocks);

    if c.json {
        let clusters: Vec<_> = rows.iter().map(row_json).collect();
        let doc = json!({
            "now": format_time(now),
            "source": config.source.describe(),
            "safe": code == exit::OK,
            "safe_after": safe_after.map(format_time),
            "clusters": clusters,
            "blocks": blocks,
            "invalid_material": invalid,
            "unreachable": unreachable,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON value serializes"));
    } else {
        print!("{}", check_text(&config.source.describe(), &rows, &blocks, safe_after, code));
    }
    tracing::info!(
        blocks = blocks.len(),
        invalid_material = %invalid.join(","),
        unreachable = %unreachable.join(","),
        exit_code = code,
        "fleet check finished: {}",
        if code == exit::OK { "uploading is safe for every cluster" } else { "not safe to upload" }
    );
    code
}

/// When waiting alone makes every block go away (`None` if some block needs another step first).
fn safe_after(blocks: &[FleetBlock]) -> Option<jiff::Timestamp> {
    blocks.iter().map(|b| b.block.safe_after).collect::<Option<Vec<_>>>()?.into_iter().max()
}

fn row_json(r: &CheckRow) -> serde_json::Value {
    let material = match (&r.material, &r.report) {
        (Err((class, message)), _) => json!({"error": {"class": class, "message": message}}),
        (Ok(_), Some(report)) => {
            let facts = CaFacts::from_report(report);
            json!({
                "verdict": report.verdict,
                "root_fingerprint": report.root_fingerprint.as_ref().map(ToString::to_string),
                "roots": facts.iter().flat_map(|f| f.roots.iter()).map(|r| json!({"subject": r.subject, "fingerprint": r.fingerprint})).collect::<Vec<_>>(),
                "intermediate": facts.as_ref().and_then(|f| f.intermediate.as_ref()).map(|i| json!({"subject": i.subject, "fingerprint": i.fingerprint})),
                "errors": report.errors().map(|f| f.message.clone()).collect::<Vec<_>>(),
            })
        }
        (Ok(_), None) => serde_json::Value::Null,
    };
    json!({
        "name": r.cluster.name,
        "namespace": r.cluster.namespace,
        "error": r.state.as_ref().err(),
        "material": material,
    })
}

fn check_text(
    source: &str,
    rows: &[CheckRow],
    blocks: &[FleetBlock],
    safe_after: Option<jiff::Timestamp>,
    code: u8,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "material: {source}");
    for r in rows {
        let material = match (&r.material, &r.report) {
            (Err((_, message)), _) => format!("material not available: {message}"),
            (Ok(_), Some(report)) if report.verdict != Verdict::Valid => {
                let errors: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
                format!("material {}: {}", report.verdict, errors.join("; "))
            }
            (Ok(_), Some(report)) => match CaFacts::from_report(report) {
                Some(f) => format!(
                    "roots {}; intermediate {} (anchor {})",
                    f.roots.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>().join(", "),
                    f.intermediate.as_ref().map_or("none", |i| i.subject.as_str()),
                    f.anchor_root().map_or("none", |a| a.subject.as_str())
                ),
                None => "material without readable roots".into(),
            },
            (Ok(_), None) => String::new(),
        };
        let state = match &r.state {
            Ok(_) => String::new(),
            Err(e) => format!("; cluster unreadable: {e}"),
        };
        let _ = writeln!(out, "cluster {} ({}): {material}{state}", r.cluster.name, r.cluster.namespace);
    }
    for b in blocks {
        let _ = writeln!(out, "blocked: {b}");
    }
    let verdict = match code {
        exit::OK => "safe: uploading now is safe for every cluster".to_owned(),
        exit::INVALID if blocks.is_empty() => "not safe: the material is invalid for some cluster".to_owned(),
        exit::INVALID => match safe_after {
            Some(t) => {
                format!("not safe: {} block(s); safe after {} if nothing else changes", blocks.len(), format_time(t))
            }
            None => format!("not safe: {} block(s); another step must come first", blocks.len()),
        },
        _ => "unknown: some cluster or some material could not be read".to_owned(),
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}
