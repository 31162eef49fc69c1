//! Non-standard bounces: failure reports without an RFC 3464 `message/delivery-status` part
//! (RFC 3464 §1 calls them the "traditional" non-delivery formats). Each format is recognised
//! by the phrases its MTA writes, only in a message that comes from a mail system (sender
//! `<>`, MAILER-DAEMON, postmaster, "Mail Delivery …", or an `X-Failed-Recipients` field), so
//! ordinary mail quoting those phrases stays ordinary mail.
//!
//! Formats: qmail's QSBMF and Yahoo's copy of it, Exim (also inside Mail.ru's and Zoho's
//! notices), old Gmail/Google Groups, Exchange 5.5–2003 ("did not reach the following
//! recipient(s)"), Office 365 prose, Lotus Domino ("was not delivered to"), DragonFly,
//! OpenSMTPD, "Delivery failed N attempts", and as a last resort `X-Failed-Recipients`.

use super::fields::{self, get, Field};
use super::{RecipientReport, Report, ReportKind};

/// Lines that introduce the returned original (its header section follows).
const COPY_MARKERS: &[&str] = &[
    "--- Below this line is a copy of the message.",
    "------ This is a copy of the message, including all the headers. ------",
    "------ This is a copy of the message's headers. ------",
    "------ This is a copy of the body of the message, without the headers. ------",
    "----- Original message -----",
    "Message headers follow.",
    "Below is a copy of the original message:",
    "Original message follows.",
    "Original message headers:",
];

/// Is this message from a mail system rather than a person (RFC 3464 §2: DSNs go to the
/// null reverse-path; traditional bounces come from MAILER-DAEMON or postmaster)?
fn from_mail_system(top: &[Field]) -> bool {
    if get(top, "X-Failed-Recipients").is_some() {
        return true;
    }
    if get(top, "Return-Path").is_some_and(|v| v.trim() == "<>") {
        return true;
    }
    let from = get(top, "From").unwrap_or("").to_ascii_lowercase();
    [
        "mailer-daemon",
        "postmaster",
        "mail delivery",
        "<>",
        "mail administrator",
    ]
    .iter()
    .any(|m| from.contains(m))
}

/// A traditional bounce in `text` (the decoded first text part of the message, or its raw
/// body), or `None`. `top` are the message's own header fields.
pub(crate) fn classic_bounce(text: &str, top: &[Field]) -> Option<Report> {
    if !from_mail_system(top) {
        return None;
    }
    let text = normalize_text(text);
    let failed_header = failed_recipients_header(top);
    let (mut recipients, body_start) = [
        qmail as fn(&str) -> Option<(Vec<RecipientReport>, usize)>,
        exim,
        gmail,
        exchange_legacy,
        office365,
        domino,
        dragonfly,
        opensmtpd,
        failed_attempts,
        zoho,
    ]
    .iter()
    .find_map(|f| f(&text))
    .or_else(|| {
        // X-Failed-Recipients (Exim, Gmail) alone: the addresses, failed.
        (!failed_header.is_empty()).then(|| {
            let status = if failed_header.len() == 1 {
                first_status(&text)
            } else {
                None
            };
            let r = failed_header
                .iter()
                .map(|a| failed(a.clone(), status.clone(), None))
                .collect();
            (r, 0)
        })
    })?;
    // Exim writes a local part alone ("kijitora") when the address had no domain; its
    // X-Failed-Recipients field has the whole address.
    for r in &mut recipients {
        if let Some(addr) = r.final_recipient.as_mut().filter(|a| !a.contains('@')) {
            let local = addr.to_ascii_lowercase();
            if let Some(full) = failed_header.iter().find(|f| {
                f.split('@')
                    .next()
                    .is_some_and(|l| l.eq_ignore_ascii_case(&local))
            }) {
                *addr = full.clone();
            }
        }
    }
    let mut report = Report::empty(ReportKind::Bounce);
    report.recipients = recipients;
    report.returned_message_id = returned_message_id(&text[body_start.min(text.len())..]);
    Some(report)
}

fn normalize_text(text: &str) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_string()
    }
}

/// The addresses of `X-Failed-Recipients` (Exim, Gmail), comma separated.
fn failed_recipients_header(top: &[Field]) -> Vec<String> {
    top.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("X-Failed-Recipients"))
        .flat_map(|(_, v)| v.split(','))
        .map(bare_address)
        .filter(|a| a.contains('@'))
        .collect()
}

