//! Receipt tracker: parse DSNs (RFC 3464, RFC 6533) and MDNs (RFC 8098, RFC 3798) and correlate
//! them to fax jobs.
//!
//! Files: `parse.rs` (MIME walk), `fields.rs` (field blocks), `bounce.rs` (classic bounces),
//! `correlate.rs` (reports to jobs, blocks to recipients), `mailbox.rs` (.eml, mbox,
//! Maildir), `xtext.rs` (RFC 3461 §4), `outgoing.rs` (DSNs we send, RFC 3464 + RFC 6522).
//! The `receipts parse --json` schema and the rules are documented in `docs/receipts.md`.

use serde::Serialize;

mod bounce;
mod correlate;
mod fields;
mod mailbox;
mod outgoing;
mod parse;
mod xtext;

pub use mailbox::{mailbox_items, read_mailbox, MailboxItem, MailboxIter};
pub use outgoing::{build_dsn, DsnRecipient, OutgoingDsn};
pub use xtext::{xtext_decode, xtext_encode};

/// What a message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// RFC 3464 / RFC 6533 delivery status notification.
    Dsn,
    /// RFC 8098 message disposition notification.
    Mdn,
    /// A non-standard bounce (no multipart/report) recognised as a failure report.
    Bounce,
    /// Anything else: auto-replies, ARF feedback reports, ordinary mail.
    NotAReport,
    /// Could not be read at all.
    Unparseable,
}

/// One per-recipient block of a DSN (RFC 3464 §2.3), fields as the reporting MTA wrote them,
/// with the `rfc822;` address type split off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecipientReport {
    pub original_recipient: Option<String>,
    pub final_recipient: Option<String>,
    /// Action, lower case: failed, delayed, delivered, relayed, expanded.
    pub action: Option<String>,
    /// Status, e.g. `5.1.1`.
    pub status: Option<String>,
    pub diagnostic_code: Option<String>,
    pub will_retry_until: Option<String>,
}

/// The disposition field of an MDN (RFC 8098 §3.2.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Disposition {
    /// `manual-action` or `automatic-action`.
    pub action_mode: Option<String>,
    /// `MDN-sent-manually` or `MDN-sent-automatically`.
    pub sending_mode: Option<String>,
    /// displayed, deleted, dispatched, processed (RFC 3798 also: denied, failed).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub modifiers: Vec<String>,
}

/// A parsed report: the `receipts parse --json` object of INTERFACE.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub file: Option<String>,
    pub kind: ReportKind,
    pub error: Option<String>,
    pub envid: Option<String>,
    pub original_message_id: Option<String>,
    pub returned_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub reporting_mta: Option<String>,
    pub recipients: Vec<RecipientReport>,
    pub disposition: Option<Disposition>,
    /// The report's own References (RFC 5322 §3.6.4), oldest first: the last resort for
    /// correlation (some read receipts carry neither Original-Message-ID nor In-Reply-To).
    /// Not part of the `receipts parse --json` schema.
    #[serde(skip)]
    pub references: Vec<String>,
}

impl Report {
    /// A report of `kind` with every field absent (`file`, `error` and all values `None`,
    /// no recipients).
    pub fn empty(kind: ReportKind) -> Report {
        Report {
            file: None,
            kind,
            error: None,
            envid: None,
            original_message_id: None,
            returned_message_id: None,
            in_reply_to: None,
            reporting_mta: None,
            recipients: Vec::new(),
            disposition: None,
            references: Vec::new(),
        }
    }
}

/// Parse one message (raw RFC 5322 bytes; CRLF, LF or CR line ends). Never panics: a message
/// that cannot be read becomes [`ReportKind::Unparseable`] with `error` set.
///
/// - The first `message/delivery-status` / `message/global-delivery-status` part (RFC 3464
///   §2, RFC 6533 §6.2) makes a [`ReportKind::Dsn`]: `envid` = Original-Envelope-Id,
///   `reporting_mta` = Reporting-MTA (as written, e.g. `dns; mta.example`), one
///   [`RecipientReport`] per per-recipient block in block order.
/// - `message/disposition-notification` (RFC 8098 §3, RFC 3798, RFC 6533 §6.3) makes a
///   [`ReportKind::Mdn`]: `original_message_id`, `disposition`, one recipient entry.
/// - The part is found in an RFC 6522 multipart/report, also one nested in message/rfc822.
///   `returned_message_id` is the Message-ID of the returned original that follows it
///   (message/rfc822, message/global, text/rfc822-headers; may be truncated).
/// - `in_reply_to` is the first msg-id of the In-Reply-To of the message holding the report.
/// - A multipart/report whose MIME structure was lost (RFC 3464 fields in the flat body) is
///   read from the body text; a base64 run inside a delivery-status part is decoded.
/// - A traditional bounce without an RFC 3464 part (qmail, Yahoo, Exim, Mail.ru, Zoho, old
///   Gmail and Google Groups, Exchange 5.5–2003, Office 365 prose, Domino, DragonFly,
///   OpenSMTPD; see `docs/receipts.md`), and a DSN whose status part is empty, are a
///   [`ReportKind::Bounce`] with the failed addresses (Action `failed`, or `delayed` for a
///   delay warning), the status code when the text has one, and the returned Message-ID.
/// - Everything else (auto-replies, ARF feedback reports, ordinary mail) is
///   [`ReportKind::NotAReport`]; [`parse_explained`] says why.
///
/// Values are as written (never xtext-decoded), with an `rfc822;`/`utf-8;` address type
/// split off recipients, Action lower-cased and Status cut to its `x.y.z` code.
pub fn parse(message: &[u8]) -> Report {
    parse::parse(message)
}

