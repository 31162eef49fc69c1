//! Job state, derived by replaying the journal (never stored beside it), and the in-memory
//! index the gateway uses to correlate reports and to stay idempotent across restarts.

use crate::journal::Event;
use crate::receipts::JobLookup;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every state a job row can show (`t37gw jobs --state`).
pub const STATES: &[&str] = &[
    "queued",
    "sent",
    "deferred",
    "delayed",
    "delivered",
    "relayed",
    "expanded",
    "failed",
    "received",
    "faxed",
    "retrying",
    "correlated",
    "orphaned",
    "ignored",
    "duplicate",
    "no-report",
];

/// One recipient's view of a job.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RecipientState {
    /// Last delivery state: sent, deferred, failed, or a DSN action.
    pub state: String,
    pub status: Option<String>,
    /// Last MDN disposition type (RFC 8098 §3.2.6.2).
    pub disposition: Option<String>,
}

/// One row of `t37gw jobs`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    /// `onramp` or `offramp`.
    pub direction: String,
    pub peer: Option<String>,
    pub pages: Option<u64>,
    pub recipient: Option<String>,
    pub state: String,
    pub disposition: Option<String>,
    pub last_event: String,
    pub last_time: DateTime<Utc>,
    pub recipients: BTreeMap<String, RecipientState>,
}

/// Replay events into the job table, in order of first appearance.
pub fn table(events: &[Event]) -> Vec<JobRow> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, JobRow> = HashMap::new();
    for ev in events {
        let row = rows.entry(ev.job.clone()).or_insert_with(|| {
            order.push(ev.job.clone());
            JobRow {
                id: ev.job.clone(),
                direction: String::new(),
                peer: None,
                pages: None,
                recipient: None,
                state: String::new(),
                disposition: None,
                last_event: String::new(),
                last_time: ev.time,
                recipients: BTreeMap::new(),
            }
        });
        apply(row, ev);
    }
    order
        .into_iter()
        .filter_map(|id| rows.remove(&id))
        .filter(|r| !r.direction.is_empty())
        .collect()
}

fn apply(row: &mut JobRow, ev: &Event) {
    row.last_event = ev.event.clone();
    row.last_time = ev.time;
    let recipient = ev.str("recipient").map(str::to_string);
    match ev.event.as_str() {
        "onramp_submitted" => {
            row.direction = "onramp".into();
            row.peer = ev.str("peer").map(str::to_string);
            row.pages = ev.details.get("pages").and_then(|v| v.as_u64());
            row.recipient = recipient.clone();
            row.state = "queued".into();
            if let Some(r) = recipient {
                row.recipients.entry(r).or_default().state = "queued".into();
            }
        }
        "onramp_failed" => {
            row.direction = "onramp".into();
            row.recipient = ev.str("file").map(str::to_string);
            row.state = "failed".into();
        }
        "offramp_received" => {
            row.direction = if ev.str("kind") == Some("report") {
                "report"
            } else {
                "offramp"
            }
            .into();
            row.recipient = ev.str("recipients").map(str::to_string).or(recipient);
            row.state = "received".into();
        }
        "report_correlated" => {
            row.state = "correlated".into();
            row.recipient = ev
                .str("correlated_job")
                .map(|j| format!("-> {j}"))
                .or(row.recipient.take());
        }
        "report_orphaned" => row.state = "orphaned".into(),
        "report_ingested" => {
            row.direction = "report".into();
            row.recipient = ev.str("source").map(str::to_string);
            row.state = "received".into();
        }
        "report_duplicate" => row.state = "duplicate".into(),
        "report_ignored" => row.state = "ignored".into(),
        "mail_sent" | "mail_deferred" | "mail_failed" => {
            let state = &ev.event[5..];
            set_state(row, recipient.as_deref(), state, ev.str("status"));
        }
        "report_overdue" => {
            set_state(row, recipient.as_deref(), "no-report", None);
        }
        "dsn_received" => {
            let action = ev.str("action").unwrap_or("unknown");
            set_state(row, recipient.as_deref(), action, ev.str("status"));
        }
        "mdn_received" => {
            let d = ev.str("disposition").map(str::to_string);
            row.disposition = d.clone();
            // An MDN's Final-Recipient is the reader's mailbox, often not the address the mail
            // was sent to (aliases, forwarding): it then stays on the job, not a new recipient.
            if let Some(known) = recipient.and_then(|r| row.recipients.get_mut(&r)) {
                known.disposition = d;
            }
        }
        "fax_delivered" | "fax_relayed" | "fax_failed" | "fax_deferred" => {
            row.pages = ev
                .details
                .get("pages")
                .and_then(|v| v.as_u64())
                .or(row.pages);
            row.peer = ev.str("peer").map(str::to_string).or(row.peer.take());
            let state = match ev.event.as_str() {
                "fax_delivered" => "faxed",
                "fax_relayed" => "relayed",
                "fax_failed" => "failed",
                _ => "retrying",
            };
            set_state(row, recipient.as_deref(), state, ev.str("status"));
        }
        // A repeat of a message already faxed to this number (INTERFACE.md "Delivery
        // semantics"): done for this recipient, by the job named in the reason.
        "offramp_duplicate" => set_state(row, recipient.as_deref(), "duplicate", None),
        _ => {}
    }
}

