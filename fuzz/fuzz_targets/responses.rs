//! Fuzz target for what the servers send: the Kubernetes objects `status`, `sync` and the restart step read,
//! and the Key Vault answers the source decodes.
//!
//! The input is split at NUL bytes into up to six parts:
//!
//! 0. the `cacerts` Secret (JSON, into `k8s_openapi`'s `Secret`, as kube decodes it),
//! 1. an istiod Deployment (JSON),
//! 2. the `istio-ca-root-cert` ConfigMap (JSON),
//! 3. a Key Vault GET body (JSON, into the SDK's `models::Secret`, through `azure_core::json` as the SDK does),
//! 4. a Key Vault error body (its `error.innererror.code`),
//! 5. a `Retry-After` header value.
//!
//! Whatever deserializes goes through the crate's own functions: `ClusterView::from_objects`, the
//! `status` assessment (`rotation::assess` at a fixed "now", then its JSON and text renderings), the
//! rotation-history annotation, `material_of` / `is_managed` / `foreign_keys` / `changed_keys`,
//! `istiod_roots::compare`, `keyvault::decode_secret`, `keyvault::inner_error_code_of` and
//! `keyvault::parse_retry_after`. Besides "never panics" it asserts invariants that callers rely on (see the
//! `assert!`s): the view holds exactly the Secret's data, the history annotation is stable once written,
//! `compare` finds a ConfigMap made from the roots themselves current and agrees with `status`, a decoded
//! value is never over `MAX_SECRET_BYTES`, and a parsable `ca-key` never shows up in the status renderings.
#![no_main]

use std::time::Duration;

use azure_security_keyvault_secrets::models::Secret as VaultSecret;
use cacerts_sync::bundle::{self, MAX_SECRET_BYTES, RawMaterial, SecretRole};
use cacerts_sync::istiod_roots::{self, Serving};
use cacerts_sync::observe::{ClusterView, ROOT_CERT_CONFIGMAP_KEY};
use cacerts_sync::restart::recorded_fingerprint;
use cacerts_sync::rotation::{self, HISTORY_ANNOTATION, HISTORY_VERSION, History, RotationOptions};
use cacerts_sync::sink::secret::{FOREIGN_KEYS, changed_keys, foreign_keys, is_managed, material_of};
use cacerts_sync::source::SourceError;
use cacerts_sync::source::keyvault::{self, RETRY_AFTER_CAP};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use libfuzzer_sys::fuzz_target;

const VAULT: &str = "https://v.vault.azure.net/";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |b| *b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let (secret_json, deployment_json, configmap_json) = (next(), next(), next());
    let (vault_json, vault_error, retry_after) = (next(), next(), next());

    let secret: Option<Secret> = serde_json::from_slice(secret_json).ok();
    let deployments: Vec<Deployment> = serde_json::from_slice(deployment_json).ok().into_iter().collect();
    let configmap: Option<ConfigMap> = serde_json::from_slice(configmap_json).ok();

    if let Some(s) = &secret {
        secret_helpers(s);
    }
    let view = ClusterView::from_objects("istio-system", "cacerts", secret.as_ref(), &deployments, configmap.as_ref());
    check_view(&view, secret.as_ref(), &deployments, configmap.as_ref());
    if let Some(c) = &view.cacerts {
        check_history(c.annotations.get(HISTORY_ANNOTATION).map(String::as_str));
    }
    check_compare(&view, configmap.as_ref());
    check_status(&view, secret.as_ref(), &deployments, configmap.as_ref());

    check_vault_body(vault_json);
    let _ = keyvault::inner_error_code_of(vault_error);
    check_retry_after(&String::from_utf8_lossy(retry_after));
});

/// The value a key has in the Secret as the tool reads it: `data` first, then `stringData`, else empty.
fn expected_value(s: &Secret, key: &str) -> Vec<u8> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return v.0.clone();
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).map(|v| v.clone().into_bytes()).unwrap_or_default()
}