/// A report with the reason it is not a delivery result (for `report_orphaned` / ignored
/// entries in the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReport {
    /// What [`parse`] returns.
    pub report: Report,
    /// For [`ReportKind::NotAReport`]: why (an RFC 3834 auto-reply, an RFC 5965 feedback
    /// report, another multipart/report type, an automatic notification, ordinary mail).
    /// `None` otherwise.
    pub not_a_report_reason: Option<String>,
}

/// [`parse`], plus the reason when the message is not a report (RFC 3464 §2, RFC 8098 §3
/// define what is; RFC 3834 auto-replies and RFC 5965 feedback reports are not).
pub fn parse_explained(message: &[u8]) -> ParsedReport {
    let (report, not_a_report_reason) = parse::parse_explained(message);
    ParsedReport {
        report,
        not_a_report_reason,
    }
}

/// [`correlate`], with the reason of [`ParsedReport::not_a_report_reason`] in
/// [`Correlation::NotAReport`] when there is one.
pub fn correlate_explained(parsed: &ParsedReport, lookup: &dyn JobLookup) -> Correlation {
    match (
        correlate(&parsed.report, lookup),
        &parsed.not_a_report_reason,
    ) {
        (Correlation::NotAReport { .. }, Some(reason)) => Correlation::NotAReport {
            reason: reason.clone(),
        },
        (other, _) => other,
    }
}

/// One recipient of a job, as sent: the `RCPT TO` address and the `ORCPT` value (RFC 3461
/// §4.2), both without angle brackets and without the `rfc822;` type, ORCPT unencoded
/// (not xtext).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRecipient {
    /// The `RCPT TO` forward-path address.
    pub address: String,
    /// The `ORCPT` address, when the job sent one.
    pub orcpt: Option<String>,
}

/// Which field of a per-recipient block (RFC 3464 §2.3) found the job recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientMatchedBy {
    /// Original-Recipient (RFC 3464 §2.3.1) as written equals the recipient's ORCPT.
    OriginalRecipient,
    /// Original-Recipient xtext-decoded (RFC 3461 §4) equals the ORCPT; tried only when
    /// the value as written matches nothing (INTERFACE.md).
    OriginalRecipientXtextDecoded,
    /// Original-Recipient equals the `RCPT TO` address (MTAs write the address there when
    /// no ORCPT was sent).
    OriginalRecipientAsAddress,
    /// Final-Recipient (RFC 3464 §2.3.2) equals the `RCPT TO` address or the ORCPT.
    FinalRecipient,
}

/// The index in `job_recipients` that a per-recipient block (RFC 3464 §2.3; an MDN's
/// Original-/Final-Recipient, RFC 8098 §3.2.3–3.2.4) is about: Original-Recipient against
/// the ORCPT first (as written, then xtext-decoded), then Original-Recipient against the
/// address, then Final-Recipient. Addresses compare with angle brackets trimmed,
/// case-insensitively. `None` when nothing matches, or when one step matches two
/// recipients (never guessed).
pub fn correlate_recipient(
    block: &RecipientReport,
    job_recipients: &[JobRecipient],
) -> Option<usize> {
    correlate_recipient_by(block, job_recipients).map(|(i, _)| i)
}

/// [`correlate_recipient`], also saying which field matched.
pub fn correlate_recipient_by(
    block: &RecipientReport,
    job_recipients: &[JobRecipient],
) -> Option<(usize, RecipientMatchedBy)> {
    correlate::correlate_recipient(block, job_recipients)
}

/// Finds jobs by the identifiers a report carries.
pub trait JobLookup {
    /// The job whose ENVID (sent in `MAIL FROM … ENVID=`) is exactly `envid`.
    fn job_by_envid(&self, envid: &str) -> Option<String>;
    /// The job whose Message-ID (with angle brackets) is exactly `message_id`.
    fn job_by_message_id(&self, message_id: &str) -> Option<String>;
}

/// How a report was matched to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Envid,
    EnvidXtextDecoded,
    OriginalMessageId,
    ReturnedMessageId,
    InReplyTo,
    References,
}

/// The result of correlating a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// The report is about `job`.
    Job { job: String, matched_by: MatchedBy },
    /// A report that matches no job (kept, with the reason).
    Orphan { reason: String },
    /// Not a delivery or disposition result at all.
    NotAReport { reason: String },
}

/// Correlate a report to a job: ENVID as written, then its xtext-decoded form (INTERFACE.md),
/// then Original-Message-ID, then the returned message's Message-ID, then In-Reply-To/References.
///
/// The xtext-decoded ENVID is tried only when the ENVID as written matches nothing. When two
/// identifiers name different jobs the report is an [`Correlation::Orphan`] (never guessed).
/// [`ReportKind::NotAReport`] and [`ReportKind::Unparseable`] give
/// [`Correlation::NotAReport`].
pub fn correlate(report: &Report, lookup: &dyn JobLookup) -> Correlation {
    correlate::correlate(report, lookup)
}
