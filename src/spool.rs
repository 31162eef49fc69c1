//! Durable storage of accepted work: offramp messages (`offramp/`) and the outgoing mail
//! queue (`outq/`: onramp mail and DSNs). Every write is atomic and durable: temp file in the
//! same directory, fsync, rename, fsync of the directory — the pattern of chasquid's safeio.
//!
//! An offramp message is one file, `offramp/ID.msg`: its envelope (RET, ENVID, NOTIFY,
//! ORCPT, …) as one line of compact JSON, then `\n`, then the message octets. One file per
//! message means one file fsync per message: the rename into place is the commit.
//! (Spools written by earlier versions, `ID.eml` plus `ID.json`, are still read; an `ID.eml`
//! without its `ID.json` is an unfinished write of that format, removed on restart.)
//!
//! An outgoing queue item is a message file `ID.eml` plus its envelope `ID.json`, renamed into
//! place last as the commit marker (the envelope is rewritten after each attempt).
//!
//! The SMTP listener streams an offramp message into the temp file
//! `offramp/.ID.msg.RANDOM.tmp` as it arrives ([`Spool::create_offramp`] writes the envelope
//! line, the offramp its `Received:` header), and [`Spool::commit_offramp`] makes it durable:
//! the `250` waits on it. The commits of concurrent sessions are grouped: their files are
//! fsynced together and one directory fsync serves the whole batch.

use crate::smtp::SpoolFile;
use crate::smtp::{Envelope, Notify, Ret};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
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
}

/// One pending commit: fsync the file, rename `tmp` to `dest`, fsync the directory, answer.
struct Commit {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    done: tokio::sync::oneshot::Sender<io::Result<()>>,
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
    // Every file of the batch fsynced together, then the renames (the commit), then one
    // directory fsync for all.
    let files: Vec<&File> = batch.iter().map(|c| &c.file).collect();
    let synced = sync_all_of(&files);
    let mut renamed = Vec::new();
    for (c, result) in batch.into_iter().zip(synced) {
        match result.and_then(|()| fs::rename(&c.tmp, &c.dest)) {
            Ok(()) => renamed.push(c),
            Err(e) => {
                let _ = fs::remove_file(&c.tmp);
                let _ = c.done.send(Err(e));
            }
        }
    }
    if renamed.is_empty() {
        return;
    }
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => {
            for c in renamed {
                let _ = c.done.send(Ok(()));
            }
        }
        Err(e) => {
            // Not known to be durable: take them back (the client will retry), best effort.
            for c in renamed {
                let _ = fs::remove_file(&c.dest);
                let _ = c.done.send(Err(copy_error(&e)));
            }
        }
    }
}

impl Spool {
    /// Open (create) a spool under `root`.
    pub fn open(root: &Path) -> io::Result<Spool> {
        for sub in ["offramp", "outq"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
            committer: Arc::new(OnceLock::new()),
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

    /// Store an accepted offramp message with its envelope durably in one call (file and
    /// directory fsynced; no group commit). The listener streams instead
    /// ([`Spool::create_offramp`], [`Spool::commit_offramp`]).
    pub fn put_offramp(&self, id: &str, envelope: &Envelope, message: &[u8]) -> io::Result<()> {
        let mut bytes = envelope_line(envelope)?;
        bytes.extend_from_slice(message);
        write_durable(&self.dir("offramp"), &format!("{id}.msg"), &bytes)
    }

    /// Start the spool file of an incoming offramp message `id` with its `envelope`: the temp
    /// file `offramp/.ID.msg.RANDOM.tmp`, the envelope line written; the message octets
    /// follow with [`SpoolFile::write`]. Nothing is visible to the worker before
    /// [`Spool::commit_offramp`]; dropped, the temp file is removed.
    ///
    /// Errors: the temp file cannot be created or written (ENOSPC, EACCES, …).
    pub fn create_offramp(&self, id: &str, envelope: &Envelope) -> io::Result<SpoolFile> {
        let line = envelope_line(envelope)?;
        let mut file = SpoolFile::create(&self.dir("offramp"), &format!("{id}.msg"), &line)?;
        file.track(self.committer()?.writers.clone());
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
    /// the file fsynced, renamed to `offramp/ID.msg` (the commit), and the directory fsynced
    /// (grouped with the commits of concurrent sessions, [`GROUP_COMMIT_WINDOW`]). Resolves only after the directory fsync; `Ok` is the
    /// listener's licence to send `250` (RFC 5321 §4.1.1.4, INTERFACE.md "Delivery
    /// semantics").
    ///
    /// Errors: any write, fsync or rename error (ENOSPC → `452 4.3.1`, others `451 4.3.0`);
    /// the temp files are removed and nothing is committed.
    pub async fn commit_offramp(&self, mut file: SpoolFile) -> io::Result<()> {
        file.finish()?;
        let committer = self.committer()?;
        let (file, tmp, dest) = file.into_commit()?;
        let (done, rx) = tokio::sync::oneshot::channel();
        let sent = committer
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Commit {
                file,
                tmp,
                dest,
                done,
            });
        if let Err(mpsc::SendError(c)) = sent {
            let _ = fs::remove_file(&c.tmp);
            return Err(io::Error::other("spool committer stopped"));
        }
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("spool committer stopped")))
    }

    /// Committed offramp ids, oldest first (by name: ids start with a timestamp): every
    /// `ID.msg`, and every `ID.json` + `ID.eml` pair of the earlier format.
    pub fn list_offramp(&self) -> io::Result<Vec<String>> {
        let dir = self.dir("offramp");
        let mut ids = list_ids(&dir)?;
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
        match fs::read(dir.join(format!("{id}.msg"))) {
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

    /// Remove a finished offramp message (of either format; for a pair, the envelope first,
    /// so a crash leaves no committed half).
    pub fn remove_offramp(&self, id: &str) -> io::Result<()> {
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
        // An abandoned message leaves nothing behind.
        let f = spool.create_offramp("OFF-99", &env).unwrap();
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(spool.list_offramp().unwrap().len(), 20);
        // One file per message.
        assert_eq!(
            fs::read_dir(dir.path().join("offramp")).unwrap().count(),
            20
        );
        assert_eq!(spool.committer().unwrap().writers.load(Ordering::SeqCst), 0);
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
        assert_eq!(fs::read_dir(&off).unwrap().count(), 0);
    }

    #[test]
    fn a_crash_before_the_rename_leaves_only_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut f = spool.create_offramp("OFF-1", &Envelope::default()).unwrap();
        f.write(b"Subject: x\r\n\r\n");
        f.finish().unwrap();
        // What kill -9 leaves: the temp file, never renamed.
        std::mem::forget(f);
        assert!(spool.list_offramp().unwrap().is_empty());
        spool.clean_unfinished();
        assert_eq!(fs::read_dir(dir.path().join("offramp")).unwrap().count(), 0);
    }
}
