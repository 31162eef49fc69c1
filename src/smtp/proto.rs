//! Sans-IO framing: command lines (with length limits) and the DATA block (dot-unstuffing, end
//! at `CRLF.CRLF` only, size cap while reading). Bytes in, events out; no I/O here.

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including the CRLF.
pub(crate) const MAX_COMMAND_LINE: usize = 512;
/// MAIL: 512 + 26 for SIZE (RFC 1870 §3) + 100 for RET and ENVID (RFC 3461 §4), in octets.
pub(crate) const MAX_MAIL_LINE: usize = MAX_COMMAND_LINE + 26 + 100;
/// RCPT: 512 + 500 for NOTIFY and ORCPT (RFC 3461 §4), in octets.
pub(crate) const MAX_RCPT_LINE: usize = MAX_COMMAND_LINE + 500;

/// The longest line any command may have, in octets.
pub(crate) const MAX_ANY_LINE: usize = MAX_RCPT_LINE;

/// What [`LineReader::next`] found in the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineEvent {
    /// One complete command line, with its line ending (`\r\n`, or a bare `\n`).
    Line(Vec<u8>),
    /// A line went past its limit: answer `500 5.5.6` once; the rest of that line, up to its
    /// `\n`, is discarded.
    TooLong,
}

/// Splits buffered input into command lines, never holding more than [`MAX_ANY_LINE`] octets
/// of an unfinished line.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    /// Inside an over-long line: drop bytes until its `\n`.
    discarding: bool,
}

/// Limit in octets for the line starting with `head` (RFC 5321 §4.5.3.1.4 plus extensions).
fn limit_for(head: &[u8]) -> usize {
    if head.len() < 5 {
        return MAX_ANY_LINE;
    }
    match head[..5].to_ascii_uppercase().as_slice() {
        b"MAIL " => MAX_MAIL_LINE,
        b"RCPT " => MAX_RCPT_LINE,
        _ => MAX_COMMAND_LINE,
    }
}

impl LineReader {
    /// Take the next event from the front of `input` (which is drained as bytes are used).
    /// `None`: more input is needed.
    pub(crate) fn next(&mut self, input: &mut Vec<u8>) -> Option<LineEvent> {
        loop {
            let newline = input.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(pos) => {
                        input.drain(..=pos);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        input.clear();
                        return None;
                    }
                }
            }
            return match newline {
                Some(pos) => {
                    let line: Vec<u8> = input.drain(..=pos).collect();
                    if line.len() > limit_for(&line) {
                        Some(LineEvent::TooLong)
                    } else {
                        Some(LineEvent::Line(line))
                    }
                }
                None if input.len() > limit_for(input) => {
                    input.clear();
                    self.discarding = true;
                    Some(LineEvent::TooLong)
                }
                None => None,
            };
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (after CRLF, or at the very start of the block).
    LineStart,
    /// A line began with `.`; the dot is held back.
    Dot,
    /// A line began with `.\r`.
    DotCr,
    /// Inside a line; the last byte was not CR.
    Text,
    /// Inside a line; the last byte was CR.
    Cr,
}

/// Streaming reader of the DATA block (RFC 5321 §4.1.1.4, §4.5.2).
///
/// A line is ended by CRLF only. The block ends at a line holding only `.` (so at CRLF `.`
/// CRLF, or `.` CRLF right after the 354): a bare `\n.\n`, `\r.\r` or `\n.\r\n` never ends it
/// (SMTP smuggling). A leading dot of a line is removed (transparency, §4.5.2). The message
/// keeps the CRLF before the final dot. Past `max_size` octets (counted after unstuffing, as
/// RFC 1870 §4 counts) the rest is read and dropped, so the session stays in step and can
/// answer `552 5.3.4` after the dot.
#[derive(Debug)]
pub(crate) struct DataReader {
    state: DataState,
    max_size: usize,
    /// Octets of message seen so far (including dropped ones), saturating.
    size: usize,
    message: Vec<u8>,
}

impl DataReader {
    /// A reader for one message of at most `max_size` octets.
    pub(crate) fn new(max_size: usize) -> DataReader {
        DataReader {
            state: DataState::LineStart,
            max_size,
            size: 0,
            message: Vec::new(),
        }
    }

    /// True once more than `max_size` octets were seen.
    pub(crate) fn oversize(&self) -> bool {
        self.size > self.max_size
    }

    /// The message read so far (empty when oversize).
    pub(crate) fn into_message(self) -> Vec<u8> {
        self.message
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.size > self.max_size {
            if !self.message.is_empty() {
                self.message = Vec::new();
            }
        } else {
            self.message.extend_from_slice(bytes);
        }
    }

