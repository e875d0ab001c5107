//! The text form of `fleet status`: one row per cluster, then the fleet verdict. Pure.

use std::fmt::Write as _;

use crate::rotation::{Assessment, format_time};

use super::verdict::{ClusterOutcome, FleetVerdict};

fn plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The columns of one readable cluster.
fn columns(a: &Assessment) -> [String; 5] {
    let roots = if a.roots.is_empty() {
        "-".to_owned()
    } else {
        a.roots.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>().join(" + ")
    };
    let live = match &a.live_intermediate {
        Some(i) => format!("{} <- {}", i.subject, i.anchor.as_ref().map_or("NO ANCHOR", |r| r.subject.as_str())),
        None => "-".into(),
    };
    let serves = match a.served_roots.matches_cacerts {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown",
    };
    let expiry = a
        .nearest_expiry
        .as_ref()
        .map_or("-".into(), |e| format!("{} {} ({})", format_time(e.not_after), e.subject, e.role));
    [plain(&a.phase), roots, live, serves.into(), expiry]
}

/// The `fleet status` text.
pub fn status_text(outcomes: &[ClusterOutcome], fleet: &FleetVerdict, now: jiff::Timestamp) -> String {
    let header = [
        "CLUSTER",
        "NAMESPACE",
        "PHASE",
        "ROOTS",
        "LIVE INTERMEDIATE <- ANCHOR",
        "ISTIOD SERVES ROOTS",
        "NEAREST EXPIRY",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for o in outcomes {
        let mut row = vec![o.cluster.name.clone(), o.cluster.namespace.clone()];
        match &o.result {
            Ok(a) => row.extend(columns(a)),
            Err(e) => row.push(format!("UNREADABLE ({}): {e}", e.class.as_str())),
        }
        table.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| table.iter().filter(|r| r.len() > i + 1).map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
            }
        }
    }
    for o in outcomes {
        if let Ok(a) = &o.result {
            for p in &a.problems {
                let _ = writeln!(out, "{}: problem: {p}", o.cluster.name);
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "fleet ({} clusters, at {}):", outcomes.len(), format_time(now));
    if fleet.roots_agree {
        let _ = writeln!(out, "  root bundles agree: yes");
    } else {
        let _ = writeln!(out, "  root bundles agree: NO");
        for group in &fleet.bundles {
            let subjects = outcomes
                .iter()
                .find(|o| group.clusters.contains(&o.cluster.name))
                .and_then(|o| o.result.as_ref().ok())
                .map(|a| a.roots.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>().join(" + "))
                .unwrap_or_default();
            let _ = writeln!(out, "    {subjects}: {}", group.clusters.join(", "));
        }
    }
    if fleet.broken_pairs.is_empty() {
        let _ = writeln!(out, "  mTLS failing today: none");
    } else {
        let _ = writeln!(out, "  mTLS failing today:");
        for p in &fleet.broken_pairs {
            let _ = writeln!(
                out,
                "    {} <-> {}: {}'s intermediate {} is anchored at {}, which {}'s root bundle lacks",
                p.cluster, p.untrusted_by, p.cluster, p.intermediate, p.root.subject, p.untrusted_by
            );
        }
    }
    if let Some(s) = &fleet.next_step {
        let when = match (s.earliest, s.safe_now) {
            (None, false) => format!("waiting for {}", s.waiting_for.join(", ")),
            (None, true) => "any time".to_owned(),
            (Some(t), true) => format!("now (safe since {})", format_time(t)),
            (Some(t), false) => format!("not before {} (waiting for {})", format_time(t), s.waiting_for.join(", ")),
        };
        let _ = writeln!(out, "  next step: {} ({when})", s.action);
        let _ = writeln!(out, "    in: {}", s.clusters.join(", "));
        if !s.ahead.is_empty() {
            let _ = writeln!(out, "    already past it: {}", s.ahead.join(", "));
        }
    }
    if !fleet.invalid.is_empty() {
        let _ = writeln!(out, "  invalid: {}", fleet.invalid.join(", "));
    }
    if !fleet.unreachable.is_empty() {
        let _ = writeln!(out, "  unreachable: {}", fleet.unreachable.join(", "));
    }
    let _ = writeln!(out, "  consistent: {}", if fleet.consistent { "yes" } else { "no" });
    out
}
