//! Durable storage of accepted work: offramp messages (`offramp/`) and the outgoing mail
//! queue (`outq/`: onramp mail and DSNs). Every write is atomic and durable: temp file in the
//! same directory, fsync, rename, fsync of the directory — the pattern of chasquid's safeio.
//!
//! An offramp message is one record in a lane file (`offramp/lane-RANDOM.log`, see
//! [`lanes`]): a header with its id, length and CRC-32, then its envelope (RET, ENVID,
//! NOTIFY, ORCPT, …) as one line of compact JSON, then the message octets. Committing a
//! message is writing its header and one `fdatasync` of its lane, group-committed across
//! sessions: no file is created, renamed or unlinked per message.
//! (Spools written by earlier versions are still read: `ID.msg` files with the same envelope
//! line, and `ID.eml` plus `ID.json` pairs; an `ID.eml` without its `ID.json` is an unfinished
//! write of that format, removed on restart.)
//!
//! An outgoing queue item is a message file `ID.eml` plus its envelope `ID.json`, renamed into
//! place last as the commit marker (the envelope is rewritten after each attempt).
//!
//! The SMTP listener streams an offramp message into a lane it holds alone as it arrives
//! ([`Spool::create_offramp`] writes the envelope line, the offramp its `Received:` header),
//! and [`Spool::commit_offramp`] makes it durable: the `250` waits on it. The commits of
//! concurrent sessions are grouped: their lanes are fsynced together (and the directory once,
//! when a batch holds a lane file created for it).

pub mod lanes;

use crate::smtp::SpoolFile;
use crate::smtp::{Envelope, Notify, Ret};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the group committer waits for more commits after the first one of a batch, and
/// only while other sessions are still writing a message: 1 ms (an idle listener commits at
/// once).
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(1);
/// Most commits in one batch (one directory fsync).
pub const GROUP_COMMIT_MAX: usize = 256;
/// Threads that fsync the files of one batch in parallel (the filesystem journal then
/// commits them together).
const FSYNC_THREADS: usize = 4;

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
    /// The offramp's group committer, started by the first commit.
    committer: Arc<OnceLock<Committer>>,
    /// The offramp's lane files and the index of their records.
    lanes: Arc<lanes::Lanes>,
    /// Lanes held by messages being received, by id.
    inflight: Arc<Mutex<HashMap<String, lanes::Slot>>>,
}

/// One pending commit: fsync the lane file (and the directory when the lane file is new),
/// answer.
struct Commit {
    file: File,
    /// The record: its lane, id, body length and CRC; indexed (or the lane cut back) by the
    /// committer before it answers, so a session that goes away meanwhile loses nothing.
    lanes: Arc<lanes::Lanes>,
    slot: lanes::Slot,
    id: String,
    body_len: u64,
    crc: u32,
    done: tokio::sync::oneshot::Sender<io::Result<()>>,
}

impl Commit {
    fn answer(self, result: io::Result<()>) {
        match &result {
            Ok(()) => self.lanes.committed(
                &self.slot.lane,
                &self.id,
                self.slot.start,
                self.body_len,
                self.crc,
            ),
            Err(_) => self.lanes.abort(&self.slot.lane, self.slot.start),
        }
        let _ = self.done.send(result);
    }
}

/// The group committer: a thread that takes pending commits in batches (what queued while
/// the previous batch was being synced, plus up to [`GROUP_COMMIT_WINDOW`] while other
/// sessions are still writing), fsyncs their files, renames them and fsyncs the directory
/// once for the batch; each commit is answered only after that directory fsync.
struct Committer {
    tx: Mutex<mpsc::Sender<Commit>>,
    /// Messages being written (open [`SpoolFile`]s not yet committed or dropped).
    writers: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("writers", &self.writers.load(Ordering::Relaxed))
            .finish()
    }
}

