//! Turn raw message bytes into a [`Report`]: find the RFC 6522 report part in the MIME tree
//! (also inside message/rfc822), read its RFC 3464 / RFC 6533 / RFC 8098 fields, and the
//! Message-ID of the returned original.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::fields::{self, get, Field};
use super::{RecipientReport, Report, ReportKind};

/// How deep to look into nested message/rfc822 parts for a report.
const MAX_DEPTH: usize = 4;

/// Per-message DSN fields (RFC 3464 §2.2, RFC 6533 §3).
const PER_MESSAGE: &[&str] = &[
    "original-envelope-id",
    "reporting-mta",
    "dsn-gateway",
    "received-from-mta",
    "arrival-date",
];

/// Per-recipient DSN fields (RFC 3464 §2.3); one of these opens a recipient block.
const PER_RECIPIENT: &[&str] = &[
    "original-recipient",
    "final-recipient",
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
    "last-attempt-date",
    "final-log-id",
    "will-retry-until",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusKind {
    Dsn,
    Mdn,
}

/// The report part found in the tree, with what surrounds it.
struct Found<'a> {
    kind: StatusKind,
    /// Every status part of that kind in the message, joined by a blank line (some MTAs
    /// write one per recipient).
    status: Vec<u8>,
    /// Header section of the returned original (message/rfc822, text/rfc822-headers, …).
    returned: Option<&'a [u8]>,
    /// Header section of the message that holds the report.
    own_headers: &'a [u8],
}

pub(crate) fn parse(message: &[u8]) -> Report {
    parse_explained(message).0
}

/// [`parse`] plus, for a message that is not a report, why (for the journal).
pub(crate) fn parse_explained(message: &[u8]) -> (Report, Option<String>) {
    if message.iter().all(u8::is_ascii_whitespace) {
        return (unparseable("empty message"), None);
    }
    match catch_unwind(AssertUnwindSafe(|| parse_inner(message))) {
        Ok(parsed) => parsed,
        Err(_) => (unparseable("the MIME parser failed on this message"), None),
    }
}

fn unparseable(error: &str) -> Report {
    let mut report = Report::empty(ReportKind::Unparseable);
    report.error = Some(error.to_string());
    report
}

fn parse_inner(bytes: &[u8]) -> (Report, Option<String>) {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return (unparseable("no header section found"), None);
    };
    let Some(found) = find_report(&message, 0) else {
        if let Some(report) = report_without_status(&message, bytes) {
            return (report, None);
        }
        let top = fields::header_fields(bytes);
        let in_reply_to = get(&top, "In-Reply-To").and_then(fields::msg_id);
        let reason = not_a_report_reason(&message, &top);
        let bounce = if reason
            .as_deref()
            .is_some_and(|r| r.starts_with("auto-reply"))
        {
            None
        } else {
            super::bounce::classic_bounce(&body_text(&message, bytes), &top)
        };
        return match bounce {
            Some(mut report) => {
                report.in_reply_to = in_reply_to;
                if report.returned_message_id.is_none() {
                    report.returned_message_id = returned_part_message_id(&message);
                }
                (report, None)
            }
            None => {
                let mut report = Report::empty(ReportKind::NotAReport);
                report.in_reply_to = in_reply_to;
                let reason = reason.unwrap_or_else(|| {
                    "ordinary mail: no multipart/report part and no bounce text".into()
                });
                (report, Some(reason))
            }
        };
    };
    let own = fields::header_fields(found.own_headers);
    let mut report = match found.kind {
        StatusKind::Dsn => dsn_report(&found.status),
        StatusKind::Mdn => mdn_report(&found.status),
    };
    report.in_reply_to = get(&own, "In-Reply-To").and_then(fields::msg_id);
    report.references = get(&own, "References")
        .map(fields::msg_ids)
        .unwrap_or_default();
    report.returned_message_id = found.returned.and_then(|h| {
        let returned = fields::header_fields(h);
        get(&returned, "Message-ID").and_then(fields::msg_id)
    });
    if report.kind == ReportKind::Dsn && report.recipients.is_empty() {
        // An empty (or unreadable) delivery-status part: read the prose instead.
        let top = fields::header_fields(bytes);
        if let Some(bounce) = super::bounce::classic_bounce(&body_text(&message, bytes), &top) {
            report.kind = ReportKind::Bounce;
            report.recipients = bounce.recipients;
            if report.returned_message_id.is_none() {
                report.returned_message_id = bounce.returned_message_id;
            }
        }
    }
    (report, None)
}

