//! A strict PEM scanner: raw secret bytes → labelled DER blocks, or a [`ParseError`] naming the block.
//!
//! Why not the `pem` crate: we need the block index in every error, and we must refuse what Go's
//! `encoding/pem` (istiod) would silently skip: an indented or single-line `BEGIN`, a block whose
//! base64 is bad, a stray `END`. Tolerated, as Go tolerates them: CRLF, text before, between and
//! after blocks, blank lines and indentation inside the base64 body, trailing whitespace.
//!
//! Error messages quote labels and line numbers only, never body text: a key's base64 must not
//! reach a log through an error.

use base64::Engine as _;
use zeroize::{Zeroize as _, Zeroizing};

use super::{MAX_SECRET_BYTES, ParseError, SecretRole};

/// One decoded PEM block. Its bytes are zeroized when it is dropped: for `ca-key` they are the private key.
pub(crate) struct Block {
    /// The label between `BEGIN ` and `-----`, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl Drop for Block {
    fn drop(&mut self) {
        self.der.zeroize();
    }
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
/// Longest label we accept; real ones are at most ~25 characters.
const MAX_LABEL: usize = 64;

fn expected_label(role: SecretRole) -> &'static str {
    match role {
        SecretRole::CaKey => "PRIVATE KEY",
        _ => "CERTIFICATE",
    }
}

/// Scans `input` into its PEM blocks; at least one block on success.
pub(crate) fn scan(role: SecretRole, input: &[u8]) -> Result<Vec<Block>, ParseError> {
    if input.len() > MAX_SECRET_BYTES {
        return Err(ParseError::Oversized { secret: role, size: input.len(), limit: MAX_SECRET_BYTES });
    }
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty { secret: role });
    }
    let text = std::str::from_utf8(input).map_err(|e| ParseError::NotUtf8 { secret: role, offset: e.valid_up_to() })?;

    let malformed = |block: usize, reason: String| ParseError::MalformedPem { secret: role, block, reason };

    let mut blocks = Vec::new();
    // Inside a block: (label, first line number, base64 body, headers seen).
    let mut open: Option<(String, usize, Zeroizing<String>, bool)> = None;
    for (n, raw_line) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw_line.trim_end();
        let index = blocks.len();
        match open.as_mut() {
            None => {
                if let Some(rest) = line.strip_prefix(BEGIN) {
                    let label = marker_label(rest).ok_or_else(|| {
                        malformed(
                            index,
                            format!(
                                "line {line_no}: BEGIN line must be exactly \"-----BEGIN <LABEL>-----\" on a line of its own (was the value flattened onto one line?)"
                            ),
                        )
                    })?;
                    open = Some((label.to_owned(), line_no, Zeroizing::new(String::new()), false));
                } else if line.trim_start().starts_with(BEGIN) {
                    return Err(malformed(
                        index,
                        format!("line {line_no}: BEGIN line is indented; istiod's PEM decoder would skip this block"),
                    ));
                } else if line.trim_start().starts_with(END) {
                    return Err(malformed(index, format!("line {line_no}: END line without a BEGIN line")));
                }
            }
            Some((label, start, body, headers)) => {
                let trimmed = line.trim_start();
                if let Some(rest) = trimmed.strip_prefix(END) {
                    if line.len() != trimmed.len() {
                        return Err(malformed(index, format!("line {line_no}: END line is indented")));
                    }
                    let end_label = marker_label(rest).ok_or_else(|| {
                        malformed(index, format!("line {line_no}: END line must be exactly \"-----END {label}-----\""))
                    })?;
                    if end_label != label.as_str() {
                        return Err(malformed(
                            index,
                            format!("line {line_no}: END label \"{end_label}\" does not match BEGIN label \"{label}\""),
                        ));
                    }
                    if body.is_empty() {
                        return Err(malformed(index, format!("block starting at line {start} has an empty body")));
                    }
                    let der = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).map_err(|_| {
                        // The decoder's error quotes the offending byte; keep it out (it may be key material).
                        malformed(index, format!("block starting at line {start} is not valid base64"))
                    })?;
                    if *headers && label.ends_with("PRIVATE KEY") {
                        return Err(ParseError::EncryptedKey { secret: role, block: index });
                    }
                    if *headers {
                        return Err(malformed(index, format!("block starting at line {start} has RFC 1421 headers")));
                    }
                    blocks.push(Block { label: std::mem::take(label), der });
                    open = None;
                } else if trimmed.starts_with(BEGIN) {
                    return Err(malformed(
                        index,
                        format!(
                            "line {line_no}: BEGIN line inside the block starting at line {start} (missing END line)"
                        ),
                    ));
                } else if trimmed.contains(':') {
                    // RFC 1421 header such as `Proc-Type: 4,ENCRYPTED`.
                    *headers = true;
                } else {
                    body.extend(trimmed.chars().filter(|c| *c != ' ' && *c != '\t'));
                }
            }
        }
    }
    if let Some((label, start, ..)) = open {
        return Err(malformed(blocks.len(), format!("block \"{label}\" starting at line {start} has no END line")));
    }
    if blocks.is_empty() {
        return Err(ParseError::NotPem { secret: role, expected: expected_label(role) });
    }
    Ok(blocks)
}

/// `rest` is what follows `-----BEGIN ` or `-----END `; returns the label if the line is exactly a marker.
fn marker_label(rest: &str) -> Option<&str> {
    let label = rest.strip_suffix(DASHES)?;
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL
        && label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'-' || b == b'_')
        && !label.starts_with(' ')
        && !label.ends_with(' ');
    ok.then_some(label)
}

/// The certificates Go's `CertPool.AppendCertsFromPEM` would take from `input`: every `CERTIFICATE` block
/// that decodes, skipping what does not (a block without its END line, bad base64, other labels). Used only
/// to run istiod's check on a value the strict [`scan`] refused, so that the refusal says whether istiod
/// would also fail.
pub(crate) fn go_certificate_blocks(input: &[u8]) -> Vec<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(input) else { return Vec::new() };
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.split('\n').map(str::trim_end) {
        if line == "-----BEGIN CERTIFICATE-----" {
            // A BEGIN inside an open block abandons it, as Go's decoder resumes after a broken block.
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b) = body.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b.as_bytes())
            {
                out.push(der);
            }
        } else if let Some(b) = body.as_mut() {
            if line.starts_with("-----") || line.contains(':') {
                body = None;
            } else {
                b.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
    }
    out
}
