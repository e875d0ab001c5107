//! `fleet` command line → one validated configuration. Everything checkable without I/O fails here with exit 2;
//! the context names themselves are checked against the kubeconfig in [`super::clusters`], also before any
//! request.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, CLUSTER_PLACEHOLDER, ConfigError, IstiodSelector, NameTemplates, VaultConfig, nonzero};
use crate::rotation::RotationOptions;

use super::cli::{ClustersArgs, FleetCheckArgs, FleetStatusArgs};

/// Which contexts to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These contexts, each with the namespace it was given (else the default namespace).
    Contexts(Vec<ContextSpec>),
    /// Every context of the kubeconfig, each in the default namespace.
    All,
}

/// One `--context NAME[=NAMESPACE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSpec {
    pub name: String,
    pub namespace: Option<String>,
}

/// What `fleet status` and `fleet check` share: the clusters and how to read them.
#[derive(Clone, Debug)]
pub struct ClustersConfig {
    pub kubeconfig: Option<PathBuf>,
    pub selection: Selection,
    pub namespace: String,
    pub secret: String,
    pub istiod: IstiodSelector,
    /// Per cluster.
    pub timeout: Duration,
    pub rotation: RotationOptions,
    pub json: bool,
}

/// `fleet status`.
#[derive(Clone, Debug)]
pub struct FleetStatusConfig {
    pub clusters: ClustersConfig,
}

/// Where `fleet check` gets the material about to be uploaded.
#[derive(Clone, Debug)]
pub enum CheckSource {
    /// `dir:PATH`; `{cluster}` in PATH is each cluster's name.
    Dir(String),
    /// The vault as it is now; the names are templates resolved per cluster.
    Vault { vault: Box<VaultConfig>, names: NameTemplates },
}

impl CheckSource {
    /// A short description for output: the vault URL or `dir:PATH` (templates unresolved).
    pub fn describe(&self) -> String {
        match self {
            CheckSource::Dir(p) => format!("dir:{p}"),
            CheckSource::Vault { vault, .. } => vault.url.clone(),
        }
    }

    /// Whether every cluster gets the same material (no `{cluster}` anywhere).
    pub fn shared(&self) -> bool {
        match self {
            CheckSource::Dir(p) => !p.contains(CLUSTER_PLACEHOLDER),
            CheckSource::Vault { names, .. } => !names.per_cluster(),
        }
    }
}

/// `fleet check`.
#[derive(Clone, Debug)]
pub struct FleetCheckConfig {
    pub clusters: ClustersConfig,
    pub source: CheckSource,
}

impl FleetStatusConfig {
    pub fn from_args(args: &FleetStatusArgs) -> Result<Self, ConfigError> {
        Ok(Self { clusters: ClustersConfig::from_args(&args.clusters)? })
    }
}

impl FleetCheckConfig {
    pub fn from_args(args: &FleetCheckArgs) -> Result<Self, ConfigError> {
        let clusters = ClustersConfig::from_args(&args.clusters)?;
        if args.source.cluster_name.is_some() {
            return Err(ConfigError::Invalid {
                flag: "--cluster-name",
                reason: "fleet check takes each cluster's name from its kubeconfig context: drop --cluster-name".into(),
            });
        }
        let source = match (&args.source.source, &args.source.vault_url) {
            (Some(spec), _) => match spec.split_once(':') {
                Some(("dir", path)) if !path.is_empty() => {
                    let rest = path.replace(CLUSTER_PLACEHOLDER, "");
                    if rest.contains(['{', '}']) {
                        return Err(ConfigError::Invalid {
                            flag: "--source",
                            reason: format!(
                                "{spec:?} has an unknown placeholder: the only one is {CLUSTER_PLACEHOLDER}"
                            ),
                        });
                    }
                    CheckSource::Dir(path.to_string())
                }
                _ => return Err(ConfigError::BadSource { spec: spec.clone(), expected: "dir:PATH" }),
            },
            (None, Some(_)) => {
                let names = NameTemplates::from_args(&args.source)?;
                // Resolved again per cluster; checked here once so a bad URL fails before any request.
                let placeholder = names.resolve(Some("x"))?;
                CheckSource::Vault { vault: Box::new(config::vault_config(&args.source, placeholder)?), names }
            }
            (None, None) => return Err(ConfigError::NoSource),
        };
        Ok(Self { clusters, source })
    }
}