/// Why a message with no report part is not a delivery result (RFC 3834 auto-replies,
/// RFC 5965 feedback reports, other multipart/report types), or `None` when nothing says so.
fn not_a_report_reason(message: &Message<'_>, top: &[Field]) -> Option<String> {
    if let Some(report_type) = message
        .parts
        .first()
        .and_then(|p| p.content_type())
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))
    {
        if report_type.eq_ignore_ascii_case("feedback-report") {
            return Some("ARF feedback report (RFC 5965), not a delivery result".into());
        }
        return Some(format!(
            "multipart/report of type {report_type}, not a delivery or disposition report"
        ));
    }
    let auto = get(top, "Auto-Submitted").map(str::to_ascii_lowercase);
    let subject = get(top, "Subject").unwrap_or("").to_ascii_lowercase();
    let autoreply_header = get(top, "X-Autoreply").is_some() || get(top, "X-Autorespond").is_some();
    if auto
        .as_deref()
        .is_some_and(|a| a.starts_with("auto-replied"))
        && !from_daemon(top)
        || autoreply_header
        || subject.starts_with("out of office")
        || subject.starts_with("automatic reply")
    {
        return Some(format!(
            "auto-reply (RFC 3834{}), not a delivery result",
            auto.map(|a| format!(" Auto-Submitted: {a}"))
                .unwrap_or_default()
        ));
    }
    if let Some(a) = auto.filter(|a| a.starts_with("auto-generated")) {
        if !from_daemon(top) {
            return Some(format!(
                "automatic notification (RFC 3834 Auto-Submitted: {a}), not a delivery result"
            ));
        }
    }
    None
}

fn from_daemon(top: &[Field]) -> bool {
    let from = get(top, "From").unwrap_or("").to_ascii_lowercase();
    from.contains("mailer-daemon") || from.contains("mail delivery")
}

/// The decoded text of the message's first text part, or its raw body.
fn body_text(message: &Message<'_>, bytes: &[u8]) -> String {
    match message.body_text(0) {
        Some(text) if !text.trim().is_empty() => text.into_owned(),
        _ => fields::normalize(bytes.get(fields::header_end(bytes)..).unwrap_or(&[])),
    }
}

/// Message-ID of the first returned-original part (message/rfc822, text/rfc822-headers) at
/// the top level of the message.
fn returned_part_message_id(message: &Message<'_>) -> Option<String> {
    message
        .parts
        .iter()
        .skip(1)
        .filter(|p| is_returned_type(p))
        .find_map(returned_headers)
        .and_then(|h| get(&fields::header_fields(h), "Message-ID").and_then(fields::msg_id))
}

fn find_report<'a>(message: &'a Message<'_>, depth: usize) -> Option<Found<'a>> {
    for (index, part) in message.parts.iter().enumerate() {
        if let Some(kind) = status_kind(part) {
            let mut status = Vec::new();
            for other in &message.parts[index..] {
                if status_kind(other) == Some(kind) {
                    status.extend_from_slice(other.contents());
                    status.extend_from_slice(b"\n\n");
                }
            }
            return Some(Found {
                kind,
                status,
                returned: returned_after(message, index).and_then(returned_headers),
                own_headers: message_headers(message),
            });
        }
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    message.parts.iter().find_map(|part| match &part.body {
        PartType::Message(inner) => find_report(inner, depth + 1),
        _ => None,
    })
}

/// A multipart/report whose report-type names a DSN or MDN but which lost its status part.
/// Seen in the wild: MIME boundaries stripped so the RFC 3464 fields sit in the flat body
/// (they are read from there), and trimmed Exchange/Office 365 samples (their prose is read
/// as a bounce; failing that, a report with no recipients).
fn report_without_status(message: &Message<'_>, bytes: &[u8]) -> Option<Report> {
    let ct = message.parts.first()?.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("multipart")
        || !ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return None;
    }
    let report_type = ct.attribute("report-type")?.to_ascii_lowercase();
    let kind = match report_type.as_str() {
        "delivery-status" | "global-delivery-status" => ReportKind::Dsn,
        "disposition-notification" | "global-disposition-notification" => ReportKind::Mdn,
        _ => return None,
    };
    let own = fields::header_fields(message_headers(message));
    let body = fields::normalize(bytes.get(fields::header_end(bytes)..).unwrap_or(&[]));
    let mut report = None;
    if kind == ReportKind::Dsn {
        if let Some((status, returned)) = flat_delivery_status(&body) {
            let mut r = dsn_report(status.as_bytes());
            r.returned_message_id = returned.and_then(|h| {
                get(&fields::header_fields(h.as_bytes()), "Message-ID").and_then(fields::msg_id)
            });
            report = Some(r).filter(|r| !r.recipients.is_empty());
        }
        if report.is_none() {
            let top = fields::header_fields(bytes);
            report = super::bounce::classic_bounce(&body_text(message, bytes), &top);
        }
    }
    let mut report = report.unwrap_or_else(|| Report::empty(kind));
    report.in_reply_to = get(&own, "In-Reply-To").and_then(fields::msg_id);
    report.references = get(&own, "References")
        .map(fields::msg_ids)
        .unwrap_or_default();
    if report.returned_message_id.is_none() {
        report.returned_message_id = returned_part_message_id(message);
    }
    Some(report)
}

