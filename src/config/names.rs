//! Per-cluster secret names: the four name flags may contain `{cluster}`, filled from `--cluster-name` (one
//! cluster) or from each kubeconfig context (`fleet check`). Pure; every failure is a usage error (exit 2).

use super::{ConfigError, SecretNames, secret_name};
use crate::cli;

/// The four secret names as given, possibly with a `{cluster}` placeholder; [`NameTemplates::resolve`] turns
/// them into one cluster's [`SecretNames`]. `fleet check` resolves the same templates once per cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplates {
    pub root_cert: String,
    pub ca_cert: String,
    pub ca_key: String,
    pub cert_chain: String,
}

/// The only placeholder the secret-name flags know.
pub const CLUSTER_PLACEHOLDER: &str = "{cluster}";

impl NameTemplates {
    /// Checks the placeholders of the four name flags (an unknown `{...}` is a usage error).
    pub fn from_args(args: &cli::SourceArgs) -> Result<Self, ConfigError> {
        let templates = Self {
            root_cert: args.root_cert_name.clone(),
            ca_cert: args.ca_cert_name.clone(),
            ca_key: args.ca_key_name.clone(),
            cert_chain: args.cert_chain_name.clone(),
        };
        for (flag, template) in templates.flags() {
            placeholders(flag, template)?;
        }
        Ok(templates)
    }

    fn flags(&self) -> [(&'static str, &str); 4] {
        [
            ("--root-cert-name", &self.root_cert),
            ("--ca-cert-name", &self.ca_cert),
            ("--ca-key-name", &self.ca_key),
            ("--cert-chain-name", &self.cert_chain),
        ]
    }

    /// Whether any name contains `{cluster}`.
    pub fn per_cluster(&self) -> bool {
        self.flags().iter().any(|(_, t)| t.contains(CLUSTER_PLACEHOLDER))
    }

    /// One cluster's secret names: `{cluster}` replaced by `cluster`, each result checked against Key Vault's
    /// naming rules. A template with `{cluster}` and no (or an empty) cluster name is a usage error rather than
    /// a literal `ca-cert-` lookup that would fail later with a confusing 404.
    pub fn resolve(&self, cluster: Option<&str>) -> Result<SecretNames, ConfigError> {
        let cluster = cluster.map(str::trim).filter(|c| !c.is_empty());
        if let Some(name) = cluster {
            cluster_name(name)?;
        }
        let one = |flag: &'static str, template: &str| -> Result<String, ConfigError> {
            if !template.contains(CLUSTER_PLACEHOLDER) {
                return secret_name(flag, template);
            }
            let Some(name) = cluster else {
                return Err(ConfigError::Invalid {
                    flag,
                    reason: format!(
                        "{template:?} uses {CLUSTER_PLACEHOLDER} but no cluster name is set: pass --cluster-name NAME \
                         (env CACERTS_SYNC_CLUSTER_NAME)"
                    ),
                });
            };
            secret_name(flag, &template.replace(CLUSTER_PLACEHOLDER, name))
        };
        Ok(SecretNames {
            root_cert: one("--root-cert-name", &self.root_cert)?,
            ca_cert: one("--ca-cert-name", &self.ca_cert)?,
            ca_key: one("--ca-key-name", &self.ca_key)?,
            cert_chain: one("--cert-chain-name", &self.cert_chain)?,
        })
    }
}

/// Refuses any `{...}` other than `{cluster}` and stray braces (Key Vault names never contain braces).
fn placeholders(flag: &'static str, template: &str) -> Result<(), ConfigError> {
    let rest = template.replace(CLUSTER_PLACEHOLDER, "");
    if let Some(start) = rest.find(['{', '}']) {
        let tail = &rest[start..];
        let shown = match (tail.starts_with('{'), tail.find('}')) {
            (true, Some(end)) => &tail[..=end],
            _ => &tail[..1],
        };
        return Err(ConfigError::Invalid {
            flag,
            reason: format!(
                "{template:?} has the unknown placeholder {shown}: the only placeholder is {CLUSTER_PLACEHOLDER}"
            ),
        });
    }
    Ok(())
}

