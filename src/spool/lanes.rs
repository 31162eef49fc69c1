//! Lane files: where the offramp keeps accepted messages, log-structured.
//!
//! A lane is a file `offramp/lane-RANDOM.log` holding records one after another:
//!
//! ```text
//! record = header (128 octets) body
//! header = "T37GWREC" | body length (u64 LE) | CRC-32 of body (u32 LE) | id length (u8) | id | zeros
//! body   = envelope line (compact JSON, "\n") message octets
//! ```
//!
//! A session writes its record at the end of a lane it holds alone, the header first as zeros;
//! the commit writes the header and `fdatasync`s the lane (group-committed with the other
//! sessions' lanes). So a message costs no file creation, rename or directory fsync: on
//! filesystems where creating a file is expensive (ext4 without a journal skips recently
//! deleted inodes one by one) that is most of the per-message cost.
//!
//! A record is valid when its header is complete, its body lies within the file and the CRC
//! matches; at start a lane is read up to its first invalid record and truncated there
//! (what a crash left mid-write never got a `250`). Records whose job the journal already
//! completed are skipped. A lane whose records are all done is truncated to zero and reused;
//! one grown past [`LANE_MAX`] takes no new records and is removed once done.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Octets of a record header.
pub const HEADER: u64 = 128;
const MAGIC: &[u8; 8] = b"T37GWREC";
/// Longest id a header holds (INTERFACE.md: job ids are at most 64 characters).
const MAX_ID: usize = (HEADER as usize) - 21;
/// A lane at or past this size (octets) takes no new records: 64 MiB.
pub const LANE_MAX: u64 = 64 << 20;
/// Lanes kept for reuse when they are empty; more are removed.
const IDLE_LANES_KEPT: usize = 64;

/// Lock `m`, also after a panic elsewhere poisoned it (the data stays consistent: every
/// update is one assignment under the lock).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One lane file.
pub struct Lane {
    path: PathBuf,
    file: File,
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    /// End of the last committed record.
    len: u64,
    /// Committed records not yet removed.
    pending: usize,
    /// Held by a session writing a record.
    busy: bool,
    /// The directory entry is known durable (directory fsynced since the file was created).
    named: bool,
    /// Removed (or found unlinked): never used again.
    gone: bool,
}

/// Where a committed record is.
#[derive(Clone)]
struct Record {
    lane: Arc<Lane>,
    start: u64,
    body_len: u64,
    crc: u32,
}

/// A lane held for one new record.
#[derive(Debug)]
pub struct Slot {
    pub lane: Arc<Lane>,
    /// Offset of the record's header.
    pub start: u64,
    /// The lane file was just created: the directory must be fsynced before the commit counts.
    pub new_file: bool,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// The lane's open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Every lane of one directory and the index of committed records by id.
pub struct Lanes {
    dir: PathBuf,
    all: Mutex<Vec<Arc<Lane>>>,
    index: Mutex<BTreeMap<String, Record>>,
}

/// The header of a record `id` with `body_len` octets of body whose CRC-32 is `crc`.
///
/// Errors: `id` longer than the header holds (InvalidInput).
pub fn header(id: &str, body_len: u64, crc: u32) -> io::Result<[u8; HEADER as usize]> {
    if id.len() > MAX_ID || id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "spool record id too long",
        ));
    }
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&body_len.to_le_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h[20] = id.len() as u8;
    h[21..21 + id.len()].copy_from_slice(id.as_bytes());
    Ok(h)
}