/// RFC 3464 §2.2–2.3 fields written straight into a body that lost its MIME structure:
/// from the first line that opens a DSN field block to the first block with no DSN field
/// (the returned header section, whose text is handed back too).
fn flat_delivery_status(body: &str) -> Option<(String, Option<&str>)> {
    let is_dsn_line = |line: &str| {
        line.split_once(':').is_some_and(|(name, _)| {
            let name = name.trim().to_ascii_lowercase();
            PER_MESSAGE.contains(&name.as_str()) || PER_RECIPIENT.contains(&name.as_str())
        })
    };
    let mut offset = 0;
    let mut start = None;
    for line in body.split_inclusive('\n') {
        if !line.starts_with([' ', '\t']) && is_dsn_line(line) {
            start = Some(offset);
            break;
        }
        offset += line.len();
    }
    let start = start?;
    let rest = &body[start..];
    let lower = rest.to_ascii_lowercase();
    if !lower.contains("final-recipient:") && !lower.contains("original-recipient:") {
        return None;
    }
    // Walk blank-line separated blocks; stop at the first without a DSN field.
    let mut end = rest.len();
    let mut returned = None;
    let mut at = 0;
    for block in rest.split("\n\n") {
        let has_dsn = block
            .lines()
            .any(|l| !l.starts_with([' ', '\t']) && is_dsn_line(l));
        if !block.trim().is_empty() && !has_dsn {
            end = at;
            returned = Some(rest[at..].trim_start_matches('\n'));
            break;
        }
        at += block.len() + 2;
        at = at.min(rest.len());
    }
    Some((rest[..end].to_string(), returned))
}

fn is_returned_type(part: &MessagePart<'_>) -> bool {
    let (t, s) = content_type(part);
    (t == "message" && matches!(s.as_str(), "rfc822" | "global" | "global-headers"))
        || (t == "text" && s == "rfc822-headers")
}

fn content_type(part: &MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        ),
        None => ("text".into(), "plain".into()),
    }
}

/// RFC 3464 §2.1 / RFC 6533 §6.2 (DSN) and RFC 8098 §3.1 / RFC 6533 §6.3 (MDN) media types.
fn status_kind(part: &MessagePart<'_>) -> Option<StatusKind> {
    match content_type(part) {
        (t, s) if t == "message" && (s == "delivery-status" || s == "global-delivery-status") => {
            Some(StatusKind::Dsn)
        }
        (t, s)
            if t == "message"
                && (s == "disposition-notification" || s == "global-disposition-notification") =>
        {
            Some(StatusKind::Mdn)
        }
        _ => None,
    }
}

/// The first part after the status part in the same multipart that holds a returned
/// original (RFC 6522 §3: third part; RFC 6533 §6.1).
fn returned_after<'a>(message: &'a Message<'_>, index: usize) -> Option<&'a MessagePart<'a>> {
    let id = u32::try_from(index).ok()?;
    let siblings = message
        .parts
        .iter()
        .find_map(|p| p.sub_parts().filter(|ids| ids.contains(&id)))?;
    let position = siblings.iter().position(|&s| s == id)?;
    siblings[position + 1..]
        .iter()
        .filter_map(|&s| message.parts.get(s as usize))
        .find(|p| is_returned_type(p))
}

fn returned_headers<'a>(part: &'a MessagePart<'a>) -> Option<&'a [u8]> {
    match &part.body {
        PartType::Message(inner) => Some(message_headers(inner)),
        PartType::Multipart(_) => None,
        _ => Some(part.contents()),
    }
}

