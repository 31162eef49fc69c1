//! Sans-IO framing: command lines (with length limits) and the DATA block (dot-unstuffing, end
//! at `CRLF.CRLF` only, size cap while reading). Bytes in, events out; no I/O here.

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including the CRLF.
pub(crate) const MAX_COMMAND_LINE: usize = 512;
/// MAIL: 512 + 26 for SIZE (RFC 1870 §3) + 100 for RET and ENVID (RFC 3461 §4), in octets.
pub(crate) const MAX_MAIL_LINE: usize = MAX_COMMAND_LINE + 26 + 100;
/// RCPT: 512 + 500 for NOTIFY and ORCPT (RFC 3461 §4), in octets.
pub(crate) const MAX_RCPT_LINE: usize = MAX_COMMAND_LINE + 500;

/// AUTH with an initial response, and each SASL response line: 12288 octets (RFC 4954 §4).
pub(crate) const MAX_AUTH_LINE: usize = 12288;

/// What [`LineReader::next`] found in the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineEvent {
    /// One complete command line, with its line ending (`\r\n`, or a bare `\n`).
    Line(Vec<u8>),
    /// A line went past its limit: answer `500 5.5.6` once; the rest of that line, up to its
    /// `\n`, is discarded.
    TooLong,
}

/// Splits buffered input into command lines, never holding more than [`MAX_AUTH_LINE`] octets
/// of an unfinished line.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    /// Inside an over-long line: drop bytes until its `\n`.
    discarding: bool,
    /// The next line is a SASL response (RFC 4954 §4), limited to [`MAX_AUTH_LINE`].
    pub(crate) sasl_response: bool,
}

/// Limit in octets for the line starting with `head` (RFC 5321 §4.5.3.1.4 plus extensions).
fn limit_for(head: &[u8], sasl_response: bool) -> usize {
    if sasl_response {
        return MAX_AUTH_LINE;
    }
    if head.len() < 5 {
        return MAX_COMMAND_LINE;
    }
    match head[..5].to_ascii_uppercase().as_slice() {
        b"MAIL " => MAX_MAIL_LINE,
        b"RCPT " => MAX_RCPT_LINE,
        b"AUTH " => MAX_AUTH_LINE,
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
                    if line.len() > limit_for(&line, self.sasl_response) {
                        Some(LineEvent::TooLong)
                    } else {
                        Some(LineEvent::Line(line))
                    }
                }
                None if input.len() > limit_for(input, self.sasl_response) => {
                    input.clear();
                    self.discarding = true;
                    Some(LineEvent::TooLong)
                }
                None => None,
            };
        }
    }
}

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including the CRLF.
pub(crate) const MAX_TEXT_LINE: usize = 1000;

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

/// What was wrong with a DATA block, found while reading it; answered after the final dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DataFlaws {
    /// More than `max_size` octets (RFC 1870 §6.4).
    pub(crate) oversize: bool,
    /// A line longer than [`MAX_TEXT_LINE`] octets (RFC 5321 §4.5.3.1.6).
    pub(crate) long_line: bool,
    /// A CR not followed by LF, or an LF not preceded by CR (RFC 5321 §2.3.8).
    pub(crate) bare_line_ending: bool,
    /// A NUL octet (RFC 5322 §3.5, RFC 6152 §2: not allowed in 7bit or 8bit text).
    pub(crate) nul: bool,
}

/// Streaming reader of the DATA block (RFC 5321 §4.1.1.4, §4.5.2).
///
/// A line is ended by CRLF only. The block ends at a line holding only `.` (so at CRLF `.`
/// CRLF, or `.` CRLF right after the 354): a bare `\n.\n`, `\r.\r` or `\n.\r\n` never ends it
/// (SMTP smuggling); a bare CR or LF is an ordinary octet that is kept and noted in
/// [`DataFlaws`]. A leading dot of a line is removed (transparency, §4.5.2). The message
/// keeps the CRLF before the final dot. Past `max_size` octets (counted after unstuffing, as
/// RFC 1870 §4 counts) the rest is read and dropped, so the session stays in step and can
/// answer `552 5.3.4` after the dot. Memory: none of its own; the octets go to the output
/// given to [`DataReader::feed`] as they are framed, in runs as long as the input allows
/// (everything between two dots that start lines is one run).
#[derive(Debug)]
pub(crate) struct DataReader {
    state: DataState,
    max_size: usize,
    /// Octets of message seen so far (including dropped ones), saturating.
    size: usize,
    /// Wire octets of the current line so far (CR and LF included), saturating.
    line_len: usize,
    flaws: DataFlaws,
}

