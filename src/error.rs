//! Failure classes and the exit codes they map to.
//!
//! Every error that ends a pass is classified once, here, so that the one-shot exit code, the retry decision
//! in watch mode and the `result` label of the pass metric all agree.

use std::time::Duration;

/// What kind of failure ended a pass. The class decides the exit code and whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// Network trouble, 5xx, 429 or write conflicts that outlasted the retries. Retrying later may help.
    Transient,
    /// The command line or the environment is wrong. Retrying will not help until someone fixes it.
    Usage,
    /// The material in the source is invalid or inconsistent (a torn rotation that did not heal).
    Invalid,
    /// Entra, Key Vault or Kubernetes refused our identity or its permissions.
    Auth,
    /// A rotation step the time gates refuse (not yet safe); nothing was written. Not a failure for backoff:
    /// it goes through by itself once safe.
    Blocked,
}

impl FailureClass {
    /// The process exit code of a one-shot subcommand that failed with this class.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Transient => exit::TRANSIENT,
            FailureClass::Usage => exit::USAGE,
            FailureClass::Invalid | FailureClass::Blocked => exit::INVALID,
            FailureClass::Auth => exit::AUTH,
        }
    }

    /// The value of the `result` label on pass metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Usage => "usage",
            FailureClass::Invalid => "invalid",
            FailureClass::Auth => "auth",
            FailureClass::Blocked => "blocked",
        }
    }
}

/// Exit codes shared by every one-shot subcommand (documented in the README).
pub mod exit {
    /// Success, whether something changed or not.
    pub const OK: u8 = 0;
    /// Transient failure: network, 5xx, 429 or conflicts still failing after retries.
    pub const TRANSIENT: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// Invalid or inconsistent material; nothing was written.
    pub const INVALID: u8 = 3;
    /// Authentication or permission failure.
    pub const AUTH: u8 = 4;
}

/// Implemented by every boundary error so the pass can classify it without knowing its internals.
pub trait Classify {
    /// The failure class of this error.
    fn class(&self) -> FailureClass;

    /// How long the remote side asked us to wait before trying again (`Retry-After` on a 429 or 503).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Removes anything that could be secret material from text that came from a server.
///
/// A real API server echoes the patched object in some 422 messages (bad base64 in a Secret patch), and
/// `cacerts` holds a private key, so server text is scrubbed before it reaches a log line or an Event: PEM
/// blocks and long base64 runs become `<redacted>`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        out.push_str(&rest[..start]);
        match rest[start..]
            .find("-----END")
            .and_then(|end| rest[start + end + 8..].find("-----").map(|tail| start + end + 8 + tail + 5))
        {
            Some(stop) => {
                out.push_str("<redacted>");
                rest = &rest[stop..];
            }
            None => {
                // No END: a truncated block, or a message that only names a PEM header (`expected "-----BEGIN
                // CERTIFICATE-----"`). Redact the header and whatever base64 body follows it, keep the rest.
                let stop = unterminated_block_end(&rest[start..]);
                out.push_str("<redacted>");
                rest = &rest[start + stop..];
            }
        }
    }
    out.push_str(rest);
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut scrubbed = String::with_capacity(out.len());
    let mut run = String::new();
    for c in out.chars() {
        if is_b64(c) {
            run.push(c);
            continue;
        }
        flush(&mut scrubbed, &mut run);
        scrubbed.push(c);
    }
    flush(&mut scrubbed, &mut run);
    scrubbed
}

/// Length of an unterminated PEM block at the start of `text`: the `-----BEGIN …-----` header (or up to the end
/// of the line, if it is cut short) and the base64 body lines that follow it.
fn unterminated_block_end(text: &str) -> usize {
    let header_end =
        text[10..].find("-----").map(|i| 10 + i + 5).unwrap_or_else(|| text.find(['\n', '"']).unwrap_or(text.len()));
    let body = text[header_end..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\r' | '\n' | ' ')))
        .unwrap_or(text.len() - header_end);
    header_end + body
}

fn flush(out: &mut String, run: &mut String) {
    // 40+ characters of base64 without a break is never an identifier or a message word. Lowercase hex
    // (fingerprints, version ids) is kept: key material in base64 always has other characters.
    let hex = run.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if run.len() >= 40 && !hex {
        out.push_str("<redacted>");
    } else {
        out.push_str(run);
    }
    run.clear();
}

/// Writes an error and its whole `source()` chain on one line: `a: b: c`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Some libraries repeat their source's text in their own message; don't print it twice.
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    one_line(&redact(&out))
}

/// Joins a multi-line message into one line (azure_identity appends "\nTo troubleshoot, visit …"): a log
/// line, an Event message and the final summary stay one line each.
fn one_line(text: &str) -> String {
    if !text.contains('\n') {
        return text.to_owned();
    }
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_source_becomes_one_line() {
        let inner = std::io::Error::other(
            "WorkloadIdentityCredential authentication failed.\nTo troubleshoot, visit https://aka.ms/x",
        );
        let text = chain(&inner);
        assert_eq!(text, "WorkloadIdentityCredential authentication failed. To troubleshoot, visit https://aka.ms/x");
    }

    #[test]
    fn redact_removes_pem_blocks_and_long_base64_but_keeps_words() {
        let text = "Secret \"cacerts\" is invalid: data[ca-key.pem]: -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n and {\"ca-key.pem\":\"TUlHSEFnRUFNQk1HQnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VIQkcwd2F3SUJBUVFn\"} (fingerprint 0123abcd)";
        let out = redact(text);
        assert!(!out.contains("MIGHAgEA"), "{out}");
        assert!(!out.contains("TUlHSEFn"), "{out}");
        assert!(out.contains("Secret \"cacerts\" is invalid"));
        assert!(out.contains("fingerprint 0123abcd"));
        assert_eq!(redact("secrets \"cacerts\" not found"), "secrets \"cacerts\" not found");
        let truncated = "key: -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0w\nawIBAQQg";
        assert_eq!(redact(truncated), "key: <redacted>", "a cut-off block goes whole");
        let hint =
            r#"root-cert: no PEM block found (expected "-----BEGIN CERTIFICATE-----"); cacerts was left untouched"#;
        assert_eq!(
            redact(hint),
            r#"root-cert: no PEM block found (expected "<redacted>"); cacerts was left untouched"#,
            "a header named in a message hides only itself, not the rest of the message"
        );
        let fp = "b3615068f75706bdb0e449aece661b17414922ab271c55578e70e8c4754eb5b6";
        assert_eq!(redact(fp), fp, "fingerprints survive");
    }
}