/// The raw header section of a (possibly nested) message.
fn message_headers<'a>(message: &'a Message<'_>) -> &'a [u8] {
    let raw: &[u8] = message.raw_message.as_ref();
    message
        .parts
        .first()
        .and_then(|root| raw.get(root.offset_header as usize..root.offset_body as usize))
        .unwrap_or(raw)
}

/// RFC 3464 §2.2–2.3 fields from a message/delivery-status body.
fn dsn_report(status: &[u8]) -> Report {
    let blocks = fields::field_blocks(&decode_embedded_base64(&fields::normalize(status)));
    let (per_message, per_recipient) = split_dsn_blocks(blocks);
    let mut report = Report::empty(ReportKind::Dsn);
    report.envid = get(&per_message, "Original-Envelope-Id")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    report.reporting_mta = get(&per_message, "Reporting-MTA").map(str::to_string);
    report.recipients = per_recipient.iter().map(|b| recipient(b)).collect();
    report
}

/// Some filters (seen behind Proofpoint) base64-encode the per-recipient blocks inside the
/// delivery-status part and write `Content-Transfer-Encoding: base64` into its per-message
/// block. Decode such a run of base64 lines in place; other text is kept as it is.
fn decode_embedded_base64(text: &str) -> String {
    let marker = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("content-transfer-encoding")
                && v.trim().eq_ignore_ascii_case("base64")
        })
    });
    if !marker {
        return text.to_string();
    }
    let is_b64 = |l: &str| {
        let l = l.trim();
        !l.is_empty()
            && !l.contains(':')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.is_empty() {
            return;
        }
        match mail_parser::decoders::base64::base64_decode(run.as_bytes()) {
            Some(decoded) => {
                out.push_str(&fields::normalize(&decoded));
                out.push('\n');
            }
            None => out.push_str(run),
        }
        run.clear();
    };
    for line in text.lines() {
        if is_b64(line) {
            run.push_str(line.trim());
        } else {
            flush(&mut run, &mut out);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Split field blocks into the per-message fields and per-recipient blocks. Tolerates a
/// missing blank line (a recipient field opens a recipient block; a repeated recipient field
/// opens the next one) and extra blank lines.
fn split_dsn_blocks(blocks: Vec<Vec<Field>>) -> (Vec<Field>, Vec<Vec<Field>>) {
    let mut per_message = Vec::new();
    let mut recipients: Vec<Vec<Field>> = Vec::new();
    for block in blocks {
        let mut current: Option<Vec<Field>> = None;
        for field in block {
            let name = field.0.to_ascii_lowercase();
            if PER_MESSAGE.contains(&name.as_str()) {
                per_message.push(field);
            } else if PER_RECIPIENT.contains(&name.as_str()) {
                match current.as_mut() {
                    Some(c) if get(c, &name).is_none() => c.push(field),
                    _ => {
                        recipients.extend(current.take());
                        current = Some(vec![field]);
                    }
                }
            } else {
                match current.as_mut() {
                    Some(c) => c.push(field),
                    None => per_message.push(field),
                }
            }
        }
        recipients.extend(current);
    }
    (per_message, recipients)
}

fn recipient(block: &[Field]) -> RecipientReport {
    RecipientReport {
        original_recipient: get(block, "Original-Recipient").map(fields::strip_address_type),
        final_recipient: get(block, "Final-Recipient").map(fields::strip_address_type),
        action: get(block, "Action").map(fields::action),
        status: get(block, "Status").map(fields::status),
        diagnostic_code: get(block, "Diagnostic-Code").map(str::to_string),
        will_retry_until: get(block, "Will-Retry-Until").map(str::to_string),
    }
}

/// RFC 8098 §3.1–3.2 fields from a message/disposition-notification body.
fn mdn_report(status: &[u8]) -> Report {
    let all: Vec<Field> = fields::field_blocks(&fields::normalize(status))
        .into_iter()
        .flatten()
        .collect();
    let mut report = Report::empty(ReportKind::Mdn);
    report.original_message_id = get(&all, "Original-Message-ID").and_then(fields::msg_id);
    report.disposition = get(&all, "Disposition").map(fields::disposition);
    let original = get(&all, "Original-Recipient").map(fields::strip_address_type);
    let final_ = get(&all, "Final-Recipient").map(fields::strip_address_type);
    if original.is_some() || final_.is_some() {
        report.recipients.push(RecipientReport {
            original_recipient: original,
            final_recipient: final_,
            ..RecipientReport::default()
        });
    }
    report
}