impl Committer {
    fn start(dir: PathBuf) -> io::Result<Committer> {
        let (tx, rx) = mpsc::channel::<Commit>();
        let writers = Arc::new(AtomicUsize::new(0));
        let w = writers.clone();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || commit_loop(&dir, &rx, &w))?;
        Ok(Committer {
            tx: Mutex::new(tx),
            writers,
        })
    }
}

fn commit_loop(dir: &Path, rx: &mpsc::Receiver<Commit>, writers: &AtomicUsize) {
    while let Ok(first) = rx.recv() {
        let started = Instant::now();
        let mut batch = vec![first];
        'collect: while batch.len() < GROUP_COMMIT_MAX {
            while let Ok(c) = rx.try_recv() {
                batch.push(c);
                if batch.len() >= GROUP_COMMIT_MAX {
                    break 'collect;
                }
            }
            // Wait only while someone is still writing a message that may join the batch.
            let left = GROUP_COMMIT_WINDOW.saturating_sub(started.elapsed());
            if writers.load(Ordering::SeqCst) == 0 || left.is_zero() {
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_micros(250))) {
                Ok(c) => batch.push(c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        commit_batch(dir, batch);
    }
}

/// An `io::Error` for every waiter of a batch (`io::Error` is not `Clone`).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), "spool commit failed"),
    }
}

/// fsync each file in `files` (several threads: the filesystem journal commits concurrent
/// syncs together); the results in order.
fn sync_all_of(files: &[&File]) -> Vec<io::Result<()>> {
    if files.len() <= 1 {
        return files.iter().map(|f| f.sync_data()).collect();
    }
    let per = files.len().div_ceil(FSYNC_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|group| {
                let handle =
                    scope.spawn(move || group.iter().map(|f| f.sync_data()).collect::<Vec<_>>());
                (group.len(), handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Err(io::Error::other("fsync thread failed")))
                        .collect()
                })
            })
            .collect()
    })
}

fn commit_batch(dir: &Path, batch: Vec<Commit>) {
    // Every lane of the batch fsynced together, then one directory fsync when a lane file
    // was created for the batch (its name must be durable too).
    let files: Vec<&File> = batch.iter().map(|c| &c.file).collect();
    let synced = sync_all_of(&files);
    let mut ok = Vec::new();
    for (c, result) in batch.into_iter().zip(synced) {
        match result {
            Ok(()) => ok.push(c),
            Err(e) => c.answer(Err(e)),
        }
    }
    let dir_synced = if ok.iter().any(|c| c.slot.new_file) {
        File::open(dir).and_then(|d| d.sync_all())
    } else {
        Ok(())
    };
    for c in ok {
        let result = match (&dir_synced, c.slot.new_file) {
            (Err(e), true) => Err(copy_error(e)),
            _ => Ok(()),
        };
        c.answer(result);
    }
}

