//! Read reports out of mailboxes: a single message file (`.eml`), an mbox file (RFC 4155
//! `From ` separator lines, `>From ` unquoted as in mboxrd) or a Maildir (`cur/` and `new/`).
//!
//! mbox splitting is mail-parser's `mailbox::mbox::MessageIterator` (it strips one `>` from
//! `>From ` / `>>From ` lines); Maildir is read here so that files come in name order
//! (Maildir names start with the delivery time), dot files and `tmp/` skipped.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// One message read from a mailbox: its raw RFC 5322 bytes and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxItem {
    /// The file path for an `.eml` or a Maildir file; `PATH#N` (N from 1) for the N-th
    /// message of an mbox file.
    pub source: String,
    /// The message, as stored (mbox: without its `From ` line, `>From ` unquoted).
    pub bytes: Vec<u8>,
}

/// The messages in `path`, one at a time (an mbox is read message by message, so memory
/// stays at one message). See [`read_mailbox`] for the formats.
pub struct MailboxIter {
    inner: Inner,
}

enum Inner {
    Done,
    One(PathBuf),
    Mbox {
        name: String,
        count: usize,
        messages: mail_parser::mailbox::mbox::MessageIterator<BufReader<File>>,
    },
    Files(std::vec::IntoIter<PathBuf>),
}

/// Open `path` as a Maildir (a directory with `cur/` or `new/`), an mbox (a file whose first
/// line starts with `From `) or a single message file.
pub fn mailbox_items(path: &Path) -> io::Result<MailboxIter> {
    let meta = std::fs::metadata(path).map_err(|e| named(path, e))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        let mut any = false;
        for sub in ["cur", "new"] {
            let dir = path.join(sub);
            if !dir.is_dir() {
                continue;
            }
            any = true;
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| named(&dir, e))?
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            files.extend(names);
        }
        if !any {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a directory without cur/ or new/ is not a Maildir",
                    path.display()
                ),
            ));
        }
        return Ok(MailboxIter {
            inner: Inner::Files(files.into_iter()),
        });
    }
    let mut head = [0u8; 5];
    let mut file = File::open(path).map_err(|e| named(path, e))?;
    let n = read_up_to(&mut file, &mut head).map_err(|e| named(path, e))?;
    if &head[..n] == b"From " {
        let file = File::open(path).map_err(|e| named(path, e))?;
        return Ok(MailboxIter {
            inner: Inner::Mbox {
                name: path.display().to_string(),
                count: 0,
                messages: mail_parser::mailbox::mbox::MessageIterator::new(BufReader::new(file)),
            },
        });
    }
    Ok(MailboxIter {
        inner: Inner::One(path.to_path_buf()),
    })
}

/// `e` with the path in front of its message (the kind kept), for errors that should say
/// which of several files failed.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One message file as an item named by its path; a read error names the path too.
fn read_item(path: &Path) -> io::Result<MailboxItem> {
    std::fs::read(path)
        .map(|bytes| MailboxItem {
            source: path.display().to_string(),
            bytes,
        })
        .map_err(|e| named(path, e))
}

impl Iterator for MailboxIter {
    type Item = io::Result<MailboxItem>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Done => None,
            Inner::One(path) => {
                let path = std::mem::take(path);
                self.inner = Inner::Done;
                Some(read_item(&path))
            }
            Inner::Files(files) => {
                let path = files.next()?;
                Some(read_item(&path))
            }
            Inner::Mbox {
                name,
                count,
                messages,
            } => {
                let message = match messages.next()? {
                    Ok(m) => m,
                    Err(e) => return Some(Err(io::Error::new(e.kind(), format!("{name}: {e}")))),
                };
                *count += 1;
                let mut bytes = message.unwrap_contents();
                // The blank line before the next `From ` line belongs to the separator
                // (RFC 4155 §2).
                if bytes.ends_with(b"\r\n\r\n") {
                    bytes.truncate(bytes.len() - 2);
                } else if bytes.ends_with(b"\n\n") {
                    bytes.truncate(bytes.len() - 1);
                }
                Some(Ok(MailboxItem {
                    source: format!("{name}#{count}"),
                    bytes,
                }))
            }
        }
    }
}

/// Every message in `path`: an `.eml` (one message), an mbox file (messages split on
/// `From ` lines, RFC 4155; `>From ` unquoted) or a Maildir (`cur/` then `new/`, each in
/// file-name order). Sources are the file path, or `PATH#N` for the N-th mbox message.
pub fn read_mailbox(path: &Path) -> Result<Vec<MailboxItem>, io::Error> {
    mailbox_items(path)?.collect()
}