fn secret_helpers(s: &Secret) {
    let material = material_of(s);
    for role in SecretRole::ALL {
        assert_eq!(material.get(role), expected_value(s, role.file_name()).as_slice(), "material_of({role:?})");
    }
    assert!(changed_keys(s, &material).is_empty(), "the Secret's own material counts as changed");
    let empty = RawMaterial::from_fn(|_| Vec::new());
    let changed = changed_keys(s, &empty);
    let non_empty: Vec<SecretRole> = SecretRole::ALL.into_iter().filter(|r| !material.get(*r).is_empty()).collect();
    assert_eq!(changed, non_empty, "changed_keys against empty material");

    let foreign = foreign_keys(s);
    let present = |k: &str| {
        s.data.as_ref().is_some_and(|d| d.contains_key(k)) || s.string_data.as_ref().is_some_and(|d| d.contains_key(k))
    };
    let expected: Vec<&str> = FOREIGN_KEYS.into_iter().filter(|k| present(k)).collect();
    assert_eq!(foreign, expected, "foreign_keys");

    let label = s.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by"));
    assert_eq!(is_managed(s), label.map(String::as_str) == Some("cacerts-sync"), "is_managed");
}

fn check_view(view: &ClusterView, secret: Option<&Secret>, deployments: &[Deployment], cm: Option<&ConfigMap>) {
    assert_eq!(view.cacerts.is_some(), secret.is_some());
    if let (Some(c), Some(s)) = (&view.cacerts, secret) {
        for role in SecretRole::ALL {
            assert_eq!(c.material.get(role), expected_value(s, role.file_name()).as_slice(), "view material {role:?}");
        }
        assert_eq!(c.annotations, s.metadata.annotations.clone().unwrap_or_default());
        assert_eq!(c.managed, is_managed(s));
    }
    assert_eq!(view.istiod.len(), deployments.len());
    assert!(view.istiod.windows(2).all(|w| w[0].name <= w[1].name), "deployments sorted by name");
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let seen = view.istiod.iter().find(|i| i.name == name).expect("every deployment is in the view");
        assert_eq!(seen.recorded_root_fingerprint.as_deref(), recorded_fingerprint(d));
        assert_eq!(seen.generation, d.metadata.generation);
    }
    let served = cm.and_then(|c| c.data.as_ref()?.get(ROOT_CERT_CONFIGMAP_KEY).cloned());
    assert_eq!(view.served_roots_pem, served);
}

/// Once the tool wrote a history, it reads the same one back (timestamps are normalised to whole seconds on
/// the first write, so the check is on the second round).
fn check_history(annotation: Option<&str>) {
    let Some(h) = History::parse(annotation) else { return };
    assert_eq!(h.v, HISTORY_VERSION);
    let written = h.to_annotation();
    let reread = History::parse(Some(&written)).expect("a history the tool wrote must parse again");
    assert_eq!(reread.to_annotation(), written, "history annotation not stable");
}

fn check_compare(view: &ClusterView, cm: Option<&ConfigMap>) {
    let roots: &[u8] = view.cacerts.as_ref().map_or(&[][..], |c| &c.material.root_cert);
    assert_eq!(istiod_roots::compare(None, roots), Serving::Unknown);
    let _ = istiod_roots::compare(cm, roots);
    // A ConfigMap istiod wrote from exactly these roots (same PEM) is current.
    if let Ok(pem) = std::str::from_utf8(roots)
        && bundle::parse_certificates(SecretRole::RootCert, roots).is_ok()
    {
        let own = ConfigMap {
            data: Some([(istiod_roots::KEY.to_string(), pem.to_string())].into()),
            ..Default::default()
        };
        assert_eq!(istiod_roots::compare(Some(&own), roots), Serving::Current, "own roots not current");
    }
}

