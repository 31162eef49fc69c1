//! Durable storage of accepted work: offramp messages (`offramp/`) and the outgoing mail
//! queue (`outq/`: onramp mail and DSNs), each item a message file `ID.eml` plus its envelope
//! `ID.json`. Every write is atomic and durable: temp file in the same directory, fsync,
//! rename, fsync of the directory — the pattern of chasquid's safeio. The envelope is written
//! last and is the commit marker: an `ID.eml` without `ID.json` is an unfinished write and is
//! ignored (and cleaned up) on restart.
//!
//! [`Spool::put_offramp`] is the one seam the SMTP listener's `250` waits on.

use crate::smtp::{Envelope, Notify, Ret};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Write `bytes` to `dir/name` atomically and durably (file and directory fsynced).
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", fastrand::u64(..)));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// One recipient of an outgoing message with its RFC 3461 parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecipient {
    pub address: String,
    /// NOTIFY to request; `None` = do not send the parameter.
    pub notify: Option<Notify>,
    /// ORCPT as `rfc822;address` (raw; the SMTP client xtext-encodes it).
    pub orcpt: Option<String>,
}

/// What an outgoing queue item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutKind {
    /// An onramp fax mail (journal events `mail_sent` / `mail_deferred` / `mail_failed`).
    Onramp,
    /// A DSN the offramp sends (`dsn_sent`, …), from `<>`.
    Dsn,
}

/// An outgoing mail queue item's envelope and retry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutItem {
    /// Queue id (file name stem).
    pub id: String,
    /// Job whose journal gets the events.
    pub job: String,
    pub kind: OutKind,
    /// Reverse-path; empty for `<>`.
    pub mail_from: String,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// Recipients still to be delivered.
    pub rcpts: Vec<OutRecipient>,
    pub message_id: String,
    pub created: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
}

/// The spool root with its `offramp/`, `outq/` subdirectories.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Open (create) a spool under `root`.
    pub fn open(root: &Path) -> io::Result<Spool> {
        for sub in ["offramp", "outq"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// Remove what a crash left half-written: temp files, and offramp messages without their
    /// envelope (those never got a `250`). Called by `serve` at start, before the listener runs.
    /// In the outgoing queue (which `t37gw onramp submit` may be writing right now) only
    /// leftovers older than an hour are removed.
    pub fn clean_unfinished(&self) {
        let hour = std::time::Duration::from_secs(3600);
        for (sub, min_age) in [("offramp", std::time::Duration::ZERO), ("outq", hour)] {
            let dir = self.dir(sub);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                let orphan_eml = name.strip_suffix(".eml").is_some_and(|id| {
                    !id.starts_with('.') && !dir.join(format!("{id}.json")).exists()
                });
                if old && ((name.starts_with('.') && name.ends_with(".tmp")) || orphan_eml) {
                    tracing::warn!(file = %path.display(), "removing an unfinished spool write left by a crash");
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Store an accepted offramp message and its envelope durably (the `250` seam).
    pub fn put_offramp(&self, id: &str, envelope: &Envelope, message: &[u8]) -> io::Result<()> {
        let dir = self.dir("offramp");
        write_durable(&dir, &format!("{id}.eml"), message)?;
        write_durable(
            &dir,
            &format!("{id}.json"),
            &serde_json::to_vec_pretty(envelope)?,
        )
    }

    /// Committed offramp ids, oldest first (by name: ids start with a timestamp).
    pub fn list_offramp(&self) -> io::Result<Vec<String>> {
        list_ids(&self.dir("offramp"))
    }

    /// Load one offramp message.
    pub fn load_offramp(&self, id: &str) -> io::Result<(Envelope, Vec<u8>)> {
        let dir = self.dir("offramp");
        let env: Envelope = serde_json::from_slice(&fs::read(dir.join(format!("{id}.json")))?)?;
        Ok((env, fs::read(dir.join(format!("{id}.eml")))?))
    }

    /// Remove a finished offramp message (envelope first, so a crash leaves no committed half).
    pub fn remove_offramp(&self, id: &str) -> io::Result<()> {
        remove_pair(&self.dir("offramp"), id)
    }

    /// Queue an outgoing message durably.
    pub fn put_out(&self, item: &OutItem, message: &[u8]) -> io::Result<()> {
        let dir = self.dir("outq");
        write_durable(&dir, &format!("{}.eml", item.id), message)?;
        self.update_out(item)
    }

    /// Rewrite an outgoing item's envelope (retry state, remaining recipients).
    pub fn update_out(&self, item: &OutItem) -> io::Result<()> {
        write_durable(
            &self.dir("outq"),
            &format!("{}.json", item.id),
            &serde_json::to_vec_pretty(item)?,
        )
    }

    /// Committed outgoing ids.
    pub fn list_out(&self) -> io::Result<Vec<String>> {
        list_ids(&self.dir("outq"))
    }

    /// Load an outgoing item and its message.
    pub fn load_out(&self, id: &str) -> io::Result<(OutItem, Vec<u8>)> {
        let dir = self.dir("outq");
        let item: OutItem = serde_json::from_slice(&fs::read(dir.join(format!("{id}.json")))?)?;
        Ok((item, fs::read(dir.join(format!("{id}.eml")))?))
    }

    /// Remove a finished outgoing item.
    pub fn remove_out(&self, id: &str) -> io::Result<()> {
        remove_pair(&self.dir("outq"), id)
    }
}

fn list_ids(dir: &Path) -> io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".json") {
            if !id.starts_with('.') && dir.join(format!("{id}.eml")).exists() {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

fn remove_pair(dir: &Path, id: &str) -> io::Result<()> {
    for ext in ["json", "eml"] {
        match fs::remove_file(dir.join(format!("{id}.{ext}"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_message_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let env = Envelope {
            mail_from: "a@b".into(),
            ..Default::default()
        };
        spool
            .put_offramp("OFF-1", &env, b"Subject: x\r\n\r\nhi\r\n")
            .unwrap();
        fs::write(dir.path().join("offramp/OFF-2.eml"), b"half").unwrap();
        assert_eq!(spool.list_offramp().unwrap(), vec!["OFF-1"]);
        let (e, m) = spool.load_offramp("OFF-1").unwrap();
        assert_eq!(e.mail_from, "a@b");
        assert_eq!(m, b"Subject: x\r\n\r\nhi\r\n");
        spool.remove_offramp("OFF-1").unwrap();
        assert!(spool.list_offramp().unwrap().is_empty());
    }
}
