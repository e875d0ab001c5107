//! Which roots istiod actually serves: istiod writes the roots of its CA into the ConfigMap
//! `istio-ca-root-cert` (key `root-cert.pem`) of every namespace, its own included, and rewrites it when it
//! loads other roots. Comparing that with `cacerts`' `root-cert.pem` tells whether istiod runs what
//! `cacerts` holds: after a restart (`--wait` waits for it) and on first contact (a Deployment with no
//! recorded fingerprint: restart it if istiod serves other roots, e.g. its self-signed CA).
//!
//! The comparison is by certificate set (DER), not by bytes: istiod rewrites the PEM (line endings, order,
//! comments may differ), and only which certificates it trusts matters.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::bundle::{self, SecretRole};
use crate::k8s::KubeError;

/// The ConfigMap istiod writes its roots into.
pub const CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key.
pub const KEY: &str = "root-cert.pem";

/// What `istio-ca-root-cert` says about the roots in `cacerts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// It holds exactly the roots of `cacerts`.
    Current,
    /// It holds other roots (an older bundle, istiod's self-signed CA) or nothing readable.
    Other,
    /// There is no such ConfigMap (no istiod ran yet), so nothing is known.
    Unknown,
}

impl Serving {
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::Current => "current",
            Serving::Other => "other",
            Serving::Unknown => "unknown",
        }
    }
}

/// The certificates of a PEM bundle as a set of DER encodings (`None` if it does not parse).
fn der_set(pem: &[u8]) -> Option<BTreeSet<Vec<u8>>> {
    bundle::parse_certificates(SecretRole::RootCert, pem).ok().map(|c| c.into_iter().collect())
}

/// Compares istiod's published roots with `roots_pem` (cacerts' `root-cert.pem`). Pure.
pub fn compare(configmap: Option<&ConfigMap>, roots_pem: &[u8]) -> Serving {
    let Some(cm) = configmap else { return Serving::Unknown };
    let Some(published) = cm.data.as_ref().and_then(|d| d.get(KEY)) else { return Serving::Other };
    match (der_set(published.as_bytes()), der_set(roots_pem)) {
        (Some(served), Some(ours)) if served == ours => Serving::Current,
        _ => Serving::Other,
    }
}

/// Reads `istio-ca-root-cert` in `namespace` (`None` when it does not exist).
pub async fn get(client: &kube::Client, namespace: &str) -> Result<Option<ConfigMap>, KubeError> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(CONFIGMAP)
        .await
        .map_err(|e| KubeError::new(format!("get configmap {namespace}/{CONFIGMAP}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn cm(pem: &str) -> ConfigMap {
        ConfigMap { data: Some([(KEY.to_string(), pem.to_string())].into()), ..Default::default() }
    }

    #[test]
    fn same_certificates_in_another_order_and_layout_are_current() {
        let a = self_signed("Root A");
        let b = self_signed("Root B");
        let ours = format!("{a}{b}");
        let theirs = format!("# istiod\n{}\n{}", b.replace('\n', "\r\n"), a);
        assert_eq!(compare(Some(&cm(&theirs)), ours.as_bytes()), Serving::Current);
    }

    #[test]
    fn a_missing_or_extra_root_is_other() {
        let a = self_signed("Root A");
        let b = self_signed("Root B");
        assert_eq!(compare(Some(&cm(&a)), format!("{a}{b}").as_bytes()), Serving::Other);
        assert_eq!(compare(Some(&cm(&format!("{a}{b}"))), a.as_bytes()), Serving::Other);
        assert_eq!(compare(Some(&cm(&b)), a.as_bytes()), Serving::Other);
    }

    #[test]
    fn no_configmap_is_unknown_and_an_empty_one_is_other() {
        let a = self_signed("Root A");
        assert_eq!(compare(None, a.as_bytes()), Serving::Unknown);
        assert_eq!(compare(Some(&ConfigMap::default()), a.as_bytes()), Serving::Other);
        assert_eq!(compare(Some(&cm("garbage")), a.as_bytes()), Serving::Other);
    }
}