    /// Consume bytes from the front of `input` up to and including the end of the block.
    /// Returns true when the block ended; the bytes after it stay in `input` (pipelined
    /// commands).
    pub(crate) fn feed(&mut self, input: &mut Vec<u8>) -> bool {
        let mut i = 0;
        let mut done = false;
        while i < input.len() {
            let b = input[i];
            match self.state {
                DataState::Text => {
                    // Fast path: copy up to the next CR.
                    let rest = &input[i..];
                    let n = rest.iter().position(|&c| c == b'\r').unwrap_or(rest.len());
                    self.emit(&rest[..n]);
                    i += n;
                    if i < input.len() {
                        self.emit(b"\r");
                        self.state = DataState::Cr;
                        i += 1;
                    }
                    continue;
                }
                DataState::LineStart => {
                    self.state = match b {
                        b'.' => DataState::Dot,
                        _ => self.after_text(b),
                    };
                }
                DataState::Dot => {
                    self.state = match b {
                        b'\r' => DataState::DotCr,
                        // The stuffed dot is dropped; the byte starts the line's text.
                        _ => self.after_text(b),
                    };
                }
                DataState::DotCr => {
                    if b == b'\n' {
                        i += 1;
                        done = true;
                        break;
                    }
                    // `.\r` then something else: the dot was stuffing, CR is text.
                    self.emit(b"\r");
                    self.state = self.after_text(b);
                }
                DataState::Cr => {
                    self.emit(&[b]);
                    self.state = match b {
                        b'\n' => DataState::LineStart,
                        b'\r' => DataState::Cr,
                        _ => DataState::Text,
                    };
                }
            }
            i += 1;
        }
        input.drain(..i);
        done
    }

    /// Emit a text byte and return the state after it.
    fn after_text(&mut self, b: u8) -> DataState {
        self.emit(&[b]);
        if b == b'\r' {
            DataState::Cr
        } else {
            DataState::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], max: usize) -> (bool, Vec<u8>, Vec<u8>, bool) {
        let mut r = DataReader::new(max);
        let mut rest = Vec::new();
        let mut done = false;
        for c in chunks {
            rest.extend_from_slice(c);
            if r.feed(&mut rest) {
                done = true;
                break;
            }
        }
        let over = r.oversize();
        (done, r.into_message(), rest, over)
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_unstuffs() {
        let (done, msg, rest, _) = read_all(&[b"a\r\n..b\r\n.\r\nQUIT\r\n"], 100);
        assert!(done);
        assert_eq!(msg, b"a\r\n.b\r\n");
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn empty_message_and_byte_by_byte() {
        assert_eq!(read_all(&[b".\r\n"], 10).1, b"");
        let input = b"x\r\n.\r\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let (done, msg, _, _) = read_all(&chunks, 10);
        assert!(done);
        assert_eq!(msg, b"x\r\n");
    }

    #[test]
    fn smuggling_sequences_do_not_end_the_block() {
        for evil in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"] {
            let mut input = b"x".to_vec();
            input.extend_from_slice(evil);
            input.extend_from_slice(b"MAIL FROM:<a@b>\r\n");
            let (done, _, _, _) = read_all(&[&input], 1000);
            assert!(!done, "{evil:?} ended the block");
        }
    }

    #[test]
    fn oversize_is_read_to_the_end_and_dropped() {
        let (done, msg, rest, over) = read_all(&[b"0123456789\r\n", b".\r\nNOOP\r\n"], 5);
        assert!(done && over);
        assert!(msg.is_empty());
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn lines_and_limits() {
        let mut r = LineReader::default();
        let mut input = b"NOOP\r\nQUIT".to_vec();
        assert_eq!(
            r.next(&mut input),
            Some(LineEvent::Line(b"NOOP\r\n".to_vec()))
        );
        assert_eq!(r.next(&mut input), None);
        let mut long = vec![b'X'; 600];
        assert_eq!(r.next(&mut long), Some(LineEvent::TooLong));
        let mut tail = b"XXX\r\nNOOP\r\n".to_vec();
        assert_eq!(
            r.next(&mut tail),
            Some(LineEvent::Line(b"NOOP\r\n".to_vec()))
        );
        let mut exact = vec![b'N'; 510];
        exact.extend_from_slice(b"\r\n");
        assert!(matches!(r.next(&mut exact), Some(LineEvent::Line(_))));
        let mut over = vec![b'N'; 511];
        over.extend_from_slice(b"\r\n");
        assert_eq!(r.next(&mut over), Some(LineEvent::TooLong));
        let mut rcpt = b"RCPT TO:<a@b> ".to_vec();
        rcpt.extend(vec![b' '; 600]);
        rcpt.extend_from_slice(b"\r\n");
        assert!(matches!(r.next(&mut rcpt), Some(LineEvent::Line(_))));
    }
}