/// (id, body length, CRC) of a header, or `None` when it is not one.
fn parse_header(h: &[u8]) -> Option<(String, u64, u32)> {
    if h.len() < HEADER as usize || &h[..8] != MAGIC {
        return None;
    }
    let body_len = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(h[16..20].try_into().ok()?);
    let n = usize::from(h[20]);
    if n == 0 || n > MAX_ID {
        return None;
    }
    let id = std::str::from_utf8(&h[21..21 + n]).ok()?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some((id.to_string(), body_len, crc))
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// Lanes of `dir` (none open yet: [`Lanes::recover`] reads what is there).
    pub fn new(dir: &Path) -> Lanes {
        Lanes {
            dir: dir.to_path_buf(),
            all: Mutex::new(Vec::new()),
            index: Mutex::new(BTreeMap::new()),
        }
    }

    /// Read every lane file of the directory: index its valid records whose id `done` does
    /// not know, truncate each lane after its last valid record (a torn write from a crash),
    /// and truncate lanes with nothing pending to zero. Returns the records indexed.
    ///
    /// Errors: the directory or a lane cannot be read or truncated.
    pub fn recover(&self, done: &dyn Fn(&str) -> bool) -> io::Result<usize> {
        let mut found = 0;
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("lane-") && name.ends_with(".log") {
                names.push(entry.path());
            }
        }
        names.sort();
        let known: Vec<PathBuf> = lock(&self.all).iter().map(|l| l.path.clone()).collect();
        for path in names {
            if known.contains(&path) {
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let size = file.metadata()?.len();
            let lane = Arc::new(Lane {
                path: path.clone(),
                file,
                state: Mutex::new(LaneState {
                    named: true,
                    ..LaneState::default()
                }),
            });
            let mut off = 0u64;
            let mut records = Vec::new();
            let mut head = [0u8; HEADER as usize];
            while off + HEADER <= size {
                if lane.file.read_exact_at(&mut head, off).is_err() {
                    break;
                }
                let Some((id, body_len, crc)) = parse_header(&head) else {
                    break;
                };
                let Some(end) = (off + HEADER).checked_add(body_len).filter(|&e| e <= size) else {
                    break;
                };
                if crc_of(&lane.file, off + HEADER, body_len)? != crc {
                    break;
                }
                if !done(&id) {
                    records.push((
                        id,
                        Record {
                            lane: lane.clone(),
                            start: off,
                            body_len,
                            crc,
                        },
                    ));
                }
                off = end;
            }
            if off < size {
                tracing::warn!(lane = %path.display(), at = off, "truncating an unfinished spool write left by a crash");
            }
            if records.is_empty() {
                off = 0;
            }
            if off < size {
                lane.file.set_len(off)?;
            }
            {
                let mut st = lock(&lane.state);
                st.len = off;
                st.pending = records.len();
            }
            found += records.len();
            lock(&self.index).extend(records);
            lock(&self.all).push(lane);
        }
        Ok(found)
    }

    /// Hold a lane for a new record: an idle lane with room (emptied first when nothing in it
    /// is pending), else a new lane file.
    ///
    /// Errors: the lane cannot be truncated or created (ENOSPC, EMFILE, …).
    pub fn take(&self) -> io::Result<Slot> {
        let mut all = lock(&self.all);
        for lane in all.iter() {
            let mut st = lock(&lane.state);
            if st.busy || st.gone || st.len >= LANE_MAX {
                continue;
            }
            if lane.file.metadata().map_or(true, |m| m.nlink() == 0) {
                // Removed behind our back: its records are gone with it.
                st.gone = true;
                continue;
            }
            if st.pending == 0 && st.len > 0 {
                lane.file.set_len(0)?;
                st.len = 0;
            }
            st.busy = true;
            return Ok(Slot {
                lane: lane.clone(),
                start: st.len,
                new_file: !st.named,
            });
        }
        all.retain(|l| !lock(&l.state).gone);
        let path = self
            .dir
            .join(format!("lane-{:016x}.log", fastrand::u64(..)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let lane = Arc::new(Lane {
            path,
            file,
            state: Mutex::new(LaneState {
                busy: true,
                ..LaneState::default()
            }),
        });
        all.push(lane.clone());
        Ok(Slot {
            lane,
            start: 0,
            new_file: true,
        })
    }

    /// Give back a lane whose record was not committed: the file is cut back to `start`.
    pub fn abort(&self, lane: &Arc<Lane>, start: u64) {
        let mut st = lock(&lane.state);
        if let Err(e) = lane.file.set_len(start) {
            // The stale octets lie past `len` and are overwritten by the next record; a header
            // is only ever written at commit, so they never read as a record.
            tracing::warn!(lane = %lane.path.display(), "cannot truncate an aborted spool write: {e}");
        }
        st.len = start;
        st.busy = false;
    }

    /// Record `id` (`body_len` octets of body with CRC `crc`, header at `start`) is durable:
    /// index it and give the lane back.
    pub fn committed(&self, lane: &Arc<Lane>, id: &str, start: u64, body_len: u64, crc: u32) {
        {
            let mut st = lock(&lane.state);
            st.len = start + HEADER + body_len;
            st.pending += 1;
            st.busy = false;
            st.named = true;
        }
        lock(&self.index).insert(
            id.to_string(),
            Record {
                lane: lane.clone(),
                start,
                body_len,
                crc,
            },
        );
    }

    /// Ids of committed records not yet removed.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.index).keys().cloned().collect()
    }

    /// The body (envelope line and message) of record `id`; `None` when there is no such
    /// record.
    ///
    /// Errors: reading failed, or the body no longer matches its CRC (InvalidData).
    pub fn load(&self, id: &str) -> Option<io::Result<Vec<u8>>> {
        let rec = lock(&self.index).get(id).cloned()?;
        Some((|| {
            let n = usize::try_from(rec.body_len)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "record too large"))?;
            let mut body = vec![0u8; n];
            rec.lane.file.read_exact_at(&mut body, rec.start + HEADER)?;
            if crc32fast::hash(&body) != rec.crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "spool record fails its CRC",
                ));
            }
            Ok(body)
        })())
    }

    /// Forget record `id` (its job is done); a lane left with nothing pending is emptied for
    /// reuse, or removed when it is over [`LANE_MAX`] or more than [`IDLE_LANES_KEPT`] lanes
    /// exist. Returns false when there is no such record.
    pub fn remove(&self, id: &str) -> bool {
        let Some(rec) = lock(&self.index).remove(id) else {
            return false;
        };
        let lane = rec.lane;
        let mut all = lock(&self.all);
        let mut st = lock(&lane.state);
        st.pending = st.pending.saturating_sub(1);
        if st.pending == 0 && !st.busy && !st.gone {
            if st.len >= LANE_MAX || all.len() > IDLE_LANES_KEPT {
                st.gone = true;
                let _ = fs::remove_file(&lane.path);
                drop(st);
                all.retain(|l| !Arc::ptr_eq(l, &lane));
            } else if lane.file.set_len(0).is_ok() {
                st.len = 0;
            }
        }
        true
    }
}

/// CRC-32 of `len` octets of `file` from `off`, read in 64 KiB pieces.
fn crc_of(file: &File, off: u64, len: u64) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off + done)?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finalize())
}