/// A cluster name goes into Key Vault secret names: letters, digits and dashes.
fn cluster_name(name: &str) -> Result<(), ConfigError> {
    if name.len() > 100 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ConfigError::Invalid {
            flag: "--cluster-name",
            reason: format!("{name:?} must be letters, digits and dashes (it becomes part of Key Vault secret names)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{SourceSpec, source};
    use super::*;

    fn names(ca_cert: &str, ca_key: &str) -> NameTemplates {
        NameTemplates {
            root_cert: "root-cert".into(),
            ca_cert: ca_cert.into(),
            ca_key: ca_key.into(),
            cert_chain: "cert-chain-{cluster}".into(),
        }
    }

    fn source_args(extra: &[&str]) -> Result<SourceSpec, ConfigError> {
        use clap::Parser as _;
        let mut argv = vec!["cacerts-sync", "sync", "--vault-url", "https://kv.vault.azure.net"];
        argv.extend_from_slice(extra);
        let cli = cli::Cli::try_parse_from(argv).expect("parses");
        let cli::Command::Sync(args) = cli.command else { unreachable!() };
        source(&args.common.source, false)
    }

    #[test]
    fn cluster_placeholder_is_replaced_in_every_name_and_the_root_stays_shared() {
        let resolved = names("ca-cert-{cluster}", "{cluster}-ca-key").resolve(Some("eastus")).unwrap();
        assert_eq!(resolved.root_cert, "root-cert");
        assert_eq!(resolved.ca_cert, "ca-cert-eastus");
        assert_eq!(resolved.ca_key, "eastus-ca-key");
        assert_eq!(resolved.cert_chain, "cert-chain-eastus");
    }

    #[test]
    fn cluster_name_flag_reaches_the_vault_secret_names() {
        let spec = source_args(&["--cluster-name", "westeu", "--ca-key-name", "ca-key-{cluster}"]).unwrap();
        let SourceSpec::Vault(v) = spec else { panic!("vault source") };
        assert_eq!(v.names.ca_key, "ca-key-westeu");
        assert_eq!(v.names.ca_cert, "ca-cert", "names without a placeholder are kept as given");
    }

    #[test]
    fn a_placeholder_without_a_cluster_name_is_a_usage_error_naming_the_flag() {
        for cluster in [None, Some(""), Some("  ")] {
            let err = names("ca-cert-{cluster}", "ca-key").resolve(cluster).unwrap_err().to_string();
            assert!(err.contains("--ca-cert-name"), "{err}");
            assert!(err.contains("--cluster-name"), "{err}");
        }
        let err = source_args(&["--ca-cert-name", "ca-cert-{cluster}"]).unwrap_err();
        assert!(err.to_string().contains("no cluster name is set"), "{err}");
    }

    #[test]
    fn an_unknown_placeholder_is_a_usage_error_naming_it() {
        let err = source_args(&["--cluster-name", "a", "--ca-cert-name", "ca-cert-{region}"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--ca-cert-name") && text.contains("{region}"), "{text}");
        assert!(source_args(&["--cluster-name", "a", "--ca-key-name", "ca-key-{cluster"]).is_err());
        assert!(source_args(&["--cluster-name", "a", "--root-cert-name", "root}"]).is_err());
    }

    #[test]
    fn a_cluster_name_that_cannot_be_part_of_a_secret_name_is_refused() {
        let err = names("ca-cert-{cluster}", "ca-key").resolve(Some("east us")).unwrap_err().to_string();
        assert!(err.contains("--cluster-name"), "{err}");
        assert!(names("ca-cert-{cluster}", "ca-key").resolve(Some("east_us")).is_err());
    }

    #[test]
    fn a_cluster_name_without_placeholders_changes_nothing() {
        let spec = source_args(&["--cluster-name", "eastus"]).unwrap();
        let SourceSpec::Vault(v) = spec else { panic!("vault source") };
        assert_eq!(v.names, SecretNames::default());
    }
}
