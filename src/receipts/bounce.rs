//! Classic non-RFC 3464 bounces. Only qmail's (qmail-send's "bounce message format", QSBMF)
//! is recognised so far; everything else without a multipart/report is not a report.

use super::fields::{self, get, Field};
use super::{RecipientReport, Report, ReportKind};

const QMAIL_MARKER: &str = "This is the qmail-send program";
const QMAIL_COPY: &str = "--- Below this line is a copy of the message.";

/// A qmail bounce (QSBMF): each `<address>:` paragraph is one failed recipient, the
/// `(#x.y.z)` in it its status; the returned headers follow the "copy of the message" line.
pub(crate) fn classic_bounce(bytes: &[u8], _top: &[Field]) -> Option<Report> {
    let body = fields::normalize(bytes.get(fields::header_end(bytes)..)?);
    let start = body.find(QMAIL_MARKER)?;
    let body = &body[start..];
    let (text, copy) = match body.find(QMAIL_COPY) {
        Some(at) => (&body[..at], Some(&body[at + QMAIL_COPY.len()..])),
        None => (body, None),
    };
    let mut recipients: Vec<RecipientReport> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(addr) = line
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">:"))
            .filter(|a| a.contains('@') && !a.contains(char::is_whitespace))
        {
            recipients.push(RecipientReport {
                final_recipient: Some(addr.to_string()),
                action: Some("failed".into()),
                ..RecipientReport::default()
            });
        } else if let Some(last) = recipients.last_mut() {
            if last.status.is_none() {
                last.status = qmail_status(line);
            }
        }
    }
    if recipients.is_empty() {
        return None;
    }
    let mut report = Report::empty(ReportKind::Bounce);
    report.recipients = recipients;
    report.returned_message_id = copy.and_then(|c| {
        let headers = fields::header_fields(c.trim_start_matches('\n').as_bytes());
        get(&headers, "Message-ID").and_then(fields::msg_id)
    });
    Some(report)
}

/// `(#5.5.0)` → `5.5.0`.
fn qmail_status(line: &str) -> Option<String> {
    let start = line.find("(#")? + 2;
    let len = line[start..].find(')')?;
    let status = fields::status(&line[start..start + len]);
    (status.split('.').count() == 3).then_some(status)
}
