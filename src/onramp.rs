//! Onramp (fax → mail): received pages → one TIFF-F file (RFC 3949) → an RFC 3965 message
//! (`image/tiff; application=faxbw`, outer `multipart/fax-message` or `multipart/mixed`)
//! → the outgoing queue, with `RET=HDRS ENVID=<job id>` (RFC 3461 §4.3, §4.4) and per
//! recipient `NOTIFY=… ORCPT=rfc822;…` (§4.1, §4.2), and `Disposition-Notification-To`
//! (RFC 8098 §2.1) when the dial peer asks for an MDN.

use crate::config::{self, Config, MessageType, OnrampPeer};
use crate::ids;
use crate::journal::Event;
use crate::smtp::{Notify, Ret};
use crate::spool::{OutItem, OutKind, OutRecipient, Spool};
use crate::tiff_f::{self, ImageError, Limits, WriteOptions};
use chrono::Utc;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;
use thiserror::Error;

/// One received fax as the fax modem host hands it over.
#[derive(Debug, Clone)]
pub struct ReceivedFax {
    /// Called number (DNIS), digits with an optional leading `+`.
    pub dnis: String,
    /// Calling number (ANI), digits with an optional leading `+`; may be empty.
    pub ani: String,
    /// Transmitting subscriber identification (T.30 TSI), if the modem reported one.
    pub tsi: Option<String>,
    /// Page files, each a whole file's bytes (multi-page TIFF, PNG, PBM, JPEG, …).
    pub pages: Vec<Vec<u8>>,
}

