//! Offramp (mail → fax) and the receipt tracker's intake: the SMTP listener's backend and the
//! worker that turns spooled messages into faxes, DSNs and correlated reports.
//!
//! RCPT policy: `FAX=+number@domain` (RFC 3192 §3) where an offramp dial peer matches the
//! number and does not `reject` it; the gateway's return address(es) and `postmaster`
//! (RFC 5321 §4.5.1) for reports. Anything else is refused: other domains `550 5.7.1`
//! (never an open relay), unknown local parts `550 5.1.1`. DATA: the message and its
//! envelope are fsynced in the spool before `250` (INTERFACE.md "Delivery semantics").

use crate::fax::{self, FaxJob, FaxOutcome};
use crate::gateway::Shared;
use crate::ids;
use crate::journal::Event;
use crate::receipts::{self, Correlation, DsnRecipient, OutgoingDsn, ReportKind};
use crate::smtp::{Backend, Envelope, Recipient, Reply, SpoolFile};
use crate::spool::{OutItem, OutKind, OutRecipient};
use crate::tiff_f::{self, Limits, WriteOptions};
use chrono::Utc;
use mail_parser::{MessageParser, MimeHeaders};
use std::sync::Arc;

/// What a recipient address is to this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A fax number (RFC 3192 `FAX=` local part), with its leading `+`.
    Fax(String),
    /// The return address, postmaster: the message goes to the receipt tracker.
    Reports,
}

/// Classify a recipient, or give the reply that refuses it.
pub fn classify(shared: &Shared, address: &str) -> Result<Destination, Reply> {
    let cfg = &shared.config;
    let Some((local, domain)) = address.rsplit_once('@') else {
        if address.eq_ignore_ascii_case("postmaster") {
            return Ok(Destination::Reports);
        }
        return Err(Reply::new(
            550,
            "5.1.3",
            "Recipient address must be local@domain",
        ));
    };
    if !cfg.is_local_domain(domain) {
        return Err(Reply::new(550, "5.7.1", "Relaying denied"));
    }
    if local.eq_ignore_ascii_case("postmaster") {
        return Ok(Destination::Reports);
    }
    let own = |a: &str| {
        a.rsplit_once('@')
            .is_some_and(|(l, d)| l == local && cfg.is_local_domain(d))
    };
    if own(&cfg.mta_send.mail_from) || own(&cfg.mta_send.return_receipt_to) {
        return Ok(Destination::Reports);
    }
    let Some(number) = local
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("FAX="))
        .map(|_| &local[4..])
    else {
        return Err(Reply::new(550, "5.1.1", "No such recipient here"));
    };
    // RFC 3192 §3: fax-number = "+" digits, optionally followed by the T.33 sub-address
    // qualifier "/T33S=" digits. Any other qualifier is refused rather than dropped (the
    // number before it would be dialled without what the sender asked for).
    let mut parts = number.split('/');
    let number = parts.next().unwrap_or("");
    let qualifiers_ok = parts.all(|q| t33_qualifier(q).is_some());
    if !qualifiers_ok {
        return Err(Reply::new(
            550,
            "5.1.3",
            "Fax address qualifier not understood (RFC 3192: /T33S=<digits> only)",
        ));
    }
    // RFC 3191 §3 (the global-phone of RFC 3192 §3): "+" 1*( DIGIT / written-sep ), with
    // written-sep = "-" / "."; the separators are only for reading and are not dialled.
    // ITU-T E.164 §6: an international number has at most 15 digits.
    let written = number.strip_prefix('+').unwrap_or("");
    let valid = written
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    if !valid || digits.is_empty() || digits.len() > 15 {
        return Err(Reply::new(
            550,
            "5.1.3",
            "Fax address must be FAX=+<digits>, at most 15 digits (E.164; - and . may separate them)",
        ));
    }
    let number = format!("+{digits}");
    match cfg.offramp_peer(&number) {
        Some(peer) if peer.target != crate::config::OfframpTarget::Reject => {
            Ok(Destination::Fax(number))
        }
        // RFC 3463 5.7.1: delivery not authorized. The same reply whether a peer rejects the
        // number or none matches, so replies do not reveal which numbers exist.
        _ => Err(Reply::new(550, "5.7.1", "Fax number not permitted")),
    }
}