impl DataReader {
    /// A reader for one message of at most `max_size` octets.
    pub(crate) fn new(max_size: usize) -> DataReader {
        DataReader {
            state: DataState::LineStart,
            max_size,
            size: 0,
            line_len: 0,
            flaws: DataFlaws::default(),
        }
    }

    /// What was found wrong so far.
    pub(crate) fn flaws(&self) -> DataFlaws {
        DataFlaws {
            oversize: self.size > self.max_size,
            ..self.flaws
        }
    }

    /// Message octets to `out`, unless the message is past `max_size` (then they are only
    /// counted; what `out` got before is dropped with it by the caller).
    fn emit(&mut self, bytes: &[u8], out: &mut impl super::sink::Out) {
        if bytes.is_empty() {
            return;
        }
        self.size = self.size.saturating_add(bytes.len());
        if self.size <= self.max_size {
            out.put(bytes);
        }
    }

    /// Count `n` wire octets of the current line.
    fn count(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > MAX_TEXT_LINE {
            self.flaws.long_line = true;
        }
    }

    /// Consume octets from the front of `input` up to and including the end of the block,
    /// the message octets among them going to `out`. Returns true when the block ended; the
    /// octets after it stay in `input` (pipelined commands).
    ///
    /// Octets pass to `out` as runs of `input` (`input[run..i]`): a run is cut only where an
    /// octet is dropped or held back (a dot starting a line; the CR after such a dot, which
    /// ends the block if LF follows). Lines of ordinary text (CRLF, then an octet that is not
    /// `.`, CR, LF or NUL) are stepped over whole, without the per-octet state machine.
    pub(crate) fn feed(&mut self, input: &mut Vec<u8>, out: &mut impl super::sink::Out) -> bool {
        let mut i = 0;
        let mut run = 0;
        let mut done = false;
        while i < input.len() {
            if self.state == DataState::Text {
                // Fast path: up to the next CR, LF or NUL; past CRLF when an ordinary octet
                // follows (the state stays Text).
                let rest = &input[i..];
                let n = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                self.count(n);
                i += n;
                if i == input.len() {
                    break;
                }
                if input[i] == b'\r'
                    && input.get(i + 1) == Some(&b'\n')
                    && input
                        .get(i + 2)
                        .is_some_and(|&c| !matches!(c, b'.' | b'\r' | b'\n' | 0))
                {
                    self.count(2);
                    self.line_len = 0;
                    i += 2;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.count(1);
            match self.state {
                DataState::LineStart if b == b'.' => {
                    // Dropped: stuffing, or the start of the end of the block.
                    let before = &input[run..i - 1];
                    self.emit(before, out);
                    run = i;
                    self.state = DataState::Dot;
                }
                DataState::Dot if b == b'\r' => {
                    // Held back until the octet after it is known (`run` is at it: the dot
                    // before it was just dropped).
                    run = i;
                    self.state = DataState::DotCr;
                }
                DataState::DotCr if b == b'\n' => {
                    done = true;
                    break;
                }
                DataState::Cr if b == b'\n' => {
                    self.line_len = 0;
                    self.state = DataState::LineStart;
                }
                DataState::DotCr | DataState::Cr => {
                    // The CR before `b` was bare; with `.\r` the dot was stuffing and the CR,
                    // held back, is message text before `b` (`run` is at `b`).
                    if self.state == DataState::DotCr {
                        self.emit(b"\r", out);
                    }
                    self.flaws.bare_line_ending = true;
                    self.text(b);
                }
                // A stuffed dot is dropped; `b` starts the line's text.
                DataState::LineStart | DataState::Dot | DataState::Text => self.text(b),
            }
        }
        if !done {
            let pending = &input[run..i];
            self.emit(pending, out);
        }
        input.drain(..i);
        done
    }

    /// One text octet (it stays in the run) and the state after it. A LF here is bare (no CR
    /// before it): it does not end the line, so a dot after it is never an end of data.
    fn text(&mut self, b: u8) {
        match b {
            b'\r' => {
                self.state = DataState::Cr;
                return;
            }
            b'\n' => {
                self.flaws.bare_line_ending = true;
                // For the line-length limit a bare LF counts as a line break.
                self.line_len = 0;
            }
            0 => self.flaws.nul = true,
            _ => {}
        }
        self.state = DataState::Text;
    }
}

/// Reader of one BDAT chunk (RFC 3030 §2): exactly `size` octets, kept verbatim, with no
/// dot-stuffing and no end marker. Octets past `room` are read and dropped, so a refused or
/// oversize chunk is still consumed and the session stays in step.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    /// Octets of the chunk not read yet.
    left: u64,
    /// Octets that may still be kept.
    room: usize,
    /// More octets arrived than `room`.
    overflow: bool,
}

impl ChunkReader {
    /// A reader for a chunk of `size` octets of which at most `room` are kept.
    pub(crate) fn new(size: u64, room: usize) -> ChunkReader {
        ChunkReader {
            left: size,
            room,
            overflow: false,
        }
    }

