//! Receipt tracker: parse DSNs (RFC 3464, RFC 6533) and MDNs (RFC 8098, RFC 3798) and correlate
//! them to fax jobs.
//!
//! STUB: the public API below is the contract; bodies are filled in by the receipts work.

mod outgoing;
pub use outgoing::*;

use serde::Serialize;

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
}

/// Parse one message (raw RFC 5322 bytes; CRLF, LF or CR line ends). Never panics: a message
/// that cannot be read becomes [`ReportKind::Unparseable`] with `error` set.
pub fn parse(_message: &[u8]) -> Report {
    unimplemented!("receipts::parse")
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
pub fn correlate(_report: &Report, _lookup: &dyn JobLookup) -> Correlation {
    unimplemented!("receipts::correlate")
}
