//! DSNs the offramp sends (RFC 3464 + RFC 6522), written by hand so the returned headers
//! stay byte-exact.

use chrono::{DateTime, Utc};

use super::fields::header_end;

/// One per-recipient block of an outgoing DSN (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The ORCPT as `type;addr` (e.g. `rfc822;+15550100@gw.example`), written as given
    /// (RFC 3464 §2.3.1). `None` when the client sent no ORCPT.
    pub original_recipient: Option<String>,
    /// The recipient address; written `Final-Recipient: rfc822;addr` (RFC 3464 §2.3.2).
    pub final_recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (RFC 3464 §2.3.3).
    pub action: String,
    /// Status code, e.g. `5.6.1` (RFC 3464 §2.3.4, RFC 3463).
    pub status: String,
    /// e.g. `smtp; 554 5.6.1 no TIFF-F image part` or `X-T37gw; fax sent, 3 pages`
    /// (RFC 3464 §2.3.6).
    pub diagnostic_code: Option<String>,
}

/// Everything an outgoing DSN says (RFC 3464 §2, RFC 6522 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingDsn {
    /// Host name; written `Reporting-MTA: dns; host` (RFC 3464 §2.2.2).
    pub reporting_mta: String,
    /// Header From, e.g. `MAILER-DAEMON@host`.
    pub from: String,
    /// Header To: the envelope sender of the original message.
    pub to: String,
    /// The ENVID as received (xtext-decoded); `Original-Envelope-Id` only when given
    /// (RFC 3464 §2.2.1).
    pub envid: Option<String>,
    /// When the original arrived; `Arrival-Date` (RFC 3464 §2.2.5, RFC 5322 date).
    pub arrival_date: DateTime<Utc>,
    /// At least one recipient block.
    pub recipients: Vec<DsnRecipient>,
    /// The original message as received.
    pub original: Vec<u8>,
    /// RET=FULL: the whole original as message/rfc822; else its header section as
    /// text/rfc822-headers (RFC 3461 §4.3, RFC 6522 §3).
    pub return_full: bool,
    /// Message-ID of the DSN, with angle brackets.
    pub message_id: String,
    /// The human-readable first part (text/plain, UTF-8).
    pub human_text: String,
}

/// Build a complete RFC 5322 message with CRLF line ends: header (From, To, Subject
/// `Delivery Status Notification (Failure|Delay|Success|Relay)`, Date, Message-ID,
/// Auto-Submitted, MIME-Version, `multipart/report; report-type=delivery-status`), then the
/// three RFC 6522 parts: text/plain, message/delivery-status, and the returned original.
///
/// The returned part keeps the original's bytes; only bare CR or LF line ends are turned
/// into CRLF (an original received over SMTP is returned byte-exact). Header values given
/// here have CR/LF replaced by spaces so no field can be injected.
pub fn build_dsn(dsn: &OutgoingDsn) -> Vec<u8> {
    let returned = returned_bytes(dsn);
    let human = crlf(dsn.human_text.as_bytes());
    let boundary = boundary(dsn, &[&returned, &human]);
    let mut out = String::new();
    let mut h = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&one_line(value));
        out.push_str("\r\n");
    };
    h("From", &dsn.from);
    h("To", &dsn.to);
    h(
        "Subject",
        &format!("Delivery Status Notification ({})", subject_word(dsn)),
    );
    h("Date", &Utc::now().to_rfc2822());
    h("Message-ID", &dsn.message_id);
    h("Auto-Submitted", "auto-replied");
    h("MIME-Version", "1.0");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    out.push_str("This is a MIME-encapsulated message.\r\n");

    let mut msg = out.into_bytes();
    let text_cte = if human.is_ascii() { "7bit" } else { "8bit" };
    part_header(
        &mut msg,
        &boundary,
        &format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {text_cte}"
        ),
    );
    msg.extend_from_slice(&human);
    ensure_crlf_end(&mut msg);

    part_header(&mut msg, &boundary, "Content-Type: message/delivery-status");
    msg.extend_from_slice(status_fields(dsn).as_bytes());

    let ctype = if dsn.return_full {
        "message/rfc822"
    } else {
        "text/rfc822-headers"
    };
    let cte = if returned.is_ascii() { "7bit" } else { "8bit" };
    part_header(
        &mut msg,
        &boundary,
        &format!("Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}"),
    );
    msg.extend_from_slice(&returned);
    ensure_crlf_end(&mut msg);
    msg.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    msg
}

/// The message/delivery-status body (RFC 3464 §2.1): per-message block, then one block per
/// recipient, each ended by a blank line.
fn status_fields(dsn: &OutgoingDsn) -> String {
    let mut s = format!("Reporting-MTA: dns; {}\r\n", one_line(&dsn.reporting_mta));
    if let Some(envid) = &dsn.envid {
        s.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
    }
    s.push_str(&format!(
        "Arrival-Date: {}\r\n",
        dsn.arrival_date.to_rfc2822()
    ));
    for r in &dsn.recipients {
        s.push_str("\r\n");
        if let Some(orcpt) = &r.original_recipient {
            s.push_str(&format!("Original-Recipient: {}\r\n", one_line(orcpt)));
        }
        s.push_str(&format!(
            "Final-Recipient: rfc822;{}\r\n",
            one_line(&r.final_recipient)
        ));
        s.push_str(&format!("Action: {}\r\n", one_line(&r.action)));
        s.push_str(&format!("Status: {}\r\n", one_line(&r.status)));
        if let Some(diag) = &r.diagnostic_code {
            s.push_str(&format!("Diagnostic-Code: {}\r\n", one_line(diag)));
        }
    }
    s
}

/// Failure if any recipient failed, else Delay, else Success (delivered), else Relay.
fn subject_word(dsn: &OutgoingDsn) -> &'static str {
    let has = |a: &str| {
        dsn.recipients
            .iter()
            .any(|r| r.action.eq_ignore_ascii_case(a))
    };
    if has("failed") {
        "Failure"
    } else if has("delayed") {
        "Delay"
    } else if has("delivered") {
        "Success"
    } else {
        "Relay"
    }
}

fn returned_bytes(dsn: &OutgoingDsn) -> Vec<u8> {
    if dsn.return_full {
        crlf(&dsn.original)
    } else {
        crlf(&dsn.original[..header_end(&dsn.original)])
    }
}

/// Opens a body part. The CRLF before a delimiter belongs to the delimiter (RFC 2046
/// §5.1.1), so every part's content, which ends in CRLF, is followed by one more.
fn part_header(msg: &mut Vec<u8>, boundary: &str, headers: &str) {
    msg.extend_from_slice(format!("\r\n--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
}

fn ensure_crlf_end(msg: &mut Vec<u8>) {
    if !msg.ends_with(b"\r\n") {
        msg.extend_from_slice(b"\r\n");
    }
}

/// A boundary that occurs in none of the parts (RFC 2046 §5.1.1).
fn boundary(dsn: &OutgoingDsn, parts: &[&[u8]]) -> String {
    let seed: u64 = dsn.message_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0u64..)
        .map(|n| format!("=_t37gw_dsn_{:016x}", seed.wrapping_add(n)))
        .find(|b| parts.iter().all(|p| !contains(p, b.as_bytes())))
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// Bare CR and bare LF become CRLF; existing CRLF pairs are kept.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}