/// Precedence of per-recipient states: a recipient keeps the highest it has seen, so reports
/// in any order give the same final state (a late `delayed` does not undo `delivered`).
fn rank(state: &str) -> u8 {
    match state {
        "failed" => 7,
        "delivered" | "faxed" | "duplicate" => 6,
        "expanded" => 5,
        "relayed" => 4,
        "delayed" | "retrying" | "no-report" => 2,
        "sent" | "deferred" => 1,
        _ => 0,
    }
}

fn set_state(row: &mut JobRow, recipient: Option<&str>, state: &str, status: Option<&str>) {
    let key = recipient
        .map(str::to_string)
        .or_else(|| row.recipient.clone())
        .unwrap_or_default();
    let r = row.recipients.entry(key).or_default();
    if rank(state) >= rank(&r.state) {
        r.state = state.to_string();
        r.status = status.map(str::to_string);
    }
    // Whole job: failed if any recipient failed, else its least advanced recipient.
    // Recipients known only from a report (no state of their own) do not decide it.
    let states: Vec<&str> = row
        .recipients
        .values()
        .map(|r| r.state.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    row.state = if states.contains(&"failed") {
        "failed".into()
    } else {
        states
            .iter()
            .min_by_key(|s| rank(s))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
}

/// The gateway's in-memory index over the journal.
#[derive(Debug, Default)]
pub struct JobIndex {
    jobs: HashSet<String>,
    message_ids: HashMap<String, String>,
    /// (job, event) pairs seen, for idempotent steps.
    done: HashSet<(String, String)>,
    /// (job, recipient) pairs with `mail_sent`.
    sent: HashSet<(String, String)>,
    /// (Message-ID, number) pairs already faxed (offramp dedupe).
    faxed: HashMap<(String, String), String>,
    /// Reports already taken into account (`report_key`).
    reports_seen: HashSet<String>,
    /// Job → its recipients (from `onramp_submitted`).
    recipients: HashMap<String, Vec<String>>,
    /// DSN marks already queued (`FAX:delay`, `FAX:final`).
    dsn_marks: HashSet<String>,
    /// Onramp jobs that asked for success DSNs (so silence means something).
    expects_success: HashSet<String>,
    /// (job, recipient) → time of `mail_sent`, while no DSN or overdue mark came for it.
    awaiting_report: HashMap<(String, String), DateTime<Utc>>,
    /// Fax id → its final event (`fax_delivered`, `fax_relayed`, `fax_failed`).
    fax_final: HashMap<String, Event>,
}

impl JobIndex {
    /// Build from a journal replay.
    pub fn from_events(events: &[Event]) -> JobIndex {
        let mut idx = JobIndex::default();
        for ev in events {
            idx.record(ev);
        }
        idx
    }

    /// Update with one new event.
    pub fn record(&mut self, ev: &Event) {
        self.jobs.insert(ev.job.clone());
        self.done.insert((ev.job.clone(), ev.event.clone()));
        if let Some(mid) = ev.str("message_id") {
            if ev.event == "onramp_submitted" {
                self.message_ids.insert(mid.to_string(), ev.job.clone());
            }
        }
        if let Some(key) = ev.str("report_key") {
            self.reports_seen.insert(key.to_string());
        }
        if ev.event == "onramp_submitted" {
            if ev.str("notify").is_some_and(|n| n.contains("SUCCESS")) {
                self.expects_success.insert(ev.job.clone());
            }
            if let Some(r) = ev.str("recipient") {
                self.recipients
                    .entry(ev.job.clone())
                    .or_default()
                    .push(r.to_string());
            }
        }
        if ev.event == "dsn_queued" {
            if let Some(marks) = ev.details.get("reports").and_then(|v| v.as_array()) {
                self.dsn_marks
                    .extend(marks.iter().filter_map(|m| m.as_str().map(str::to_string)));
            }
        }
        if ev.event == "mail_sent" {
            if let Some(r) = ev.str("recipient") {
                self.sent.insert((ev.job.clone(), r.to_string()));
                if self.expects_success.contains(&ev.job) {
                    self.awaiting_report
                        .insert((ev.job.clone(), r.to_string()), ev.time);
                }
            }
        }
        let settles = match ev.event.as_str() {
            "dsn_received" => ev.str("action").is_some_and(|a| a != "delayed"),
            "report_overdue" | "mail_failed" => true,
            _ => false,
        };
        if settles {
            match ev.str("recipient") {
                Some(r) => {
                    self.awaiting_report
                        .remove(&(ev.job.clone(), r.to_string()));
                }
                None => self.awaiting_report.retain(|(j, _), _| j != &ev.job),
            }
            if ev.event == "dsn_received" {
                // A report about any recipient of a one-recipient job settles it.
                let job = ev.job.clone();
                if self.recipients(&job).len() <= 1 {
                    self.awaiting_report.retain(|(j, _), _| j != &job);
                }
            }
        }
        if matches!(
            ev.event.as_str(),
            "fax_delivered" | "fax_relayed" | "fax_failed"
        ) {
            if let Some(fax) = ev.str("fax") {
                self.fax_final.insert(fax.to_string(), ev.clone());
            }
        }
        if matches!(ev.event.as_str(), "fax_delivered" | "fax_relayed") {
            if let (Some(mid), Some(num)) = (ev.str("message_id"), ev.str("number")) {
                self.faxed
                    .insert((mid.to_string(), num.to_string()), ev.job.clone());
            }
        }
    }

    /// True when `job` has an event named `event`.
    pub fn has(&self, job: &str, event: &str) -> bool {
        self.done.contains(&(job.to_string(), event.to_string()))
    }

    /// True when `recipient` of `job` already got `250` (never send again).
    pub fn was_sent(&self, job: &str, recipient: &str) -> bool {
        self.sent
            .contains(&(job.to_string(), recipient.to_string()))
    }

    /// (job, recipient) pairs whose mail was sent before `cutoff` and that have no DSN yet.
    pub fn overdue(&self, cutoff: DateTime<Utc>) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .awaiting_report
            .iter()
            .filter(|(_, t)| **t < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// True when a report with this key was already taken into account.
    pub fn report_seen(&self, key: &str) -> bool {
        self.reports_seen.contains(key)
    }

    /// The recipients of an onramp job.
    pub fn recipients(&self, job: &str) -> &[String] {
        self.recipients.get(job).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when the DSN `mark` (`FAX:delay` or `FAX:final`) was already queued.
    pub fn dsn_queued(&self, mark: &str) -> bool {
        self.dsn_marks.contains(mark)
    }

    /// The final event of a fax id, if it has one.
    pub fn fax_final(&self, fax: &str) -> Option<&Event> {
        self.fax_final.get(fax)
    }

    /// The fax job that already faxed this Message-ID to this number, if any.
    pub fn already_faxed(&self, message_id: &str, number: &str) -> Option<&str> {
        self.faxed
            .get(&(message_id.to_string(), number.to_string()))
            .map(String::as_str)
    }
}

impl JobLookup for JobIndex {
    fn job_by_envid(&self, envid: &str) -> Option<String> {
        self.has(envid, "onramp_submitted")
            .then(|| envid.to_string())
    }

    fn job_by_message_id(&self, message_id: &str) -> Option<String> {
        self.message_ids.get(message_id.trim()).cloned()
    }
}
