//! Fault matrix, Key Vault and material: the real binary against the Key Vault emulator (which answers as the
//! real service does, see `tests/testkit/src/keyvault.rs`) with one fault per case. The runner and what every
//! case asserts: `tests/faults/mod.rs`. The table of outcomes: `docs/faults.md`.

mod common;
mod faults;

use std::time::Duration;

use cacerts_testkit::keyvault::Fault;
use cacerts_testkit::pki::IntermediateOpts;
use faults::{Cacerts, Case, Start};

const ROTATED: [i64; 2] = [1, 1];

static CASES: &[Case] = &[
    // ---- Key Vault answers
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(401).path("/secrets/ca-key").always()),
        exit: 4,
        message: "401",
        ..Case::new("kv_401_on_a_get", "Key Vault 401 on every GET of ca-key", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.deny_secret("ca-key"),
        exit: 4,
        message: "the identity lacks 'get' on secrets",
        ..Case::new("kv_403_access_denied", "Key Vault 403 Forbidden/AccessDenied on ca-key", Start::Rotation)
    },
    Case {
        before: |env, _| _ = env.kv.set_secret_enabled("ca-key", false),
        exit: 2,
        message: "secret \"ca-key\" is disabled",
        ..Case::new("kv_disabled_secret", "ca-key disabled (403 Forbidden/SecretDisabled)", Start::Rotation)
    },
    Case {
        before: |env, _| _ = env.kv.soft_delete_secret("cert-chain"),
        exit: 2,
        message: "secret \"cert-chain\" was not found",
        ..Case::new("kv_soft_deleted_secret", "cert-chain soft-deleted (404 SecretNotFound)", Start::Rotation)
    },
    Case {
        args: &["--root-cert-name", "no-such-root"],
        exit: 2,
        message: "secret \"no-such-root\" was not found",
        ..Case::new("kv_404_wrong_name", "--root-cert-name names a missing secret (404)", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(429).retry_after(1).times(2).path("/secrets/ca-cert")),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kv_429_with_retry_after", "429 with Retry-After: 1, twice, then OK", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(429).times(1).path("/secrets/root-cert")),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kv_429_without_retry_after", "429 without Retry-After, once, then OK", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(500).times(2).path("/secrets/")),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kv_500_burst", "500 twice, then OK", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(503).times(2).path("/secrets/ca-key")),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new("kv_503_burst", "503 twice on ca-key, then OK", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(503).always().path("/secrets/ca-key")),
        exit: 1,
        message: "Key Vault is unavailable",
        ..Case::new("kv_503_persistent", "503 on every GET of ca-key (4 attempts)", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::delay(Duration::from_secs(30)).always().path("/secrets/ca-key")),
        args: &["--timeout", "2s"],
        exit: 1,
        message: "did not finish within --timeout 2s",
        ..Case::new("kv_timeout", "ca-key GET hangs 30 s; --timeout 2s", Start::Rotation)
    },
    Case {
        untrusted_vault_tls: true,
        exit: 2,
        message: "TLS certificate is not trusted",
        ..Case::new("kv_tls_untrusted", "vault TLS certificate from a CA not in SSL_CERT_FILE", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::status(503).always().path("/oauth2/v2.0/token")),
        // azure_identity's own retries of the token request are bounded (2), and an Entra 5xx is transient:
        // the pass ends after our per-GET retries (about 10 s) with its own message, well before --timeout.
        args: &["--timeout", "60s"],
        exit: 1,
        message: "the Entra token endpoint answered HTTP 503",
        ..Case::new("kv_token_endpoint_down", "Entra token endpoint answers 503 on every request", Start::Rotation)
    },
    Case {
        before: |env, _| env.kv.inject_fault(Fault::delay(Duration::from_millis(700)).path("/secrets/ca-cert")),
        during: Some(|env, ctx| env.upload(&ctx.new)),
        during_after: Duration::from_millis(300),
        message: "sync finished",
        cacerts: Cacerts::New,
        rollouts: ROTATED,
        ..Case::new(
            "kv_secret_changes_between_the_gets",
            "a rotation lands between the four GETs (torn read, re-read heals)",
            Start::Pending,
        )
    },
    Case {
        before: |env, _| _ = env.kv.set_secret("ca-cert", &"A".repeat(2 * 1024 * 1024)),
        exit: 3,
        message: "over the 1048576-byte limit",
        ..Case::new("kv_oversized_value", "ca-cert is 2 MB", Start::Rotation)
    },
    // ---- Material
    Case {
        before: |env, _| _ = env.kv.set_secret("ca-key", ""),
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_empty_ca_key", "ca-key is empty", Start::Rotation)
    },
    Case {
        before: |env, _| _ = env.kv.set_secret("root-cert", "\u{1}\u{2}\u{3}junk\u{7f}\u{0}"),
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_binary_junk", "root-cert is binary junk", Start::Rotation)
    },
    Case {
        before: |env, _| _ = env.kv.set_secret("cert-chain", &"-".repeat(10 * 1024 * 1024)),
        exit: 3,
        message: "over the 1048576-byte limit",
        ..Case::new("material_10_mb", "cert-chain is 10 MB", Start::Rotation)
    },
    Case {
        before: |env, ctx| {
            let der = ctx.new.ca_cert.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
            env.kv.set_secret("ca-cert", &der);
        },
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_der_instead_of_pem", "ca-cert is bare base64 DER, no PEM armour", Start::Rotation)
    },
    Case {
        before: |env, ctx| _ = env.kv.set_secret("root-cert", &format!("{}{}", ctx.new.root_cert, ctx.new.ca_key)),
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_key_in_root_cert", "root-cert also carries the private key", Start::Rotation)
    },
    Case {
        before: |env, _| {
            let a = env.pki.root_a();
            let other = env.pki.intermediate(&a, IntermediateOpts::default());
            env.remember_key(&other.key_pem);
            env.kv.set_secret("ca-key", &other.key_pem);
        },
        args: &["--consistency-timeout", "2s"],
        exit: 3,
        message: "still inconsistent after waiting",
        ..Case::new("material_key_of_another_intermediate", "ca-key belongs to another intermediate", Start::Rotation)
    },
    Case {
        before: |env, _| {
            let c = env.pki.root("Root C");
            let int = env.pki.default_intermediate(&c);
            env.remember_key(&int.key_pem);
            env.kv.set_secret("ca-cert", &int.cert_pem);
            env.kv.set_secret("ca-key", &int.key_pem);
        },
        args: &["--consistency-timeout", "2s"],
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_unanchored_intermediate", "ca-cert signed by a root not in root-cert", Start::Rotation)
    },
    Case {
        before: |env, _| {
            let a = env.pki.root_a();
            let opts = IntermediateOpts { is_ca: false, ..IntermediateOpts::default() };
            let int = env.pki.intermediate(&a, opts);
            let ca = env.pki.plugin_ca(&[&a], &int);
            env.upload(&ca);
        },
        exit: 3,
        message: "cacerts was left untouched",
        ..Case::new("material_intermediate_not_a_ca", "ca-cert has CA:FALSE", Start::Rotation)
    },
    Case {
        message: "unchanged",
        ..Case::new("steady_state_changes_nothing", "no fault, nothing new in the vault", Start::Steady)
    },
];

fault_cases!(CASES:
    kv_401_on_a_get,
    kv_403_access_denied,
    kv_disabled_secret,
    kv_soft_deleted_secret,
    kv_404_wrong_name,
    kv_429_with_retry_after,
    kv_429_without_retry_after,
    kv_500_burst,
    kv_503_burst,
    kv_503_persistent,
    kv_timeout,
    kv_tls_untrusted,
    kv_token_endpoint_down,
    kv_secret_changes_between_the_gets,
    kv_oversized_value,
    material_empty_ca_key,
    material_binary_junk,
    material_10_mb,
    material_der_instead_of_pem,
    material_key_in_root_cert,
    material_key_of_another_intermediate,
    material_unanchored_intermediate,
    material_intermediate_not_a_ca,
    steady_state_changes_nothing,
);
