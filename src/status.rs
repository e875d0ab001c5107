//! `cacerts-sync status`: reads the cluster once ([`crate::observe::read`]), assesses it
//! ([`crate::rotation::assess`]) and prints the result as text or JSON.
//!
//! Exit codes: 0 healthy; 3 `cacerts` missing or invalid, or istiod serving other roots than `cacerts` holds
//! (per `istio-ca-root-cert`); 1 the cluster could not be read (4 when that was a permission problem, 2 for a
//! kubeconfig problem).

use crate::config::StatusConfig;
use crate::error::{Classify, chain, exit};
use crate::rotation::assess;

/// `cacerts-sync status`.
pub async fn run(config: StatusConfig) -> u8 {
    let target = format!("secret:{}/{}", config.target.namespace, config.target.secret);
    let read = async {
        let client = crate::k8s::client().await?;
        crate::observe::read(client, &config.target).await
    };
    let view = match tokio::time::timeout(config.timeout, read).await {
        Ok(Ok(view)) => view,
        Ok(Err(e)) => {
            let class = e.class();
            tracing::error!(target = %target, class = class.as_str(), "status failed: {}", chain(&e));
            return class.exit_code();
        }
        Err(_) => {
            tracing::error!(target = %target, "status failed: the cluster did not answer within --timeout");
            return exit::TRANSIENT;
        }
    };
    let assessment = assess(&view, jiff::Timestamp::now(), &config.rotation);
    if config.json {
        println!("{}", serde_json::to_string_pretty(&assessment).expect("the assessment serializes"));
    } else {
        print!("{}", assessment.render_text());
    }
    if assessment.healthy { exit::OK } else { exit::INVALID }
}