/// Why a fax could not become an onramp job.
#[derive(Debug, Error)]
pub enum OnrampError {
    #[error("bad {0} {1:?}: expected 1 to 32 digits (0-9, *, #), optionally after a +")]
    BadNumber(&'static str, String),
    #[error("no onramp dial peer matches DNIS {0}")]
    NoDialPeer(String),
    #[error("no pages given")]
    NoPages,
    /// Page file `index` (1-based, in the order given) could not be read.
    #[error("page file {index}: {source}")]
    Page { index: usize, source: ImageError },
    #[error("fax image: {0}")]
    Image(#[from] ImageError),
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
}

/// Check and tidy what the fax modem host reported: DNIS digits (a leading `+` dropped, as
/// onramp patterns match the digits), ANI digits or unknown (`anonymous`, `restricted` and
/// other words become an empty ANI), TSI with control characters replaced (T.30 §5.3.6.2.4:
/// at most 20 printable characters; kept up to 64).
fn clean(fax: &ReceivedFax) -> Result<ReceivedFax, OnrampError> {
    let dnis = fax.dnis.trim();
    if !is_number(dnis, false) {
        return Err(OnrampError::BadNumber("DNIS", fax.dnis.clone()));
    }
    let ani = fax.ani.trim();
    if ani.chars().any(char::is_control) || ani.len() > 64 {
        return Err(OnrampError::BadNumber("ANI", fax.ani.clone()));
    }
    let ani = if is_number(ani, true) {
        ani.to_string()
    } else {
        String::new()
    };
    let tsi = fax.tsi.as_ref().map(|t| {
        let t: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(64)
            .collect();
        t.trim().to_string()
    });
    if fax.pages.is_empty() {
        return Err(OnrampError::NoPages);
    }
    Ok(ReceivedFax {
        dnis: dnis.trim_start_matches('+').to_string(),
        ani,
        tsi: tsi.filter(|t| !t.is_empty()),
        pages: Vec::new(),
    })
}

fn is_number(s: &str, allow_empty: bool) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (allow_empty && s.is_empty())
        || (!digits.is_empty()
            && digits.len() <= 32
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
}

/// Turn a received fax into a queued onramp job; returns the job id. The job is durable
/// (spooled and journalled as `onramp_submitted`) when this returns.
///
/// `record` appends the `onramp_submitted` event to the journal (fsynced) after the job is
/// spooled.
pub fn submit(
    cfg: &Config,
    spool: &Spool,
    record: &dyn Fn(Event) -> std::io::Result<()>,
    fax: &ReceivedFax,
) -> Result<String, OnrampError> {
    let raw_ani = fax.ani.clone();
    let input_pages = &fax.pages;
    let fax = &clean(fax)?;
    let peer = cfg
        .onramp_peer(&fax.dnis)
        .ok_or_else(|| OnrampError::NoDialPeer(fax.dnis.clone()))?;
    let opts = WriteOptions {
        encoding: peer.encoding,
        resolution: peer.resolution,
        bilevel: peer.bilevel,
        ..WriteOptions::default()
    };
    let limits = Limits::default();
    // Each page is compressed as soon as it is normalised: one decoded page in memory at a time.
    let mut pages = tiff_f::TiffFWriter::new(&opts);
    for (i, input) in input_pages.iter().enumerate() {
        let page_err = |source| OnrampError::Page {
            index: i + 1,
            source,
        };
        for page in tiff_f::read_pages(input, &limits, opts.bilevel).map_err(page_err)? {
            if pages.len() >= limits.max_pages {
                return Err(
                    ImageError::Limit(format!("more than {} pages", limits.max_pages)).into(),
                );
            }
            pages
                .push(&tiff_f::try_normalize(&page, opts.resolution, &limits).map_err(page_err)?)?;
        }
    }
    let tiff = pages.finish()?;
    let job = ids::new_job_id("ON");
    let message_id = ids::message_id(&job, &cfg.hostname);
    let dnis_digits = fax.dnis.trim_start_matches('+');
    let ani_digits = fax.ani.trim_start_matches('+');
    let tsi = fax.tsi.clone().unwrap_or_default();
    let recipient = config::expand_template(&peer.mailto, dnis_digits, ani_digits, &tsi);
    let message = build_message(
        cfg,
        peer,
        fax,
        &recipient,
        &message_id,
        &tiff.bytes,
        tiff.pages,
    )?;
    let notify = Notify {
        success: peer.dsn.success,
        failure: peer.dsn.failure,
        delay: peer.dsn.delay,
    };
    let item = OutItem {
        id: job.clone(),
        job: job.clone(),
        kind: OutKind::Onramp,
        mail_from: cfg.mta_send.mail_from.clone(),
        ret: Some(Ret::Hdrs),
        envid: Some(job.clone()),
        rcpts: vec![OutRecipient {
            address: recipient.clone(),
            notify: Some(notify),
            orcpt: Some(format!("rfc822;{recipient}")),
        }],
        message_id: message_id.clone(),
        created: Utc::now(),
        attempts: 0,
        next_attempt: Utc::now(),
    };
    spool.put_out(&item, &message)?;
    record(
        Event::new(&job, "onramp_submitted")
            .with("dnis", fax.dnis.clone())
            .with("ani", fax.ani.clone())
            .with("ani_raw", (raw_ani != fax.ani).then_some(raw_ani))
            .with("tsi", fax.tsi.clone())
            .with("peer", peer.name.clone())
            .with("notify", crate::mailer::notify_value(&notify))
            .with("pages", tiff.pages)
            .with("recipient", recipient)
            .with("message_id", message_id)
            .with("bytes", message.len()),
    )?;
    Ok(job)
}

/// Build the RFC 3965 message: a text part describing the fax and the TIFF-F part,
/// `image/tiff; application=faxbw` in base64, under `multipart/fax-message` or
/// `multipart/mixed`. Subject follows the Cisco form `Incoming Fax[DNIS=…][ANI=…]`.
pub fn build_message(
    cfg: &Config,
    peer: &OnrampPeer,
    fax: &ReceivedFax,
    recipient: &str,
    message_id: &str,
    tiff: &[u8],
    pages: usize,
) -> std::io::Result<Vec<u8>> {
    let dnis = fax.dnis.trim_start_matches('+');
    let ani = fax.ani.trim_start_matches('+');
    let tsi = fax.tsi.clone().unwrap_or_default();
    let subject = config::expand_template(&cfg.mta_send.subject, dnis, ani, &tsi);
    let from_addr = if ani.is_empty() {
        cfg.mta_send.mail_from.clone()
    } else {
        format!("FAX=+{ani}@{}", cfg.domain)
    };
    let from_name = if tsi.trim().is_empty() {
        fax.ani.clone()
    } else {
        tsi.trim().to_string()
    };
    let text = format!(
        "Fax received by {host}\r\nFrom: {ani} {tsi}\r\nTo: {dnis}\r\nPages: {pages}\r\nDial peer: {peer}\r\n",
        host = cfg.hostname,
        ani = if fax.ani.is_empty() { "(unknown)" } else { &fax.ani },
        tsi = if tsi.is_empty() { String::new() } else { format!("(TSI {tsi})") },
        peer = peer.name,
    );
    let outer = match peer.message_type {
        MessageType::FaxMessage => "multipart/fax-message",
        MessageType::Mixed => "multipart/mixed",
    };
    // mail-builder picks base64 for binary content (RFC 2045 §6.8); naming the encoding here
    // would make it write the bytes raw.
    let image = MimePart::new(
        ContentType::new("image/tiff").attribute("application", "faxbw"),
        BodyPart::Binary(tiff.into()),
    )
    .attachment("fax.tif");
    let body = MimePart::new(
        ContentType::new(outer),
        BodyPart::Multipart(vec![
            MimePart::new("text/plain", BodyPart::Text(text.into())),
            image,
        ]),
    );
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(Some(from_name), from_addr))
        .to(Address::new_address(None::<&str>, recipient.to_string()))
        .subject(subject)
        .message_id(MessageId::new(
            message_id
                .trim_matches(|c| c == '<' || c == '>')
                .to_string(),
        ))
        .header(
            "X-Mailer",
            Raw::new(concat!("t37gw ", env!("CARGO_PKG_VERSION"))),
        )
        .body(body);
    if peer.mdn {
        builder = builder.header(
            "Disposition-Notification-To",
            Address::new_address(None::<&str>, cfg.mta_send.return_receipt_to.clone()),
        );
    }
    builder.write_to_vec()
}

/// A job file dropped into the incoming directory by a fax-receive hook (YAML or JSON):
/// `dnis`, `ani`, optional `tsi`, and `pages`: file names relative to the job file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingJob {
    pub dnis: String,
    #[serde(default)]
    pub ani: String,
    pub tsi: Option<String>,
    pub pages: Vec<String>,
}