/// The T.33 sub-address of a fax recipient `FAX=+number/T33S=digits@domain` (RFC 3192 §3),
/// the digits; `None` without one. Only for addresses [`classify`] accepted (it refuses any
/// other qualifier).
pub fn t33_subaddress(address: &str) -> Option<String> {
    let (local, _) = address.rsplit_once('@')?;
    local
        .split('/')
        .skip(1)
        .find_map(t33_qualifier)
        .map(str::to_string)
}

/// The digits of one RFC 3192 §3 qualifier `T33S=digits` (case-insensitive tag, at least one
/// digit); `None` for anything else.
fn t33_qualifier(q: &str) -> Option<&str> {
    let digits = q
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("T33S="))
        .map(|_| &q[5..])?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

#[cfg(test)]
mod subaddress_tests {
    #[test]
    fn t33_subaddress_digits_or_none() {
        use super::t33_subaddress as t;
        assert_eq!(
            t("FAX=+4930123/T33S=0815@gw.example").as_deref(),
            Some("0815")
        );
        assert_eq!(t("fax=+4930123/t33s=7@gw.example").as_deref(), Some("7"));
        assert_eq!(t("FAX=+4930123@gw.example"), None);
        assert_eq!(t("FAX=+4930123/T33S=@gw.example"), None);
        assert_eq!(t("no-at-sign"), None);
    }
}

/// The SMTP listener's backend.
pub struct OfframpBackend {
    shared: Arc<Shared>,
}

impl OfframpBackend {
    pub fn new(shared: Arc<Shared>) -> OfframpBackend {
        OfframpBackend { shared }
    }
}