fn failed(address: String, status: Option<String>, diagnostic: Option<String>) -> RecipientReport {
    RecipientReport {
        final_recipient: Some(address),
        action: Some("failed".into()),
        status,
        diagnostic_code: diagnostic,
        ..RecipientReport::default()
    }
}

/// `<a@b>`, `a@b<mailto:a@b>`, `a@b:` → `a@b`.
fn bare_address(s: &str) -> String {
    let s = s.trim();
    let s = match (s.find('<'), s.find('>')) {
        (Some(0), Some(end)) => &s[1..end],
        (Some(start), _) if s[start..].starts_with("<mailto:") => &s[..start],
        _ => s,
    };
    s.trim()
        .trim_end_matches([':', '.', ','])
        .trim_matches(['<', '>', '"'])
        .to_string()
}

fn looks_like_address(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && !s.contains(char::is_whitespace)
        && s.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
}

/// The first enhanced status code (RFC 3463 `class.subject.detail`, class 2, 4 or 5) in
/// `text`: `550 5.1.1 <a@b>` → `5.1.1`, `(#5.5.0)` → `5.5.0`, `550-5.7.26` → `5.7.26`.
/// Digits that belong to an IP address or a longer dotted number are skipped.
pub(crate) fn first_status(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'2' | b'4' | b'5')
            && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.'))
            && b.get(i + 1) == Some(&b'.')
        {
            let mut j = i + 2;
            let mut parts = 2;
            let mut digits = 0;
            while j < b.len() {
                if b[j].is_ascii_digit() {
                    digits += 1;
                    if digits > 3 {
                        break;
                    }
                } else if b[j] == b'.' && digits > 0 && parts < 3 {
                    parts += 1;
                    digits = 0;
                } else {
                    break;
                }
                j += 1;
            }
            let ends_clean = b.get(j).is_none_or(|c| !(c.is_ascii_digit() || *c == b'.'));
            if parts == 3 && digits > 0 && ends_clean {
                return Some(text[i..j].to_string());
            }
        }
        i += 1;
    }
    None
}

/// The Message-ID of the returned original: the header block after a copy marker, else a
/// `Message-ID:` line at the start of a line (Zoho writes the headers with no marker).
fn returned_message_id(text: &str) -> Option<String> {
    for marker in COPY_MARKERS {
        if let Some(at) = text.find(marker) {
            let rest = text[at + marker.len()..].trim_start_matches([' ', '\t', '\n']);
            let headers = fields::header_fields(rest.as_bytes());
            if let Some(id) = get(&headers, "Message-ID").and_then(fields::msg_id) {
                return Some(id);
            }
        }
    }
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("Message-ID")
            .then(|| fields::msg_id(value))
            .flatten()
    })
}

/// Text from `marker` on, with the offset of its end in `text`.
fn after<'a>(text: &'a str, marker: &str) -> Option<(&'a str, usize)> {
    let at = text.find(marker)? + marker.len();
    Some((&text[at..], at))
}

/// Cut `text` at the first copy marker.
fn before_copy(text: &str) -> &str {
    let end = COPY_MARKERS
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// qmail-send's QSBMF (and Yahoo's): `<address>:` paragraphs, status `(#x.y.z)` or an
/// enhanced code in the paragraph.
fn qmail(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "This is the qmail-send program").or_else(|| {
        after(
            text,
            "unable to deliver your message to the following address",
        )
    })?;
    let mut recipients: Vec<RecipientReport> = Vec::new();
    let mut detail = String::new();
    for line in before_copy(rest).lines() {
        let line = line.trim_end();
        if let Some(addr) = line
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">:"))
            .filter(|a| looks_like_address(a))
        {
            finish_detail(&mut recipients, &mut detail);
            recipients.push(failed(addr.to_string(), None, None));
        } else if !recipients.is_empty() && !line.trim().is_empty() {
            detail.push_str(line.trim());
            detail.push(' ');
        }
    }
    finish_detail(&mut recipients, &mut detail);
    (!recipients.is_empty()).then_some((recipients, at))
}

/// Give the last recipient the status found in its detail text (once). The prose itself is
/// not copied into `diagnostic_code`: only a reason the format delimits clearly is.
fn finish_detail(recipients: &mut [RecipientReport], detail: &mut String) {
    if let Some(last) = recipients.last_mut() {
        if last.status.is_none() {
            last.status = first_status(detail);
        }
    }
    detail.clear();
}