impl ClustersConfig {
    pub fn from_args(args: &ClustersArgs) -> Result<Self, ConfigError> {
        namespace("--namespace", &args.namespace)?;
        if !config::is_dns_subdomain(&args.secret) {
            return Err(ConfigError::Invalid {
                flag: "--secret",
                reason: format!("{:?} is not a Secret name", args.secret),
            });
        }
        let selection = if args.all_contexts {
            if !args.contexts.is_empty() {
                return Err(ConfigError::Invalid {
                    flag: "--all-contexts",
                    reason: "give either --all-contexts or --context, not both".into(),
                });
            }
            Selection::All
        } else {
            if args.contexts.is_empty() {
                return Err(ConfigError::Invalid {
                    flag: "--context",
                    reason: "name the clusters: --context NAME (repeatable, NAME=NAMESPACE for another namespace) or \
                             --all-contexts"
                        .into(),
                });
            }
            let mut specs: Vec<ContextSpec> = Vec::new();
            for raw in &args.contexts {
                let spec = context_spec(raw)?;
                if specs.iter().any(|s| s.name == spec.name) {
                    return Err(ConfigError::Invalid {
                        flag: "--context",
                        reason: format!("context {:?} is given twice", spec.name),
                    });
                }
                specs.push(spec);
            }
            Selection::Contexts(specs)
        };
        let selector = args.istiod_selector.trim();
        if selector.is_empty() || selector.split(',').any(|t| t.trim().is_empty()) {
            return Err(ConfigError::BadSelector { selector: selector.into(), reason: "empty term" });
        }
        Ok(Self {
            kubeconfig: args.kubeconfig.clone(),
            selection,
            namespace: args.namespace.clone(),
            secret: args.secret.clone(),
            istiod: IstiodSelector::Label(selector.into()),
            timeout: nonzero("--timeout", args.timeout)?,
            rotation: RotationOptions {
                trust_propagation: args.trust_propagation.into(),
                expiry_warning: args.expiry_warning.into(),
            },
            json: args.output == crate::cli::OutputFormat::Json,
        })
    }
}

fn namespace(flag: &'static str, ns: &str) -> Result<(), ConfigError> {
    if !config::is_dns_label(ns) {
        return Err(ConfigError::Invalid { flag, reason: format!("{ns:?} is not a namespace name") });
    }
    Ok(())
}

/// `NAME` or `NAME=NAMESPACE`. Context names are free text in a kubeconfig (`arn:aws:eks:…`, `user@cluster`), so
/// only emptiness is refused; the namespace must be a namespace name.
fn context_spec(raw: &str) -> Result<ContextSpec, ConfigError> {
    let (name, ns) = match raw.rsplit_once('=') {
        Some((name, ns)) => (name.trim(), Some(ns.trim())),
        None => (raw.trim(), None),
    };
    if name.is_empty() {
        return Err(ConfigError::Invalid { flag: "--context", reason: format!("{raw:?} names no context") });
    }
    if let Some(ns) = ns {
        namespace("--context", ns)?;
    }
    Ok(ContextSpec { name: name.into(), namespace: ns.map(str::to_owned) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<FleetCheckConfig, ConfigError> {
        let mut argv = vec!["cacerts-sync", "fleet", "check"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("parses");
        let crate::cli::Command::Fleet(mut fleet) = cli.command else { unreachable!() };
        fleet.take_global_cluster_flags(&cli.context, cli.kubeconfig.as_ref());
        let super::super::cli::FleetCommand::Check(check) = fleet.command else { unreachable!() };
        FleetCheckConfig::from_args(&check)
    }

    #[test]
    fn contexts_take_an_optional_namespace() {
        let c = parse(&["--context", "east", "--context", "west=aks-istio-system", "--source", "dir:/x"]).unwrap();
        assert_eq!(
            c.clusters.selection,
            Selection::Contexts(vec![
                ContextSpec { name: "east".into(), namespace: None },
                ContextSpec { name: "west".into(), namespace: Some("aks-istio-system".into()) },
            ])
        );
    }

    #[test]
    fn no_clusters_duplicate_contexts_and_bad_namespaces_are_usage_errors() {
        assert!(parse(&["--source", "dir:/x"]).unwrap_err().to_string().contains("--all-contexts"));
        assert!(parse(&["--context", "a,a", "--source", "dir:/x"]).unwrap_err().to_string().contains("twice"));
        assert!(parse(&["--context", "a=Not_A_Namespace", "--source", "dir:/x"]).is_err());
        assert!(parse(&["--context", "=ns", "--source", "dir:/x"]).is_err());
    }

    #[test]
    fn check_sources_keep_cluster_templates_for_later() {
        let c = parse(&["--all-contexts", "--source", "dir:/ca/{cluster}"]).unwrap();
        assert!(!c.source.shared());
        let c =
            parse(&["--all-contexts", "--vault-url", "https://kv.vault.azure.net", "--ca-cert-name", "ca-{cluster}"])
                .unwrap();
        let CheckSource::Vault { names, .. } = &c.source else { panic!("vault") };
        assert_eq!(names.resolve(Some("east")).unwrap().ca_cert, "ca-east");
        assert!(parse(&["--all-contexts", "--source", "dir:/ca/{region}"]).is_err());
        assert!(
            parse(&["--all-contexts", "--vault-url", "https://kv.vault.azure.net", "--ca-cert-name", "c-{x}"]).is_err()
        );
    }

    #[test]
    fn fleet_check_refuses_a_single_cluster_name() {
        let err = parse(&["--all-contexts", "--vault-url", "https://kv.vault.azure.net", "--cluster-name", "a"]);
        assert!(err.unwrap_err().to_string().contains("context"));
    }
}