/// How long a job file whose pages are missing is given for them to arrive.
pub const INCOMING_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

fn young(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < INCOMING_GRACE)
}

/// Pick up `*.job` files in the incoming directory (write the pages first, then the job file,
/// ideally under another name renamed to `NAME.job`; a job whose pages are still missing is
/// retried for [`INCOMING_GRACE`]): each becomes an onramp job and is removed
/// with its pages; a bad one is moved to `incoming/failed/` with a `.error` file beside it and
/// journalled as `onramp_failed` (with `file` and `reason`) under a new onramp job id.
pub fn scan_incoming(shared: &crate::gateway::Shared) {
    let dir = &shared.config.incoming;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut jobs: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "job"))
        .collect();
    jobs.sort();
    for path in jobs {
        // Err((missing page, reason)): only a page file that cannot be read yet is waited for.
        let result = (|| -> Result<(String, Vec<std::path::PathBuf>), (bool, String)> {
            let text =
                std::fs::read_to_string(&path).map_err(|e| (false, format!("cannot read: {e}")))?;
            let job: IncomingJob =
                serde_saphyr::from_str(&text).map_err(|e| (false, format!("bad job file: {e}")))?;
            let mut files = Vec::new();
            let mut pages = Vec::new();
            for p in &job.pages {
                if p.contains("..") || p.starts_with('/') {
                    return Err((
                        false,
                        format!("page path {p:?} must be a plain name beside the job file"),
                    ));
                }
                let f = dir.join(p);
                pages.push(std::fs::read(&f).map_err(|e| (true, format!("page {p}: {e}")))?);
                files.push(f);
            }
            let fax = ReceivedFax {
                dnis: job.dnis,
                ani: job.ani,
                tsi: job.tsi,
                pages,
            };
            let id = shared
                .submit_fax(&fax)
                .map_err(|e| (false, e.to_string()))?;
            Ok((id, files))
        })();
        match result {
            Ok((id, files)) => {
                tracing::info!(job = %id, file = %path.display(), "incoming fax picked up");
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
                let _ = std::fs::remove_file(&path);
            }
            Err((true, why)) if young(&path) => {
                // The hook may still be writing the pages: try again on the next scan.
                tracing::debug!(file = %path.display(), "incoming fax not complete yet: {why}");
            }
            Err((_, why)) => {
                tracing::warn!(file = %path.display(), "incoming fax refused: {why}");
                // Journalled as a failed onramp job, so `t37gw jobs --state failed` shows it.
                shared.record_or_log(
                    crate::journal::Event::new(&crate::ids::new_job_id("ON"), "onramp_failed")
                        .with(
                            "file",
                            path.file_name().map(|n| n.to_string_lossy().into_owned()),
                        )
                        .with("reason", why.clone()),
                );
                let failed = dir.join("failed");
                let _ = std::fs::create_dir_all(&failed);
                if let Some(name) = path.file_name() {
                    let _ = std::fs::rename(&path, failed.join(name));
                    let _ = std::fs::write(
                        failed.join(format!("{}.error", name.to_string_lossy())),
                        why,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn message_carries_the_tiff_in_base64_and_the_rfc_3965_headers() {
        let cfg = Config::parse(config::SHIPPED_CONFIG, "gateway.yaml", Path::new("")).unwrap();
        let peer = cfg.onramp_peer("12025550100").unwrap();
        let fax = ReceivedFax {
            dnis: "12025550100".into(),
            ani: "+4940123".into(),
            tsi: None,
            pages: vec![],
        };
        let tiff: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let msg = build_message(
            &cfg,
            peer,
            &fax,
            "FAX=+12025550100@gw.example.test",
            "<J.1@gw.example.test>",
            &tiff,
            1,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&msg);
        assert!(
            text.contains("Content-Type: multipart/fax-message"),
            "{text}"
        );
        assert!(
            text.contains("Subject: Incoming Fax[DNIS=12025550100][ANI=4940123]"),
            "{text}"
        );
        assert!(
            text.contains("Disposition-Notification-To: <fax-gw@gw.example.test>"),
            "{text}"
        );
        assert!(text.contains("Content-Transfer-Encoding: base64"), "{text}");
        assert!(text.contains("Message-ID: <J.1@gw.example.test>"), "{text}");
        let parsed = mail_parser::MessageParser::new().parse(&msg).unwrap();
        let part = parsed.attachments().next().unwrap();
        use mail_parser::MimeHeaders;
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("image", Some("tiff")));
        assert_eq!(ct.attribute("application"), Some("faxbw"));
        assert!(
            part.contents() == &tiff[..],
            "attachment bytes differ after a parse"
        );
    }
}