fn check_status(view: &ClusterView, secret: Option<&Secret>, deployments: &[Deployment], cm: Option<&ConfigMap>) {
    let now: jiff::Timestamp = "2026-12-03T00:00:00Z".parse().expect("fixed now");
    let assessment = rotation::assess(view, now, &RotationOptions::default());
    let json = serde_json::to_string(&assessment).expect("the assessment serializes (status --output json)");
    let text = assessment.render_text();
    let debug = format!("{assessment:?}");

    assert_eq!(assessment.cacerts_found, secret.is_some());
    assert_eq!(assessment.healthy, assessment.problems.is_empty());
    assert_eq!(assessment.deployments.len(), view.istiod.len());
    for d in &assessment.deployments {
        if d.restarted_for_current_roots {
            assert!(assessment.root_fingerprint.is_some());
            assert_eq!(d.recorded_root_fingerprint, assessment.root_fingerprint);
        }
    }
    // status and the restart step (istiod_roots::compare) must agree on whether istiod serves cacerts' roots.
    if let (Some(matches), Some(c)) = (assessment.served_roots.matches_cacerts, &view.cacerts) {
        let serving = istiod_roots::compare(cm, &c.material.root_cert);
        assert_eq!(matches, serving == Serving::Current, "status and compare disagree");
    }

    // The private key never leaves through the renderings: no line of a parsable ca-key's PEM body shows up,
    // unless the same text is also in a place that is rendered on purpose (certificates, names, annotations).
    let Some(c) = &view.cacerts else { return };
    if bundle::parse_private_key(&c.material.ca_key).is_err() {
        return;
    }
    let mut public: Vec<u8> = Vec::new();
    for role in [SecretRole::RootCert, SecretRole::CaCert, SecretRole::CertChain] {
        public.extend_from_slice(c.material.get(role));
    }
    public.extend(serde_json::to_vec(&c.annotations).unwrap_or_default());
    public.extend(serde_json::to_vec(&secret.map(|s| &s.metadata)).unwrap_or_default());
    public.extend(serde_json::to_vec(deployments).unwrap_or_default());
    public.extend(serde_json::to_vec(&cm).unwrap_or_default());
    let key = String::from_utf8_lossy(&c.material.ca_key);
    for line in key.lines().map(str::trim) {
        let base64 = line.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if line.len() < 32 || !base64 || contains(&public, line.as_bytes()) {
            continue;
        }
        for (what, rendered) in [("json", &json), ("text", &text), ("debug", &debug)] {
            assert!(!rendered.contains(line), "ca-key material in the status {what} rendering");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_vault_body(body: &[u8]) {
    let Ok(model) = azure_core::json::from_json::<_, VaultSecret>(body) else { return };
    let size = model.value.as_ref().map_or(0, String::len);
    let value = model.value.clone().unwrap_or_default();
    let id = model.id.clone();
    match keyvault::decode_secret(VAULT, SecretRole::CaKey, model) {
        Ok((bytes, version)) => {
            assert!(bytes.len() <= MAX_SECRET_BYTES, "decoded value over the limit");
            assert_eq!(bytes, value.as_bytes());
            // The version is one segment of the id parsed as a URL: percent-encoded, so no '/', blank or
            // control character (the URL parser drops tabs and newlines from the id, so it need not appear
            // verbatim in it).
            let odd = |c: char| c == '/' || c == ' ' || c.is_control();
            assert!(!version.chars().any(odd), "version {version:?} is not one clean path segment");
            assert!(version.is_empty() || id.is_some(), "a version without an id");
        }
        Err(SourceError::TooLarge { size: reported, limit, role, .. }) => {
            assert_eq!(reported, size as u64);
            assert_eq!(limit, MAX_SECRET_BYTES);
            assert!(size > MAX_SECRET_BYTES);
            assert_eq!(role, SecretRole::CaKey);
        }
        Err(other) => panic!("decode_secret failed otherwise: {other}"),
    }
}

fn check_retry_after(value: &str) {
    let Some(ra) = keyvault::parse_retry_after(value) else { return };
    assert_eq!(Some(ra.as_secs()), value.trim().parse::<u64>().ok());
    // The wait the retry loop derives from it stays within the cap (or the backoff, if that is longer).
    for attempt in 1..4u32 {
        let backoff = Duration::from_secs(1 << (attempt - 1));
        let wait = ra.min(RETRY_AFTER_CAP).max(backoff);
        assert!(wait <= RETRY_AFTER_CAP.max(backoff));
    }
}