    /// Move chunk octets from the front of `input` to `out` (dropping what does not fit);
    /// true once the whole chunk was read.
    pub(crate) fn feed(&mut self, input: &mut Vec<u8>, out: &mut impl super::sink::Out) -> bool {
        let take = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let keep = take.min(self.room);
        if keep < take {
            self.overflow = true;
        }
        if keep > 0 {
            out.put(&input[..keep]);
        }
        self.room -= keep;
        input.drain(..take);
        self.left -= take as u64;
        self.left == 0
    }

    /// True when the chunk did not fit in `room`.
    pub(crate) fn overflow(&self) -> bool {
        self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], max: usize) -> (bool, Vec<u8>, Vec<u8>, bool) {
        let mut r = DataReader::new(max);
        let mut rest = Vec::new();
        let mut msg = Vec::new();
        let mut done = false;
        for c in chunks {
            rest.extend_from_slice(c);
            if r.feed(&mut rest, &mut msg) {
                done = true;
                break;
            }
        }
        let over = r.flaws().oversize;
        (done, msg, rest, over)
    }

    /// The DATA framing of RFC 5321 §4.1.1.4 / §4.5.2 written plainly, one octet at a time
    /// (the reader before its runs and fast path): the end is the first CRLF `.` CRLF (or `.`
    /// CRLF at the start), a dot starting a line is dropped, bare CR / LF and NUL are kept and
    /// noted, lines over 1000 octets with CRLF are noted.
    fn reference(input: &[u8], max: usize) -> (bool, Vec<u8>, usize, DataFlaws) {
        let (mut msg, mut flaws) = (Vec::new(), DataFlaws::default());
        let (mut line_start, mut line_len) = (true, 0usize);
        let mut i = 0;
        while i < input.len() {
            if line_start && input[i..].starts_with(b".\r\n") {
                flaws.oversize = msg.len() > max;
                return (true, msg, i + 3, flaws);
            }
            let stuffed = line_start && input[i] == b'.';
            if stuffed {
                line_len += 1;
                i += 1;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            msg.push(b);
            line_len += 1;
            flaws.long_line |= line_len > MAX_TEXT_LINE;
            i += 1;
            line_start = false;
            match b {
                b'\r' if input.get(i) == Some(&b'\n') => {
                    msg.push(b'\n');
                    line_len += 1;
                    flaws.long_line |= line_len > MAX_TEXT_LINE;
                    i += 1;
                    line_start = true;
                    line_len = 0;
                }
                b'\r' => flaws.bare_line_ending |= i < input.len(),
                b'\n' => {
                    flaws.bare_line_ending = true;
                    line_len = 0;
                }
                0 => flaws.nul = true,
                _ => {}
            }
        }
        (false, msg, input.len(), flaws)
    }

    /// The reader against [`reference`] on random blocks of text lines, dots, CR, LF and NUL,
    /// cut into random reads: the same end, message, rest and flaws.
    #[test]
    fn runs_and_fast_path_frame_as_the_plain_reading() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            let len = rnd(120) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| match rnd(12) {
                    0 => b'.',
                    1 | 2 => b'\r',
                    3 | 4 => b'\n',
                    5 => 0,
                    _ => b'a',
                })
                .collect();
            if rnd(3) == 0 {
                // A long ordinary line now and then, for the 1000-octet limit.
                let at = rnd(len as u64 + 1) as usize;
                let long = vec![b'x'; 990 + rnd(20) as usize];
                input.splice(at..at, long);
            }
            input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
            let max = if rnd(4) == 0 {
                rnd(200) as usize
            } else {
                1 << 20
            };
            let want = reference(&input, max);
            let mut r = DataReader::new(max);
            let (mut rest, mut msg, mut done, mut at) = (Vec::new(), Vec::new(), false, 0);
            while at < input.len() && !done {
                let n = (1 + rnd(40) as usize).min(input.len() - at);
                rest.extend_from_slice(&input[at..at + n]);
                at += n;
                done = r.feed(&mut rest, &mut msg);
            }
            rest.extend_from_slice(&input[at..]);
            assert_eq!(done, want.0, "{input:?}");
            assert_eq!(r.flaws(), want.3, "{input:?}");
            if !want.3.oversize {
                assert_eq!(msg, want.1, "{input:?}");
            }
            assert_eq!(rest, &input[want.2..], "{input:?}");
        }
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
        for evil in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\n.\r",
            b"\r.\n",
            b"\r.\r\n",
            b"\r\r\n.\r\r\n",
            b"\r\n\0.\r\n",
            b"\r\n.\0\r\n",
            b"\r\n.\r\0\n",
        ] {
            let mut input = b"x".to_vec();
            input.extend_from_slice(evil);
            input.extend_from_slice(b"MAIL FROM:<a@b>\r\n");
            let (done, _, _, _) = read_all(&[&input], 1000);
            assert!(!done, "{evil:?} ended the block");
        }
    }

    fn flaws_of(input: &[u8]) -> (bool, DataFlaws, Vec<u8>) {
        let mut r = DataReader::new(1 << 20);
        let mut rest = input.to_vec();
        let mut msg = Vec::new();
        let done = r.feed(&mut rest, &mut msg);
        (done, r.flaws(), msg)
    }

    #[test]
    fn text_line_limit_is_1000_octets_with_crlf() {
        // RFC 5321 §4.5.3.1.6: 998 octets of text + CRLF is the longest line.
        let mut ok = vec![b'a'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        let (done, flaws, _) = flaws_of(&ok);
        assert!(done && !flaws.long_line);
        let mut long = vec![b'a'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        let (done, flaws, _) = flaws_of(&long);
        assert!(done && flaws.long_line);
        // A stuffed dot is on the wire, so it counts.
        let mut stuffed = b".".to_vec();
        stuffed.extend(vec![b'a'; 998]);
        stuffed.extend_from_slice(b"\r\n.\r\n");
        assert!(flaws_of(&stuffed).1.long_line);
    }

    #[test]
    fn bare_cr_lf_and_nul_are_kept_and_noted() {
        for (input, kept) in [
            (&b"a\nb\r\n.\r\n"[..], &b"a\nb\r\n"[..]),
            (b"a\rb\r\n.\r\n", b"a\rb\r\n"),
            (b"a\r\r\n.\r\n", b"a\r\r\n"),
            (b".\rx\r\n.\r\n", b"\rx\r\n"),
            (b"x\r\n.\n.\r\n.\r\n", b"x\r\n\n.\r\n"),
        ] {
            let (done, flaws, message) = flaws_of(input);
            assert!(done, "{input:?}");
            assert!(flaws.bare_line_ending, "{input:?}");
            assert_eq!(message, kept, "{input:?}");
        }
        let (done, flaws, message) = flaws_of(b"a\0b\r\n\0.\r\n.\r\n");
        assert!(done && flaws.nul && !flaws.bare_line_ending);
        assert_eq!(message, b"a\0b\r\n\0.\r\n");
        let (_, clean, _) = flaws_of(b"a\r\nb\r\n.\r\n");
        assert_eq!(clean, DataFlaws::default());
    }

    #[test]
    fn chunk_reader_takes_exactly_its_size() {
        let mut input = b"0123456789NOOP\r\n".to_vec();
        let mut out = Vec::new();
        let mut r = ChunkReader::new(10, 4);
        assert!(r.feed(&mut input, &mut out));
        assert!(r.overflow());
        assert_eq!(out, b"0123");
        assert_eq!(input, b"NOOP\r\n");
        let mut r = ChunkReader::new(5, 100);
        let mut out = Vec::new();
        assert!(!r.feed(&mut b"ab".to_vec(), &mut out));
        assert!(r.feed(&mut b"\r\n.\r\nX".to_vec(), &mut out));
        assert_eq!(out, b"ab\r\n.");
        assert!(ChunkReader::new(0, 0).feed(&mut Vec::new(), &mut Vec::new()));
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