impl Backend for OfframpBackend {
    /// `mta-receive.allowed-senders`: others get `550 5.7.1` (RFC 3463: delivery not
    /// authorized); the null reverse-path of reports is always accepted (RFC 5321 §4.5.5).
    fn session_opened(&self) {
        self.shared
            .smtp_sessions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn session_closed(&self) {
        self.shared
            .smtp_sessions
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn mail(&self, envelope: &Envelope) -> Result<(), Reply> {
        if self.shared.config.sender_allowed(&envelope.mail_from) {
            Ok(())
        } else {
            Err(Reply::new(
                550,
                "5.7.1",
                "Sender not allowed to send faxes here",
            ))
        }
    }

    fn rcpt(&self, _envelope: &Envelope, rcpt: &Recipient) -> Result<(), Reply> {
        classify(&self.shared, &rcpt.address).map(|_| ())
    }

    /// AUTH PLAIN / LOGIN (RFC 4954) against `mta-receive.auth-users-file`: the password is
    /// checked against the user's SHA-crypt hash (constant-time comparison). An unknown user
    /// costs the same hash computation as a known one, so timing does not tell which users
    /// exist.
    fn authenticate(&self, user: &str, password: &str) -> bool {
        /// A SHA-512-crypt hash of nothing anyone types, checked for unknown users.
        const DUMMY: &str = "$6$t37gwdummysalt$Rk1xAWHRSLVK518exXc7qpNF.AFUmuTd41F7tQzmSaJpyLmNxVjC.vqomEDmhDtnZE9WOlOaHa7LO63VsF0m4.";
        let users = &self.shared.config.mta_receive.auth_users;
        match users.get(user) {
            Some(hash) => check_crypt(password, hash),
            None => {
                let _ = check_crypt(password, DUMMY);
                false
            }
        }
    }

    /// The message is streamed into `spool/offramp/.ID.msg.RANDOM.tmp` (the envelope line, our
    /// `Received:` trace header, RFC 5321 §4.4, then the message as it arrives).
    fn open_message(&self, envelope: &Envelope) -> Option<std::io::Result<SpoolFile>> {
        Some(open_spooled(&self.shared, envelope))
    }

    /// Commit (group commit: file fsync, rename, directory fsync) and answer `250` only
    /// after it; `452 4.3.1` when the disk is full, `451 4.3.0` for other errors. The journal's
    /// `offramp_received` is written by the worker when it picks the message up (the spool
    /// entry is the record; a crash in between loses nothing).
    fn data_file(
        &self,
        _envelope: Envelope,
        message: SpoolFile,
    ) -> impl std::future::Future<Output = Reply> + Send {
        let shared = self.shared.clone();
        async move {
            let id = message
                .name()
                .strip_suffix(".msg")
                .unwrap_or_default()
                .to_string();
            if let Err(e) = shared.spool.commit_offramp(message).await {
                tracing::error!(job = %id, "spool write failed: {e}");
                return Reply::storage_error(&e);
            }
            shared.offramp_wake.notify_one();
            Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
        }
    }

    /// The in-memory path (used only when a message reaches the backend whole): written to
    /// the same spool file and committed the same way.
    fn data(
        &self,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> impl std::future::Future<Output = Reply> + Send {
        let opened = open_spooled(&self.shared, &envelope);
        let this = OfframpBackend::new(self.shared.clone());
        async move {
            match opened {
                Ok(mut file) => {
                    file.write(&message);
                    this.data_file(envelope, file).await
                }
                Err(e) => {
                    tracing::error!("spool write failed: {e}");
                    Reply::storage_error(&e)
                }
            }
        }
    }
}

/// `password` against a SHA-crypt `hash` (`$6$` SHA-512 or `$5$` SHA-256, the glibc crypt(3)
/// formats). A malformed hash never matches.
fn check_crypt(password: &str, hash: &str) -> bool {
    if hash.starts_with("$6$") {
        sha_crypt::sha512_check(password, hash).is_ok()
    } else if hash.starts_with("$5$") {
        sha_crypt::sha256_check(password, hash).is_ok()
    } else {
        false
    }
}

/// A new offramp (or report) spool file for `envelope` with the `Received:` header written.
fn open_spooled(shared: &Shared, envelope: &Envelope) -> std::io::Result<SpoolFile> {
    // Messages only for the return address are reports for the receipt tracker.
    let only_reports = envelope
        .rcpts
        .iter()
        .all(|r| classify(shared, &r.address) == Ok(Destination::Reports));
    let id = ids::new_job_id(if only_reports { "RPT" } else { "OFF" });
    let received = format!(
        "Received: from {helo} ({addr})\r\n\tby {host} (t37gw) with ESMTP id {id};\r\n\t{date}\r\n",
        helo = envelope.helo,
        addr = envelope.client_addr,
        host = shared.config.hostname,
        date = Utc::now().to_rfc2822(),
    );
    let mut file = shared.spool.create_offramp(&id, envelope)?;
    file.write(received.as_bytes());
    Ok(file)
}

fn received_event(
    shared: &Shared,
    id: &str,
    env: &Envelope,
    message_id: Option<&str>,
    size: usize,
) -> Event {
    let rcpts: Vec<&str> = env.rcpts.iter().map(|r| r.address.as_str()).collect();
    let reports = env
        .rcpts
        .iter()
        .filter(|r| classify(shared, &r.address) == Ok(Destination::Reports))
        .count();
    let kind = match reports {
        0 => "fax",
        n if n == env.rcpts.len() => "report",
        _ => "mixed",
    };
    Event::new(id, "offramp_received")
        .with("kind", kind)
        .with("from", env.mail_from.clone())
        .with("recipients", rcpts.join(", "))
        .with("envid", env.envid.clone())
        .with("message_id", message_id.map(str::to_string))
        .with("client", env.client_addr.clone())
        .with("auth_user", env.auth_user.clone())
        .with("bytes", size)
}

/// The Message-ID header value (with angle brackets), if present.
fn header_message_id(message: &[u8]) -> Option<String> {
    let parsed = MessageParser::new().parse_headers(message)?;
    parsed.message_id().map(|m| format!("<{m}>"))
}

/// Process one spooled offramp message to the end: reports correlated, each fax recipient
/// faxed (or failed), DSNs queued, the spool entry removed. Each step is journalled and
/// skipped when the journal shows it done, so a restart at any point completes the job
/// without a second fax.
pub async fn process(shared: &Shared, id: &str) {
    let (env, message) = match shared.spool.load_offramp(id) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(job = id, "spooled message unreadable: {e}");
            return;
        }
    };
    let message_id = header_message_id(&message);
    if !shared.index().has(id, "offramp_received") {
        shared.record_or_log(received_event(
            shared,
            id,
            &env,
            message_id.as_deref(),
            message.len(),
        ));
    }
    let mut faxes = Vec::new();
    let mut reports = false;
    for r in &env.rcpts {
        match classify(shared, &r.address) {
            Ok(Destination::Fax(n)) => faxes.push((r.clone(), n)),
            Ok(Destination::Reports) => reports = true,
            Err(_) => {}
        }
    }
    if reports && !shared.index().has(id, "report_processed") {
        ingest_report(shared, id, &message);
    }
    let mut outcomes: Vec<(Recipient, String, FaxOutcome)> = Vec::new();
    if !faxes.is_empty() {
        let image = extract_fax(&message);
        let first_try = shared.retry_started(id);
        for (i, (rcpt, number)) in faxes.iter().enumerate() {
            let fax_id = if faxes.len() == 1 {
                id.to_string()
            } else {
                format!("{id}-{}", i + 1)
            };
            let mut outcome = fax_one(
                shared,
                id,
                &fax_id,
                &env,
                rcpt,
                number,
                message_id.as_deref(),
                &image,
            )
            .await;
            if let FaxOutcome::Retry(why) = outcome.clone() {
                if first_try.elapsed() > FAX_GIVE_UP {
                    // RFC 3463 4.4.7: delivery time expired.
                    outcome = FaxOutcome::Failed {
                        status: "4.4.7".into(),
                        reason: format!("gave up after {} h: {why}", FAX_GIVE_UP.as_secs() / 3600),
                    };
                    shared.record_or_log(
                        Event::new(id, "fax_failed")
                            .with("recipient", rcpt.address.clone())
                            .with("number", number.clone())
                            .with("fax", fax_id.clone())
                            .with("status", "4.4.7")
                            .with("reason", format!("gave up: {why}")),
                    );
                }
            }
            outcomes.push((rcpt.clone(), fax_id, outcome));
        }
    }
    queue_dsn(shared, id, &env, &message, &outcomes);
    let pending = outcomes
        .iter()
        .any(|(_, _, o)| matches!(o, FaxOutcome::Retry(_)));
    if pending {
        shared.retry_later(id);
    } else {
        shared.retry_done(id);
        if let Err(e) = shared.spool.remove_offramp(id) {
            tracing::error!(job = id, "cannot remove finished message: {e}");
        } else {
            shared.record_or_log(Event::new(id, "offramp_completed"));
        }
    }
}

/// How long the offramp keeps retrying a fax the backend asked to retry (exit 75, outbox
/// write failure) before it fails with 4.4.7 and a failure DSN.
pub const FAX_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The fax image of a message: every `image/tiff` part (or part whose bytes are a TIFF),
/// normalised into one TIFF-F. Errors carry the RFC 3463 status for the DSN.
type FaxImage = Result<Vec<Vec<u8>>, (String, String)>;

fn extract_fax(message: &[u8]) -> FaxImage {
    let parsed = MessageParser::new()
        .parse(message)
        .ok_or(("5.6.0".to_string(), "message is not MIME".to_string()))?;
    let mut tiffs: Vec<Vec<u8>> = Vec::new();
    for part in parsed.parts.iter() {
        let body = part.contents();
        let is_tiff_type = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("image")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("tiff"))
        });
        let magic = body.starts_with(b"II*\0") || body.starts_with(b"MM\0*");
        if is_tiff_type && !magic {
            // Declared image/tiff but not TIFF octets once decoded: most often a damaged
            // transfer encoding (base64 cut or mangled on the way), so say that, rather than
            // that the image type is unsupported. RFC 3463 X.6.5: conversion failed.
            let cte = part
                .content_transfer_encoding()
                .map(|e| format!(" ({e} transfer encoding damaged?)"))
                .unwrap_or_default();
            return Err((
                "5.6.5".into(),
                format!(
                    "image/tiff attachment {} is not a TIFF file: it does not start with II*/MM*{cte}",
                    tiffs.len() + 1
                ),
            ));
        }
        if (is_tiff_type || magic) && !body.is_empty() {
            tiffs.push(body.to_vec());
        }
    }
    if tiffs.is_empty() {
        return Err((
            "5.6.1".into(),
            "no image/tiff part: this gateway faxes TIFF-F attachments".into(),
        ));
    }
    Ok(tiffs)
}

