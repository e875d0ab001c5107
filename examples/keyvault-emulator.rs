//! Standalone runner of the local Key Vault + Entra + managed-identity emulator (`cacerts_testkit::keyvault`).
//!
//! ```text
//! cargo run --example keyvault-emulator -- [--addr 127.0.0.1:PORT] [--identity-addr 127.0.0.1:PORT]
//!     [--state-dir DIR] [--seed-dir DIR] [--challenge-resource URL]
//! ```
//!
//! Once both listeners are up it prints ONE line of JSON on stdout (`vault_url`, `authority_host`,
//! `ca_cert_file`, `tenant_id`, `client_id`, `client_secret`, `federated_token_file`, `identity_endpoint`,
//! `identity_header`, `challenge_resource`) and serves until SIGTERM/SIGINT. The CA certificate and the
//! federated token file are written into `--state-dir` (default: a temporary directory removed on exit).
//! `--seed-dir DIR` stores the files `root-cert[.pem]`, `ca-cert[.pem]`, `ca-key[.pem]`, `cert-chain[.pem]`
//! found in DIR as the secrets `root-cert`, `ca-cert`, `ca-key`, `cert-chain`.
//!
//! Point a client at it with `SSL_CERT_FILE=<ca_cert_file> AZURE_AUTHORITY_HOST=<authority_host>` plus the
//! credential inputs, and disable challenge-resource verification (the vault is an IP address), or use
//! `--challenge-resource https://vault.test` with a `https://<name>.vault.test:PORT` vault URL that your
//! client resolves to 127.0.0.1. The control surface lives under `<vault_url>/_emulator/…` (see the module
//! docs of `cacerts_testkit::keyvault`).

use std::io::Write as _;
use std::path::PathBuf;

use cacerts_testkit::keyvault::{EmulatorOptions, KeyVaultEmulator};

const USAGE: &str = "usage: keyvault-emulator [--addr 127.0.0.1:PORT] [--identity-addr 127.0.0.1:PORT] \
[--state-dir DIR] [--seed-dir DIR] [--challenge-resource URL]";

const SEED_SECRETS: [&str; 4] = ["root-cert", "ca-cert", "ca-key", "cert-chain"];

fn parse_args() -> Result<(EmulatorOptions, Option<PathBuf>), String> {
    let mut opts = EmulatorOptions::default();
    let mut seed_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("missing value for {flag}\n{USAGE}"))?;
        match flag.as_str() {
            "--addr" => opts.addr = value.parse().map_err(|e| format!("invalid --addr {value:?}: {e}"))?,
            "--identity-addr" => {
                opts.identity_addr = value.parse().map_err(|e| format!("invalid --identity-addr {value:?}: {e}"))?
            }
            "--state-dir" => opts.state_dir = Some(PathBuf::from(value)),
            "--seed-dir" => seed_dir = Some(PathBuf::from(value)),
            "--challenge-resource" => opts.challenge_resource = value,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((opts, seed_dir))
}

fn seed(emu: &KeyVaultEmulator, dir: &std::path::Path) -> Result<(), String> {
    for name in SEED_SECRETS {
        let candidates = [dir.join(format!("{name}.pem")), dir.join(name)];
        if let Some(path) = candidates.iter().find(|p| p.is_file()) {
            let value = std::fs::read_to_string(path)
                .map_err(|e| format!("failed to read seed file {}: {e}", path.display()))?;
            emu.set_secret(name, &value);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (opts, seed_dir) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let emu = KeyVaultEmulator::start_with(opts).await;
    if let Some(dir) = seed_dir
        && let Err(message) = seed(&emu, &dir)
    {
        eprintln!("{message}");
        std::process::exit(2);
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", emu.info_json());
        let _ = stdout.flush();
    }
    wait_for_shutdown().await;
    // Dropping the emulator stops the listeners and removes a temporary state dir.
    drop(emu);
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