/// Exim: "The following address(es) failed:" then an indented address per entry with more
/// deeply indented detail lines; "have not yet been delivered:" in a delay warning.
fn exim(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let mut recipients: Vec<RecipientReport> = Vec::new();
    let mut end = 0;
    for (marker, action) in [
        ("The following address(es) failed:", "failed"),
        (
            "following address(es) have not yet been delivered:",
            "delayed",
        ),
    ] {
        let mut search = text;
        let mut base = 0;
        while let Some((rest, at)) = after(search, marker) {
            end = end.max(base + at);
            let mut detail = String::new();
            let mut current: Vec<RecipientReport> = Vec::new();
            for line in before_copy(rest).lines().skip(1) {
                if line.trim().is_empty() {
                    continue;
                }
                let indent = line.len() - line.trim_start().len();
                if indent == 0 {
                    break;
                }
                if indent <= 2 {
                    finish_detail(&mut current, &mut detail);
                    let first = line.split_whitespace().next().unwrap_or("");
                    let mut r = failed(bare_address(first), None, None);
                    r.action = Some(action.into());
                    current.push(r);
                } else if !current.is_empty() {
                    detail.push_str(line.trim());
                    detail.push(' ');
                }
            }
            finish_detail(&mut current, &mut detail);
            for r in current {
                // Mail.ru repeats Exim's list in Russian and English: once per address.
                if !recipients
                    .iter()
                    .any(|x| x.final_recipient == r.final_recipient)
                {
                    recipients.push(r);
                }
            }
            base += at;
            search = rest;
        }
    }
    (!recipients.is_empty()).then_some((recipients, end))
}

/// Old Gmail and Google Groups: "Delivery to the following recipient(s) failed
/// permanently:" / "has been delayed:", addresses on the indented lines that follow.
fn gmail(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let markers = [
        (
            "Delivery to the following recipient failed permanently:",
            "failed",
        ),
        (
            "Delivery to the following recipients failed permanently:",
            "failed",
        ),
        (
            "Delivery to the following recipient has been delayed:",
            "delayed",
        ),
        (
            "Delivery to the following recipients have been delayed:",
            "delayed",
        ),
    ];
    let (rest, at, action) = markers
        .iter()
        .find_map(|(m, a)| after(text, m).map(|(r, at)| (r, at, *a)))?;
    let body = before_copy(rest);
    let mut recipients: Vec<RecipientReport> = body
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| looks_like_address(l))
        .map(|l| {
            let mut r = failed(l.trim().to_string(), None, None);
            r.action = Some(action.into());
            r
        })
        .collect();
    if recipients.len() == 1 {
        recipients[0].status = first_status(body);
    }
    (!recipients.is_empty()).then_some((recipients, at))
}

/// Exchange 5.5–2003: "did not reach the following recipient(s):", then `address on DATE`
/// lines, each followed by indented reason lines (e.g. `MSEXCH:IMS:… Unknown Recipient`).
fn exchange_legacy(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "did not reach the following recipient(s):")?;
    let mut recipients: Vec<RecipientReport> = Vec::new();
    let mut detail = String::new();
    for line in before_copy(rest).lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if !line.starts_with([' ', '\t']) && looks_like_address(first) {
            finish_detail(&mut recipients, &mut detail);
            recipients.push(failed(first.to_string(), None, None));
        } else if !recipients.is_empty() {
            detail.push_str(line.trim());
            detail.push(' ');
        }
    }
    finish_detail(&mut recipients, &mut detail);
    (!recipients.is_empty()).then_some((recipients, at))
}

/// Office 365 / Exchange Online prose: "Delivery has failed to these recipients or
/// groups:" then one address per line (`a@b<mailto:a@b>`); the status in "Remote Server
/// returned '550 5.1.10 …'".
fn office365(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "Delivery has failed to these recipients or groups:")?;
    let mut recipients: Vec<RecipientReport> = rest
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .map(bare_address)
        .take_while(|a| looks_like_address(a))
        .map(|a| failed(a, None, None))
        .collect();
    if recipients.len() == 1 {
        recipients[0].status = rest
            .find("Remote Server returned")
            .and_then(|i| first_status(&rest[i..]));
    }
    (!recipients.is_empty()).then_some((recipients, at))
}