impl Spool {
    /// Open (create) a spool under `root`.
    pub fn open(root: &Path) -> io::Result<Spool> {
        for sub in ["offramp", "outq", "faxwork"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
            committer: Arc::new(OnceLock::new()),
            lanes: Arc::new(lanes::Lanes::new(&root.join("offramp"))),
            inflight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Read the offramp's lane files: index every committed message whose id `done` does not
    /// know (the journal's `offramp_completed`), cut off what a crash left half-written.
    /// Called by `serve` at start, before the listener runs. Returns the messages found.
    ///
    /// Errors: a lane file cannot be read or truncated.
    pub fn recover_offramp(&self, done: &dyn Fn(&str) -> bool) -> io::Result<usize> {
        self.lanes.recover(done)
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// Where a `command` fax backend's TIFF-F file is written for the command to read
    /// (`$file$`): `faxwork/` in the spool. The file is removed when the command ends; what a
    /// gateway killed while a command ran leaves there is removed by
    /// [`Spool::clean_unfinished`] at the next start.
    pub fn fax_work_dir(&self) -> PathBuf {
        self.dir("faxwork")
    }

    /// Remove what a crash left half-written: temp files, offramp messages without their
    /// envelope (those never got a `250`), and fax files of `command` backends
    /// ([`Spool::fax_work_dir`]). Called by `serve` at start, before the listener runs.
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
        // No fax command runs before the listener starts: every file here is a leftover of a
        // command the gateway was killed during (its fax is handed over again, from the spool).
        if let Ok(entries) = fs::read_dir(self.fax_work_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    tracing::warn!(file = %path.display(), "removing a fax file left by a fax command the gateway was stopped during");
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Store an accepted offramp message with its envelope durably in one call (file and
    /// directory fsynced; no group commit). The listener streams instead
    /// ([`Spool::create_offramp`], [`Spool::commit_offramp`]).
    pub fn put_offramp(&self, id: &str, envelope: &Envelope, message: &[u8]) -> io::Result<()> {
        let mut body = envelope_line(envelope)?;
        body.extend_from_slice(message);
        let crc = crc32fast::hash(&body);
        let head = lanes::header(id, body.len() as u64, crc)?;
        let slot = self.lanes.take()?;
        let result = (|| {
            let f = slot.lane.file();
            f.write_all_at(&head, slot.start)?;
            f.write_all_at(&body, slot.start + lanes::HEADER)?;
            f.sync_data()?;
            if slot.new_file {
                File::open(self.dir("offramp"))?.sync_all()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.lanes
                    .committed(&slot.lane, id, slot.start, body.len() as u64, crc);
                Ok(())
            }
            Err(e) => {
                self.lanes.abort(&slot.lane, slot.start);
                Err(e)
            }
        }
    }

    /// Start the spool file of an incoming offramp message `id` with its `envelope`: the temp
    /// file `offramp/.ID.msg.RANDOM.tmp`, the envelope line written; the message octets
    /// follow with [`SpoolFile::write`]. Nothing is visible to the worker before
    /// [`Spool::commit_offramp`]; dropped, the temp file is removed.
    ///
    /// Errors: the temp file cannot be created or written (ENOSPC, EACCES, …).
    pub fn create_offramp(&self, id: &str, envelope: &Envelope) -> io::Result<SpoolFile> {
        let line = envelope_line(envelope)?;
        lanes::header(id, 0, 0)?;
        let writers = self.committer()?.writers.clone();
        let slot = self.lanes.take()?;
        let file = match slot.lane.file().try_clone() {
            Ok(f) => f,
            Err(e) => {
                self.lanes.abort(&slot.lane, slot.start);
                return Err(e);
            }
        };
        let (lanes, inflight, lane, key) = (
            self.lanes.clone(),
            self.inflight.clone(),
            slot.lane.clone(),
            id.to_string(),
        );
        let start = slot.start;
        lanes::lock(&self.inflight).insert(id.to_string(), slot);
        let mut file = SpoolFile::region(
            file,
            start,
            lanes::HEADER,
            &self.dir("offramp"),
            &format!("{id}.msg"),
            &line,
            Box::new(move || {
                lanes::lock(&inflight).remove(&key);
                lanes.abort(&lane, start);
            }),
        )?;
        file.track(writers);
        Ok(file)
    }

    fn committer(&self) -> io::Result<&Committer> {
        if let Some(c) = self.committer.get() {
            return Ok(c);
        }
        let started = Committer::start(self.dir("offramp"))?;
        // A racing first commit may have won; then `started`'s thread ends with its channel.
        Ok(self.committer.get_or_init(|| started))
    }

    /// Make a message written with [`Spool::create_offramp`] durable: its octets written out,
    /// its record header written, its lane fsynced (grouped with the commits of concurrent
    /// sessions, [`GROUP_COMMIT_WINDOW`]; with a directory fsync when the lane file is new).
    /// Resolves only after that; `Ok` is the listener's licence to send `250` (RFC 5321
    /// §4.1.1.4, INTERFACE.md "Delivery semantics").
    ///
    /// Errors: any write or fsync error (ENOSPC → `452 4.3.1`, others `451 4.3.0`); the lane
    /// is cut back and nothing is committed.
    pub async fn commit_offramp(&self, mut file: SpoolFile) -> io::Result<()> {
        file.finish()?;
        let id = file
            .name()
            .strip_suffix(".msg")
            .unwrap_or_default()
            .to_string();
        let (body_len, crc) = (file.body_len(), file.crc32());
        let head = lanes::header(&id, body_len, crc)?;
        file.file().write_all_at(&head, file.start())?;
        let committer = self.committer()?;
        let Some(slot) = lanes::lock(&self.inflight).remove(&id) else {
            return Err(io::Error::other("spool file not from this spool"));
        };
        // On failure `into_commit` drops the file as uncommitted: its abort hook cuts the lane.
        let (file, _, _) = file.into_commit()?;
        let lanes = self.lanes.clone();
        let (done, rx) = tokio::sync::oneshot::channel();
        let sent = committer
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Commit {
                file,
                lanes,
                slot,
                id,
                body_len,
                crc,
                done,
            });
        if let Err(mpsc::SendError(c)) = sent {
            c.lanes.abort(&c.slot.lane, c.slot.start);
            return Err(io::Error::other("spool committer stopped"));
        }
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("spool committer stopped")))
    }

    /// Committed offramp ids, oldest first (by name: ids start with a timestamp): every record
    /// of the lanes, and every `ID.msg` and `ID.json` + `ID.eml` pair of the earlier formats.
    pub fn list_offramp(&self) -> io::Result<Vec<String>> {
        let dir = self.dir("offramp");
        let mut ids = list_ids(&dir)?;
        ids.extend(self.lanes.ids());
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".msg")) {
                if !id.starts_with('.') {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Load one offramp message: its envelope and the full message octets (with the
    /// `Received:` header the offramp prepended).
    ///
    /// Errors: the files cannot be read; [`io::ErrorKind::InvalidData`] for an envelope line
    /// that is not the spool's JSON.
    pub fn load_offramp(&self, id: &str) -> io::Result<(Envelope, Vec<u8>)> {
        let dir = self.dir("offramp");
        let read = match self.lanes.load(id) {
            Some(body) => body,
            None => fs::read(dir.join(format!("{id}.msg"))),
        };
        match read {
            Ok(mut bytes) => {
                let end = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "spool file without envelope line",
                    )
                })?;
                let env: Envelope = serde_json::from_slice(&bytes[..end])?;
                bytes.drain(..=end);
                Ok((env, bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let env: Envelope =
                    serde_json::from_slice(&fs::read(dir.join(format!("{id}.json")))?)?;
                Ok((env, fs::read(dir.join(format!("{id}.eml")))?))
            }
            Err(e) => Err(e),
        }
    }

    /// Remove a finished offramp message. A lane record is forgotten (its lane is emptied
    /// once nothing in it is pending; after a crash before that, the journal's
    /// `offramp_completed` keeps it from being read again, see [`Spool::recover_offramp`]);
    /// files of the earlier formats are removed (for a pair, the envelope first, so a crash
    /// leaves no committed half).
    pub fn remove_offramp(&self, id: &str) -> io::Result<()> {
        if self.lanes.remove(id) {
            return Ok(());
        }
        let dir = self.dir("offramp");
        match fs::remove_file(dir.join(format!("{id}.msg"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        remove_pair(&dir, id)
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

/// An offramp envelope as the first line of its spool file: compact JSON (which never holds
/// a raw line break) and `\n`.
fn envelope_line(envelope: &Envelope) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(envelope)?;
    line.push(b'\n');
    Ok(line)
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
        fs::write(dir.path().join("offramp/.OFF-3.msg.0123.tmp"), b"{}\nhalf").unwrap();
        assert_eq!(spool.list_offramp().unwrap(), vec!["OFF-1"]);
        let (e, m) = spool.load_offramp("OFF-1").unwrap();
        assert_eq!(e.mail_from, "a@b");
        assert_eq!(m, b"Subject: x\r\n\r\nhi\r\n");
        spool.remove_offramp("OFF-1").unwrap();
        assert!(spool.list_offramp().unwrap().is_empty());
    }

    /// The lane files of `dir/offramp` with their sizes in octets.
    fn lane_sizes(dir: &Path) -> Vec<u64> {
        let mut v: Vec<u64> = fs::read_dir(dir.join("offramp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("lane-"))
            .map(|e| e.metadata().unwrap().len())
            .collect();
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_messages_commit_in_groups_and_drop_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let env = Envelope {
            mail_from: "a@b".into(),
            envid: Some("E1".into()),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (spool, env) = (spool.clone(), env.clone());
            tasks.push(tokio::spawn(async move {
                let mut f = spool.create_offramp(&format!("OFF-{i:02}"), &env).unwrap();
                f.write(b"Received: x\r\n");
                f.write(format!("Subject: {i}\r\n\r\n").as_bytes());
                f.write(&vec![b'x'; 100_000]);
                spool.commit_offramp(f).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let ids = spool.list_offramp().unwrap();
        assert_eq!(ids.len(), 20);
        let (e, m) = spool.load_offramp("OFF-07").unwrap();
        assert_eq!(e.envid.as_deref(), Some("E1"));
        assert!(m.starts_with(b"Received: x\r\nSubject: 7\r\n\r\n"));
        assert_eq!(m.len(), 13 + 14 + 100_000);
        let before = lane_sizes(dir.path());
        assert!(!before.is_empty() && before.len() <= 20, "{before:?}");
        // An abandoned message leaves nothing behind: its lane is cut back.
        let mut f = spool.create_offramp("OFF-99", &env).unwrap();
        f.write(&vec![b'y'; 200_000]);
        f.finish().unwrap();
        drop(f);
        assert_eq!(lane_sizes(dir.path()), before);
        assert_eq!(spool.list_offramp().unwrap().len(), 20);
        assert_eq!(spool.committer().unwrap().writers.load(Ordering::SeqCst), 0);
        // Done messages empty their lanes for reuse; no file is created or removed.
        for id in &ids {
            spool.remove_offramp(id).unwrap();
        }
        assert!(spool.list_offramp().unwrap().is_empty());
        assert!(lane_sizes(dir.path()).iter().all(|&n| n == 0));
        assert_eq!(lane_sizes(dir.path()).len(), before.len());
    }

    /// What a restart finds: committed records come back (except those the journal says are
    /// done), a record torn by a crash mid-write is cut off, and the lane is usable again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_recovers_committed_records_and_cuts_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            for id in ["OFF-1", "OFF-2", "OFF-3"] {
                let mut f = spool.create_offramp(id, &Envelope::default()).unwrap();
                f.write(format!("Subject: {id}\r\n\r\n").as_bytes());
                spool.commit_offramp(f).await.unwrap();
            }
            // Kill -9 in the middle of a fourth message: its octets are there, its header
            // is not.
            let mut f = spool.create_offramp("OFF-4", &Envelope::default()).unwrap();
            f.write(&vec![b'z'; 50_000]);
            f.finish().unwrap();
            std::mem::forget(f);
        }
        let committed: u64 = lane_sizes(dir.path()).iter().sum();
        assert!(committed > 50_000);
        let spool = Spool::open(dir.path()).unwrap();
        let found = spool.recover_offramp(&|id| id == "OFF-1").unwrap();
        assert_eq!(
            found, 2,
            "OFF-2 and OFF-3; OFF-1 is done, OFF-4 never committed"
        );
        assert_eq!(spool.list_offramp().unwrap(), vec!["OFF-2", "OFF-3"]);
        assert!(lane_sizes(dir.path()).iter().sum::<u64>() < committed - 50_000);
        let (_, m) = spool.load_offramp("OFF-3").unwrap();
        assert_eq!(m, b"Subject: OFF-3\r\n\r\n");
        // A corrupted record ends the lane's valid part.
        let lane = fs::read_dir(dir.path().join("offramp"))
            .unwrap()
            .flatten()
            .find(|e| e.metadata().unwrap().len() > 0)
            .unwrap()
            .path();
        let mut bytes = fs::read(&lane).unwrap();
        let at = bytes.windows(5).position(|w| w == b"OFF-3").unwrap();
        let body = bytes[at..]
            .windows(7)
            .position(|w| w == b"Subject")
            .unwrap();
        bytes[at + body] ^= 1;
        fs::write(&lane, &bytes).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.recover_offramp(&|_| false).unwrap(), 2);
        assert_eq!(spool.list_offramp().unwrap(), vec!["OFF-1", "OFF-2"]);
        // New messages go on after the last valid record.
        let mut f = spool.create_offramp("OFF-5", &Envelope::default()).unwrap();
        f.write(b"Subject: five\r\n\r\n");
        spool.commit_offramp(f).await.unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.recover_offramp(&|_| false).unwrap(), 3);
        let (_, m) = spool.load_offramp("OFF-5").unwrap();
        assert_eq!(m, b"Subject: five\r\n\r\n");
    }

    #[test]
    fn spools_of_the_earlier_two_file_format_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let off = dir.path().join("offramp");
        let old = Envelope {
            mail_from: "old@b".into(),
            ..Default::default()
        };
        fs::write(
            off.join("OFF-0.json"),
            serde_json::to_vec_pretty(&old).unwrap(),
        )
        .unwrap();
        fs::write(off.join("OFF-0.eml"), b"Subject: old\r\n\r\n").unwrap();
        let env = Envelope {
            mail_from: "new@b".into(),
            ..Default::default()
        };
        spool
            .put_offramp("OFF-1", &env, b"Subject: new\r\n\r\n")
            .unwrap();
        assert_eq!(spool.list_offramp().unwrap(), vec!["OFF-0", "OFF-1"]);
        let (e, m) = spool.load_offramp("OFF-0").unwrap();
        assert_eq!(
            (e.mail_from.as_str(), &m[..]),
            ("old@b", &b"Subject: old\r\n\r\n"[..])
        );
        let (e, m) = spool.load_offramp("OFF-1").unwrap();
        assert_eq!(
            (e.mail_from.as_str(), &m[..]),
            ("new@b", &b"Subject: new\r\n\r\n"[..])
        );
        spool.remove_offramp("OFF-0").unwrap();
        spool.remove_offramp("OFF-1").unwrap();
        assert!(spool.list_offramp().unwrap().is_empty());
        // Only the (now empty) lane file is left.
        assert_eq!(fs::read_dir(&off).unwrap().count(), 1);
        assert_eq!(lane_sizes(dir.path()), vec![0]);
    }

    #[test]
    fn leftovers_of_the_earlier_format_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let off = dir.path().join("offramp");
        // What kill -9 left with the earlier formats: a temp file, an envelope-less message.
        fs::write(off.join(".OFF-1.msg.0123456789abcdef.tmp"), b"{}\nx").unwrap();
        fs::write(off.join("OFF-2.eml"), b"Subject: x\r\n\r\n").unwrap();
        assert!(spool.list_offramp().unwrap().is_empty());
        spool.clean_unfinished();
        assert_eq!(fs::read_dir(&off).unwrap().count(), 0);
    }

    #[test]
    fn clean_unfinished_removes_fax_command_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let work = spool.fax_work_dir();
        assert!(work.is_dir());
        fs::write(work.join("FAX-1.tif"), b"II*\0").unwrap();
        spool.clean_unfinished();
        assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
    }
}