/// The attachments normalised to the offramp peer's TIFF-F profile (`image-encoding`,
/// `image-resolution`), or the RFC 3463 status and reason for the DSN.
fn fax_image(
    tiffs: &[Vec<u8>],
    peer: &crate::config::OfframpPeer,
) -> Result<(Vec<u8>, usize), (String, String)> {
    let opts = WriteOptions {
        encoding: peer.encoding,
        resolution: peer.resolution,
        ..WriteOptions::default()
    };
    let inputs: Vec<&[u8]> = tiffs.iter().map(Vec::as_slice).collect();
    match tiff_f::convert(&inputs, &opts, &Limits::default()) {
        Ok(t) => Ok((t.bytes, t.pages)),
        Err(e) => Err((
            e.enhanced_status().to_string(),
            format!("TIFF attachment: {e}"),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn fax_one(
    shared: &Shared,
    id: &str,
    fax_id: &str,
    env: &Envelope,
    rcpt: &Recipient,
    number: &str,
    message_id: Option<&str>,
    image: &FaxImage,
) -> FaxOutcome {
    let record = |name: &str, o: &FaxOutcome, peer: &str, pages: usize| {
        let (status, reason) = match o {
            FaxOutcome::Delivered(r) | FaxOutcome::Relayed(r) => ("2.0.0".to_string(), r.clone()),
            FaxOutcome::Retry(r) => ("4.4.0".to_string(), r.clone()),
            FaxOutcome::Failed { status, reason } => (status.clone(), reason.clone()),
        };
        shared.record_or_log(
            Event::new(id, name)
                .with("recipient", rcpt.address.clone())
                .with("number", number.to_string())
                .with("fax", fax_id.to_string())
                .with("peer", peer.to_string())
                .with("pages", pages)
                .with("status", status)
                .with("reason", reason)
                .with("message_id", message_id.map(str::to_string)),
        );
    };
    // Already done before a restart? Rebuild the outcome from the journal's verdict.
    if let Some(ev) = shared.index().fax_final(fax_id) {
        let reason = ev.str("reason").unwrap_or_default().to_string();
        return match ev.event.as_str() {
            "fax_delivered" => FaxOutcome::Delivered(reason),
            "fax_relayed" => FaxOutcome::Relayed(reason),
            _ => FaxOutcome::Failed {
                status: ev.str("status").unwrap_or("5.0.0").to_string(),
                reason,
            },
        };
    }
    if let Some(mid) = message_id {
        // Bind first: the index lock must be released before `record_or_log` takes it again.
        let already = shared
            .index()
            .already_faxed(mid, number)
            .map(str::to_string);
        if let Some(other) = already {
            if other != id {
                shared.record_or_log(
                    Event::new(id, "offramp_duplicate")
                        .with("recipient", rcpt.address.clone())
                        .with(
                            "reason",
                            format!("{mid} was already faxed to {number} by {other}"),
                        ),
                );
                return FaxOutcome::Relayed(format!("duplicate of {other}"));
            }
        }
    }
    let cfg = &shared.config;
    let Some(peer) = cfg.offramp_peer(number) else {
        let o = FaxOutcome::Failed {
            status: "5.7.1".into(),
            reason: "fax number not permitted".into(),
        };
        record("fax_failed", &o, "-", 0);
        return o;
    };
    let (tiff, pages) = match image
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|t| fax_image(t, peer))
    {
        Ok((t, p)) => (t, p),
        Err((status, reason)) => {
            let o = FaxOutcome::Failed {
                status: status.clone(),
                reason: reason.clone(),
            };
            record("fax_failed", &o, &peer.name, 0);
            return o;
        }
    };
    let crate::config::OfframpTarget::Backend(bname) = &peer.target else {
        let o = FaxOutcome::Failed {
            status: "5.7.1".into(),
            reason: "fax number not permitted".into(),
        };
        record("fax_failed", &o, &peer.name, 0);
        return o;
    };
    let Some(backend) = cfg.backend(bname) else {
        let o = FaxOutcome::Retry(format!("backend {bname} not configured"));
        record("fax_deferred", &o, &peer.name, pages);
        return o;
    };
    let job = FaxJob {
        job: fax_id.to_string(),
        offramp_job: id.to_string(),
        number: number.to_string(),
        subaddress: t33_subaddress(&rcpt.address),
        pages,
        sender: env.mail_from.clone(),
        message_id: message_id.map(str::to_string),
        peer: peer.name.clone(),
    };
    let outcome = fax::send(backend, &job, &tiff, &shared.spool.fax_work_dir()).await;
    let name = match &outcome {
        FaxOutcome::Delivered(_) => "fax_delivered",
        FaxOutcome::Relayed(_) => "fax_relayed",
        FaxOutcome::Failed { .. } => "fax_failed",
        FaxOutcome::Retry(_) => "fax_deferred",
    };
    record(name, &outcome, &peer.name, pages);
    outcome
}

/// Queue the DSN for the final outcomes, as NOTIFY asks (RFC 3461 §4.1: absent NOTIFY means
/// failure and delay only; NEVER none) and never for `MAIL FROM:<>` (RFC 3461 §6.1).
fn queue_dsn(
    shared: &Shared,
    id: &str,
    env: &Envelope,
    message: &[u8],
    outcomes: &[(Recipient, String, FaxOutcome)],
) {
    if env.mail_from.is_empty() {
        return;
    }
    let cfg = &shared.config;
    let mut recipients = Vec::new();
    let mut marks = Vec::new();
    for (rcpt, fax_id, outcome) in outcomes {
        let mark = match outcome {
            FaxOutcome::Retry(_) => format!("{fax_id}:delay"),
            _ => format!("{fax_id}:final"),
        };
        if shared.index().dsn_queued(&mark) {
            continue;
        }
        let notify = rcpt.notify;
        let (action, status, diag) = match outcome {
            FaxOutcome::Delivered(r) => ("delivered", "2.0.0".to_string(), r.clone()),
            FaxOutcome::Relayed(r) => ("relayed", "2.0.0".to_string(), r.clone()),
            FaxOutcome::Failed { status, reason } => ("failed", status.clone(), reason.clone()),
            FaxOutcome::Retry(r) => ("delayed", "4.4.0".to_string(), r.clone()),
        };
        let wanted = match (notify, action) {
            (None, "failed" | "delayed") => true,
            (None, _) => false,
            (Some(n), "failed") => n.failure,
            (Some(n), "delayed") => n.delay,
            (Some(n), _) => n.success,
        };
        if !wanted {
            continue;
        }
        marks.push(mark);
        recipients.push(DsnRecipient {
            original_recipient: rcpt.orcpt.clone(),
            final_recipient: rcpt.address.clone(),
            action: action.to_string(),
            status,
            diagnostic_code: (!diag.is_empty()).then(|| format!("X-T37gw; {diag}")),
        });
    }
    if recipients.is_empty() {
        return;
    }
    let dsn_id = ids::new_job_id("DSN");
    let message_id = ids::message_id(&dsn_id, &cfg.hostname);
    let actions: Vec<String> = recipients.iter().map(|r| r.action.clone()).collect();
    let human = format!(
        "This is the fax gateway {host}.\r\n\r\nYour message {mid} was processed with this result:\r\n{lines}",
        host = cfg.hostname,
        mid = header_message_id(message).unwrap_or_default(),
        lines = recipients
            .iter()
            .map(|r| format!("  {}: {} ({}) {}\r\n", r.final_recipient, r.action, r.status, r.diagnostic_code.clone().unwrap_or_default()))
            .collect::<String>(),
    );
    let dsn = OutgoingDsn {
        reporting_mta: cfg.hostname.clone(),
        from: format!("MAILER-DAEMON@{}", cfg.domain),
        to: env.mail_from.clone(),
        envid: env.envid.clone(),
        arrival_date: Utc::now(),
        recipients,
        original: message.to_vec(),
        return_full: env.ret == Some(crate::smtp::Ret::Full),
        message_id: message_id.clone(),
        human_text: human,
    };
    let bytes = receipts::build_dsn(&dsn);
    let item = OutItem {
        id: dsn_id.clone(),
        job: id.to_string(),
        kind: OutKind::Dsn,
        mail_from: String::new(),
        ret: None,
        envid: None,
        rcpts: vec![OutRecipient {
            address: env.mail_from.clone(),
            notify: None,
            orcpt: None,
        }],
        message_id,
        created: Utc::now(),
        attempts: 0,
        next_attempt: Utc::now(),
    };
    match shared.spool.put_out(&item, &bytes) {
        Ok(()) => {
            shared.record_or_log(
                Event::new(id, "dsn_queued")
                    .with("to", env.mail_from.clone())
                    .with("actions", actions.join(","))
                    .with("reports", marks)
                    .with("dsn", dsn_id),
            );
            shared.outq_wake.notify_one();
        }
        Err(e) => tracing::error!(job = id, "cannot queue DSN: {e}"),
    }
}

/// What became of one report message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Correlated to this job.
    Correlated(String),
    /// A report that matches no job (`report_orphaned`).
    Orphan,
    /// Not a delivery or disposition result (`report_ignored`).
    NotAReport,
    /// Could not be read as a message (`report_ignored`).
    Unparseable,
    /// Seen before (same Message-ID, or same bytes): nothing changed.
    Duplicate,
}

/// The key that makes a report count once: its Message-ID, else a hash of its bytes.
fn report_key(message: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    match header_message_id(message) {
        Some(mid) => format!("mid:{mid}"),
        None => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            message.hash(&mut h);
            format!("hash:{:016x}", h.finish())
        }
    }
}

/// Parse a report message (sent to the return address, or read by `receipts ingest`),
/// correlate it, and journal one `dsn_received` per recipient block (or one `mdn_received`)
/// under the matched job, or `report_orphaned` / `report_ignored` under `id`. Recipients are
/// mapped to the job's own by Original-Recipient/ORCPT, then Final-Recipient (RFC 3464 §2.3.1,
/// §2.3.2). The same report twice changes nothing.
pub fn ingest_report(shared: &Shared, id: &str, message: &[u8]) -> IngestOutcome {
    if let Err(e) = shared.sync_index() {
        tracing::error!("journal unreadable: {e}");
    }
    let key = report_key(message);
    if shared.index().report_seen(&key) {
        shared.record_or_log(Event::new(id, "report_duplicate").with("report_key", key));
        return IngestOutcome::Duplicate;
    }
    let parsed = receipts::parse_explained(message);
    let report = &parsed.report;
    let correlation = {
        let idx = shared.index();
        receipts::correlate_explained(&parsed, &*idx)
    };
    let outcome = match correlation {
        // A delivery report that names the job but carries no recipient status (its
        // message/delivery-status part lost, and no bounce text to read instead): nothing to
        // record for the job, so it is not counted as correlated.
        Correlation::Job { job, .. }
            if report.kind != ReportKind::Mdn && report.recipients.is_empty() =>
        {
            shared.record_or_log(
                Event::new(id, "report_ignored")
                    .with(
                        "reason",
                        format!(
                            "delivery report for {job} without any recipient status \
                             (RFC 3464 §2.3 fields)"
                        ),
                    )
                    .with("correlated_job", job.clone())
                    .with("report_key", key.clone()),
            );
            IngestOutcome::NotAReport
        }
        Correlation::Job { job, matched_by } => {
            let via = serde_json::to_value(matched_by).unwrap_or_default();
            shared.record_or_log(
                Event::new(id, "report_correlated")
                    .with(
                        "kind",
                        serde_json::to_value(report.kind).unwrap_or_default(),
                    )
                    .with("correlated_job", job.clone())
                    .with("matched_by", via.clone())
                    .with("report_key", key.clone()),
            );
            let job_rcpts: Vec<receipts::JobRecipient> = shared
                .index()
                .recipients(&job)
                .iter()
                .map(|a| receipts::JobRecipient {
                    address: a.clone(),
                    orcpt: Some(a.clone()),
                })
                .collect();
            let ours = |r: &receipts::RecipientReport| {
                receipts::correlate_recipient(r, &job_rcpts)
                    .map(|i| job_rcpts[i].address.clone())
                    .or_else(|| r.original_recipient.clone().or(r.final_recipient.clone()))
            };
            if report.kind == ReportKind::Mdn {
                let d = report.disposition.clone().unwrap_or_default();
                let rcpt = report.recipients.first().cloned().unwrap_or_default();
                shared.record_or_log(
                    Event::new(&job, "mdn_received")
                        .with("recipient", ours(&rcpt))
                        .with("final_recipient", rcpt.final_recipient.clone())
                        .with("disposition", d.kind)
                        .with("action_mode", d.action_mode)
                        .with("sending_mode", d.sending_mode)
                        .with("modifiers", d.modifiers)
                        .with("matched_by", via.clone())
                        .with("report", id.to_string()),
                );
            } else {
                // One event per recipient, action and status: a report repeating a block (or
                // thousands of them) does not grow the journal. At most as many distinct
                // blocks as the job has recipients, or the SMTP recipient limit (RFC 5321
                // §4.5.3.1.8: 100 per transaction) if that is more, since a DSN reports on
                // the recipients of one transaction.
                let mut seen = std::collections::HashSet::new();
                let cap = job_rcpts.len().max(100);
                for r in &report.recipients {
                    let key = (ours(r), r.action.clone(), r.status.clone());
                    if seen.len() >= cap || !seen.insert(key) {
                        continue;
                    }
                    shared.record_or_log(
                        Event::new(&job, "dsn_received")
                            .with("recipient", ours(r))
                            .with("original_recipient", r.original_recipient.clone())
                            .with("final_recipient", r.final_recipient.clone())
                            .with("action", r.action.clone())
                            .with("status", r.status.clone())
                            .with("diagnostic_code", r.diagnostic_code.clone())
                            .with("reporting_mta", report.reporting_mta.clone())
                            .with(
                                "kind",
                                serde_json::to_value(report.kind).unwrap_or_default(),
                            )
                            .with("matched_by", via.clone())
                            .with("report", id.to_string()),
                    );
                }
            }
            IngestOutcome::Correlated(job)
        }
        Correlation::Orphan { reason } => {
            shared.record_or_log(
                Event::new(id, "report_orphaned")
                    .with("reason", reason)
                    .with("report_key", key),
            );
            IngestOutcome::Orphan
        }
        Correlation::NotAReport { reason } => {
            shared.record_or_log(
                Event::new(id, "report_ignored")
                    .with("reason", reason)
                    .with("report_key", key),
            );
            if report.kind == ReportKind::Unparseable {
                IngestOutcome::Unparseable
            } else {
                IngestOutcome::NotAReport
            }
        }
    };
    shared.record_or_log(Event::new(id, "report_processed"));
    outcome
}

#[cfg(test)]
mod tests {
    use super::check_crypt;

    #[test]
    fn sha_crypt_hashes_made_by_openssl_are_checked() {
        // `openssl passwd -6 -salt saltsalt secret` and `openssl passwd -5 -salt saltsalt secret`.
        let sha512 = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        let sha256 = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
        for hash in [sha512, sha256] {
            assert!(check_crypt("secret", hash));
            assert!(!check_crypt("Secret", hash));
            assert!(!check_crypt("", hash));
        }
        assert!(!check_crypt("secret", "$6$saltsalt$broken"));
        assert!(!check_crypt("secret", "secret"));
    }
}
