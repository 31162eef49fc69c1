//! Where a message goes while it is received: streamed into a spool temp file ([`SpoolFile`])
//! through a bounded buffer, or kept in memory for backends that do not spool
//! ([`Backend::open_message`] returns `None`).

use super::{Backend, Envelope, Reply};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Octets buffered before a write to the temp file (the whole per-message memory of a
/// streamed message): 32 KiB.
pub const WRITE_BUFFER: usize = 32 * 1024;

/// Called when a [`SpoolFile`] region is dropped uncommitted.
pub type AbortHook = Box<dyn FnOnce() + Send + Sync>;

/// A message being streamed to disk: either a temp file `DIR/.NAME.RANDOM.tmp` on the
/// spool's filesystem, so that committing it is a rename ([`SpoolFile::create`]), or a region
/// of a larger file starting at a given offset ([`SpoolFile::region`], the spool's lane
/// files). Written through a [`WRITE_BUFFER`]-octet buffer with positioned writes; the first
/// write error is kept and reported by [`SpoolFile::finish`] (the session reads the message
/// to its end either way, RFC 5321 §4.1.1.4). A CRC-32 of everything written after the
/// reserved header is kept ([`SpoolFile::crc32`]). Dropped before it is committed, the temp
/// file is removed, or the region's abort hook runs.
pub struct SpoolFile {
    file: File,
    /// The temp file (removed on drop); `None` for a region.
    tmp: Option<PathBuf>,
    dir: PathBuf,
    name: String,
    /// Offset of the region's first octet (0 for a temp file).
    start: u64,
    /// Octets reserved at `start` for a header written at commit.
    reserved: u64,
    /// Offset of the next write.
    pos: u64,
    crc: crc32fast::Hasher,
    on_abort: Option<AbortHook>,
    buf: Vec<u8>,
    /// Octets given to [`SpoolFile::write`] (after the preamble), including any not stored
    /// because of an error.
    len: u64,
    /// Octets of the preamble at the start of the file.
    preamble: u64,
    error: Option<io::Error>,
    /// Still in the temp file (removed on drop).
    pending: bool,
    /// Count of open writers shared with the group committer (it waits for them briefly).
    writers: Option<Arc<AtomicUsize>>,
}

impl std::fmt::Debug for SpoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolFile")
            .field("tmp", &self.tmp)
            .field("name", &self.name)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl SpoolFile {
    /// Create `dir/.NAME.RANDOM.tmp` and write `preamble` (e.g. the envelope line of the
    /// spool format) at its start; the preamble is not part of [`len`](SpoolFile::len).
    /// `name` is the file name the commit renames it to.
    pub fn create(dir: &Path, name: &str, preamble: &[u8]) -> io::Result<SpoolFile> {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", fastrand::u64(..)));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&tmp)?;
        let mut spool_file = SpoolFile::new(file, dir, name, 0, 0, None);
        spool_file.tmp = Some(tmp);
        spool_file.start_with(preamble)
    }

    /// A region of `file` from offset `start`: `reserved` octets are left for a header the
    /// owner writes at commit, then `preamble`, then the message. `dir`/`name` name the
    /// message for the owner. Dropped uncommitted, `on_abort` runs (it should truncate the
    /// file back to `start`); the file itself is never removed.
    ///
    /// Errors: writing the preamble failed.
    pub fn region(
        file: File,
        start: u64,
        reserved: u64,
        dir: &Path,
        name: &str,
        preamble: &[u8],
        on_abort: AbortHook,
    ) -> io::Result<SpoolFile> {
        SpoolFile::new(file, dir, name, start, reserved, Some(on_abort)).start_with(preamble)
    }

    fn new(
        file: File,
        dir: &Path,
        name: &str,
        start: u64,
        reserved: u64,
        on_abort: Option<AbortHook>,
    ) -> SpoolFile {
        SpoolFile {
            file,
            tmp: None,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            start,
            reserved,
            pos: start + reserved,
            crc: crc32fast::Hasher::new(),
            on_abort,
            buf: Vec::new(),
            len: 0,
            preamble: 0,
            error: None,
            pending: true,
            writers: None,
        }
    }

    fn start_with(mut self, preamble: &[u8]) -> io::Result<SpoolFile> {
        self.buf = Vec::with_capacity(WRITE_BUFFER.min(preamble.len().max(4096)));
        self.preamble = preamble.len() as u64;
        self.push(preamble);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    /// Count this writer in `writers` until it is committed or dropped (the group committer
    /// waits a little for open writers, never for idle ones).
    pub fn track(&mut self, writers: Arc<AtomicUsize>) {
        if self.writers.is_none() {
            writers.fetch_add(1, Ordering::SeqCst);
            self.writers = Some(writers);
        }
    }

    fn untrack(&mut self) {
        if let Some(w) = self.writers.take() {
            w.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Append message octets. Never fails here: an error is kept for
    /// [`finish`](SpoolFile::finish) and later octets are only counted.
    pub fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.crc.update(bytes);
        if self.buf.len() + bytes.len() <= WRITE_BUFFER {
            self.buf.extend_from_slice(bytes);
            return;
        }
        if let Err(e) = self.flush_buf() {
            self.error = Some(e);
            return;
        }
        if bytes.len() >= WRITE_BUFFER {
            if let Err(e) = self.write_at_pos(bytes) {
                self.error = Some(e);
            }
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn write_at_pos(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.pos)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            let result = self.write_at_pos(&buf);
            self.buf = buf;
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    /// Write out the buffer; the first error met while writing, if any (ENOSPC, EIO, …).
    /// The data is written, not yet fsynced.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush_buf()
    }

    /// Message octets written so far (without the preamble).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no message octet was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The directory the file is committed in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The final file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The temp file's path (`None` for a region).
    pub fn temp_path(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }

    /// Offset of the region's first octet (the reserved header); 0 for a temp file.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Octets written after the reserved header: preamble plus message.
    pub fn body_len(&self) -> u64 {
        self.preamble + self.len
    }

    /// CRC-32 (IEEE, as zlib's) of the octets written after the reserved header.
    pub fn crc32(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// The open file (the temp file, or the file the region is in).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Read the message back (without the preamble), after writing out the buffer. Used by
    /// the default [`Backend::data_file`].
    pub fn read_message(&mut self) -> io::Result<Vec<u8>> {
        self.finish()?;
        let mut out = vec![0; usize::try_from(self.len).unwrap_or(0)];
        self.file
            .read_exact_at(&mut out, self.start + self.reserved + self.preamble)?;
        Ok(out)
    }

    /// Hand the file to a commit: it is no longer removed (nor its abort hook run) on drop.
    /// Returns the open file, the temp path (`None` for a region) and the destination path.
    /// Errors: no file descriptor left to duplicate the handle (the message is then dropped
    /// as uncommitted).
    pub fn into_commit(mut self) -> io::Result<(File, Option<PathBuf>, PathBuf)> {
        let file = self.file.try_clone()?;
        self.pending = false;
        self.untrack();
        Ok((file, self.tmp.clone(), self.dir.join(&self.name)))
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        self.untrack();
        if self.pending {
            if let Some(tmp) = &self.tmp {
                let _ = fs::remove_file(tmp);
            }
            if let Some(hook) = self.on_abort.take() {
                hook();
            }
        }
    }
}

/// A message body being received: in memory, in a spool file, or failed to open (the
/// message is still read to its end and then answered `451`/`452`).
#[derive(Debug)]
pub(crate) enum Body {
    Memory(Vec<u8>),
    File(Box<SpoolFile>),
    Failed(io::Error, u64),
}

impl Default for Body {
    fn default() -> Self {
        Body::Memory(Vec::new())
    }
}

impl Body {
    /// Ask the backend where the message of `envelope` goes.
    pub(crate) fn open<B: Backend>(backend: &B, envelope: &Envelope) -> Body {
        match backend.open_message(envelope) {
            None => Body::Memory(Vec::new()),
            Some(Ok(file)) => Body::File(Box::new(file)),
            Some(Err(error)) => {
                tracing::error!(%error, "cannot open a spool file for a message");
                Body::Failed(error, 0)
            }
        }
    }

    /// Message octets kept so far.
    pub(crate) fn len(&self) -> usize {
        let n = match self {
            Body::Memory(v) => v.len() as u64,
            Body::File(f) => f.len(),
            Body::Failed(_, n) => *n,
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// Hand the finished message to the backend; the reply to the final dot or `BDAT LAST`.
    pub(crate) async fn deliver<B: Backend>(self, backend: &B, envelope: Envelope) -> Reply {
        let reply = match self {
            Body::Memory(message) => backend.data(envelope, message).await,
            Body::File(mut file) => match file.finish() {
                Ok(()) => backend.data_file(envelope, *file).await,
                Err(error) => {
                    tracing::error!(%error, "writing a message to the spool failed");
                    Reply::storage_error(&error)
                }
            },
            Body::Failed(error, _) => Reply::storage_error(&error),
        };
        reply.normalized()
    }
}

/// Where framed message octets go.
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for Body {
    fn put(&mut self, bytes: &[u8]) {
        match self {
            Body::Memory(v) => v.extend_from_slice(bytes),
            Body::File(f) => f.write(bytes),
            Body::Failed(_, n) => *n = n.saturating_add(bytes.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_through_a_bounded_buffer_and_removes_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = SpoolFile::create(dir.path(), "X.msg", b"PRE\n").unwrap();
        let tmp = f.temp_path().unwrap().to_path_buf();
        let big = vec![b'a'; 3 * WRITE_BUFFER + 7];
        f.write(b"Subject: x\r\n\r\n");
        f.write(&big);
        assert!(f.buf.len() <= WRITE_BUFFER);
        assert_eq!(f.len(), 14 + big.len() as u64);
        let msg = f.read_message().unwrap();
        assert_eq!(msg.len() as u64, f.len());
        assert_eq!(fs::read(&tmp).unwrap()[..4], *b"PRE\n");
        drop(f);
        assert!(!tmp.exists());
    }
}
