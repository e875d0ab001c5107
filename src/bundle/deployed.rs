//! Root-rotation awareness against what is deployed now: which roots the new bundle adds or removes, and
//! whether it drops the root that anchors the live intermediate (`root-drops-live-anchor`).
//!
//! Moved unchanged out of the validation rules; anchoring here is decided by signature over the
//! certificates' own keys, a matching name alone is not enough.

use std::collections::HashMap;

use super::cert::{Cert, load};
use super::validate::Ctx;
use super::{Deployed, FindingCode, SecretRole, Severity, ValidationOptions, parse_certificates};

pub(super) fn check_deployed(cx: &mut Ctx, d: &Deployed<'_>, roots: &[Cert<'_>], chain: &[Cert<'_>]) {
    let opts = ValidationOptions { now: jiff::Timestamp::UNIX_EPOCH, expiry_warning: std::time::Duration::ZERO };
    let parsed = parse_certificates(SecretRole::RootCert, d.root_cert)
        .and_then(|r| parse_certificates(SecretRole::CaCert, d.ca_cert).map(|c| (r, c)));
    let (dep_root_ders, dep_ca_ders) = match parsed {
        Ok(p) => p,
        Err(e) => {
            cx.push(
                Severity::Info,
                FindingCode::DeployedUnreadable,
                None,
                None,
                format!("the deployed cacerts could not be parsed, root-rotation checks skipped: {}", e.full_message()),
            );
            return;
        }
    };
    let mut cache = HashMap::new();
    let dep_roots = load(SecretRole::RootCert, Some(&dep_root_ders), &opts, &mut cache);
    let Some(dep_ca) = load(SecretRole::CaCert, Some(&dep_ca_ders[..1]), &opts, &mut cache).into_iter().next() else {
        return;
    };

    let added = roots.iter().filter(|r| !dep_roots.iter().any(|d| d.der == r.der)).count();
    let removed = dep_roots.iter().filter(|d| !roots.iter().any(|r| r.der == d.der)).count();
    if added > 0 || removed > 0 {
        cx.push(
            Severity::Info,
            FindingCode::RootBundleChanged,
            Some(SecretRole::RootCert),
            None,
            format!("root-cert differs from the deployed bundle: {added} root(s) added, {removed} removed; istiod must restart to load it"),
        );
    }

    // The live intermediate may hang below further intermediates; the new chain is our best knowledge of them.
    let intermediates: Vec<&Cert<'_>> = chain.iter().filter(|c| c.der != dep_ca.der).collect();
    for (i, live) in dep_roots.iter().enumerate() {
        if find_path(&dep_ca, &intermediates, std::slice::from_ref(live)).is_none() {
            continue;
        }
        // A re-issued root with the same name and key still verifies what the old one signed.
        let kept = roots.iter().any(|r| {
            r.x.subject().as_raw() == live.x.subject().as_raw() && r.x.public_key().raw == live.x.public_key().raw
        });
        if !kept {
            cx.push(
                Severity::Warning,
                FindingCode::RootDropsLiveAnchor,
                Some(SecretRole::RootCert),
                None,
                format!(
                    "root-cert drops deployed root {} (\"{}\", sha256 {}), which anchors the intermediate live now (\"{}\"); workloads whose certificates chain to it fail mTLS until they renew. Keep both roots until the new intermediate has rolled out",
                    i + 1,
                    live.info.subject,
                    live.info.sha256,
                    dep_ca.info.subject
                ),
            );
        }
    }
}

/// Finds a root that anchors `target` (directly or through `intermediates`), by signature.
/// Returns the root's index and the intermediates used, from `target`'s issuer upwards.
fn find_path(target: &Cert<'_>, intermediates: &[&Cert<'_>], roots: &[Cert<'_>]) -> Option<(usize, Vec<usize>)> {
    let mut search = Search {
        intermediates,
        roots,
        visited: vec![false; intermediates.len()],
        path: Vec::new(),
        budget: SIGNATURE_BUDGET,
    };
    let root = search.from(target)?;
    Some((root, search.path))
}

/// Signature checks one anchoring search may spend. Real paths need a handful; the cap keeps
/// hostile input (many certificates with one name and key, which all verify each other) from
/// making the search explode.
const SIGNATURE_BUDGET: usize = 512;
/// Longest path of intermediates considered; real meshes use one or two.
const MAX_DEPTH: usize = 16;

/// Depth-first search for a path to a root. Each intermediate is expanded at most once:
/// plain graph reachability, which finds a path whenever one exists.
struct Search<'s, 'a> {
    intermediates: &'s [&'s Cert<'a>],
    roots: &'s [Cert<'a>],
    visited: Vec<bool>,
    path: Vec<usize>,
    budget: usize,
}

impl Search<'_, '_> {
    fn verifies(&mut self, child: &Cert<'_>, issuer: &Cert<'_>) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        child.signed_by(issuer)
    }

    fn from(&mut self, target: &Cert<'_>) -> Option<usize> {
        // Name-matching candidates first: the usual case costs one signature check.
        for by_name in [true, false] {
            for i in 0..self.roots.len() {
                let root = &self.roots[i];
                if target.names_issuer(root) == by_name && self.verifies(target, root) {
                    return Some(i);
                }
            }
        }
        if self.path.len() >= MAX_DEPTH {
            return None;
        }
        for by_name in [true, false] {
            for i in 0..self.intermediates.len() {
                let cand = self.intermediates[i];
                if self.visited[i]
                    || target.names_issuer(cand) != by_name
                    || cand.der == target.der
                    || !self.verifies(target, cand)
                {
                    continue;
                }
                self.visited[i] = true;
                self.path.push(i);
                if let Some(root) = self.from(cand) {
                    return Some(root);
                }
                self.path.pop();
            }
        }
        None
    }
}