/// Lotus Domino: "was not delivered to:" then the address, "because:" then the reason.
fn domino(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "was not delivered to:")?;
    let mut lines = rest.lines().skip(1).skip_while(|l| l.trim().is_empty());
    let addr = bare_address(lines.next()?);
    if !looks_like_address(&addr) {
        return None;
    }
    let reason = rest.find("because:").map(|i| {
        rest[i + "because:".len()..]
            .lines()
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let status = reason.as_deref().and_then(first_status);
    Some((vec![failed(addr, status, reason)], at))
}

/// DragonFly Mail Agent: "There was an error delivering your mail to <a@b>."
fn dragonfly(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "There was an error delivering your mail to ")?;
    let addr = bare_address(rest.lines().next()?);
    looks_like_address(&addr).then(|| {
        let status = first_status(before_copy(rest));
        (vec![failed(addr, status, None)], at)
    })
}

/// OpenSMTPD: "the following list of recipients:" then `a@b: 550 5.1.1 …` lines.
fn opensmtpd(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "the following list of recipients:")?;
    let recipients: Vec<RecipientReport> = before_copy(rest)
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (addr, reason) = l.trim().split_once(": ")?;
            let addr = bare_address(addr);
            looks_like_address(&addr)
                .then(|| failed(addr, first_status(reason), Some(reason.trim().to_string())))
        })
        .collect();
    (!recipients.is_empty()).then_some((recipients, at))
}

/// "Delivery failed N attempts: a@b" (seen from small Windows MTAs).
fn failed_attempts(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(text, "Delivery failed ")?;
    let line = rest.lines().next()?;
    let (count, addr) = line.split_once(" attempts:")?;
    if !count.trim().bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let addr = bare_address(addr);
    looks_like_address(&addr).then(|| (vec![failed(addr, None, None)], at))
}

/// Zoho: Exim's opening sentence, then `a@b Invalid Address, ERROR_CODE :550, ERROR_CODE
/// :5.1.1 …` lines, then the returned headers with no marker line.
fn zoho(text: &str) -> Option<(Vec<RecipientReport>, usize)> {
    let (rest, at) = after(
        text,
        "This message was created automatically by mail delivery software.",
    )?;
    let recipients: Vec<RecipientReport> = rest
        .lines()
        .take_while(|l| {
            !l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case("Received"))
        })
        .filter_map(|l| {
            let (addr, reason) = l.trim().split_once(' ')?;
            (looks_like_address(addr) && reason.contains("ERROR_CODE"))
                .then(|| failed(addr.to_string(), first_status(reason), None))
        })
        .collect();
    (!recipients.is_empty()).then_some((recipients, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_codes() {
        // RFC 3463 §2: class "." subject "." detail, 1–3 digits each.
        assert_eq!(first_status("550 5.1.1 <a@b>").as_deref(), Some("5.1.1"));
        assert_eq!(first_status("(#5.5.0)").as_deref(), Some("5.5.0"));
        assert_eq!(first_status("550-5.7.26 x").as_deref(), Some("5.7.26"));
        assert_eq!(
            first_status("host [192.0.2.153]: 550 5.2.1 x").as_deref(),
            Some("5.2.1")
        );
        assert_eq!(first_status("id 15.20.4930.15"), None);
        assert_eq!(first_status("no code"), None);
    }

    #[test]
    fn ordinary_mail_quoting_a_bounce_is_not_a_bounce() {
        let top = vec![("From".to_string(), "Alice <alice@example.org>".to_string())];
        let text = "Delivery to the following recipient failed permanently:\n\n  a@b.example\n";
        assert!(classic_bounce(text, &top).is_none());
    }

    #[test]
    fn domino_format() {
        // The layout Lotus Domino writes ("Your message ... was not delivered to: ...
        // because: ..."), values read from it by hand.
        let top = vec![("From".into(), "Postmaster@example.com".into())];
        let text = "Your message\n\n  Subject: fax\n\nwas not delivered to:\n\n  kim@example.com\n\nbecause:\n\n  User kim (kim@example.com) not listed in Domino Directory\n";
        let r = classic_bounce(text, &top).expect("domino");
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(
            r.recipients[0].final_recipient.as_deref(),
            Some("kim@example.com")
        );
        assert_eq!(r.recipients[0].action.as_deref(), Some("failed"));
        assert_eq!(r.recipients[0].status, None);
        assert_eq!(
            r.recipients[0].diagnostic_code.as_deref(),
            Some("User kim (kim@example.com) not listed in Domino Directory")
        );
    }
}
