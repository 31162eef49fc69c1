//! Job ids and Message-IDs (INTERFACE.md "Identifiers").
//!
//! Job ids use only `[A-Za-z0-9-]`, at most 64 characters, so they go on the wire unchanged
//! as the ENVID (their xtext form, RFC 3461 §4, is the same string).

use chrono::Utc;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random_token(len: usize) -> String {
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// A new job id: `PREFIX-YYYYMMDDHHMMSS-xxxxxx` (UTC time, 6 random base-36 characters).
/// Prefix `ON` for onramp jobs, `OFF` for offramp jobs, `RPT` for reports received at the
/// return address, `DSN` for reports we send.
pub fn new_job_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        Utc::now().format("%Y%m%d%H%M%S"),
        random_token(6)
    )
}

/// A Message-ID `<JOBID.RANDOM@hostname>` (RFC 5322 §3.6.4), angle brackets included.
pub fn message_id(job: &str, hostname: &str) -> String {
    format!("<{job}.{}@{hostname}>", random_token(10))
}

/// True when `id` is a valid job id: 1–64 characters of `[A-Za-z0-9-]`.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_xtext_invariant() {
        let id = new_job_id("ON");
        assert!(is_job_id(&id), "{id}");
        // RFC 3461 §4: xtext encodes "+", "=", and chars outside 33..126; none occur.
        assert!(id
            .bytes()
            .all(|b| (33..=126).contains(&b) && b != b'+' && b != b'='));
        assert!(message_id(&id, "gw.example.test").starts_with(&format!("<{id}.")));
    }
}
