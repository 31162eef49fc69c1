//! Table-driven T.4 (MH, MR) and T.6 (MMR) decoder for clean strips.
//!
//! The fast path of [`super::read`]: code words are looked up in tables indexed by the next 12
//! (white runs), 13 (black runs) or 7 (2-D modes) bits of a 64-bit buffer refilled without
//! branches; two short terminating codes (a white and a black run, or the two runs of a
//! horizontal mode) come from one 12-bit look-up, and a string of V0 modes (a run of 1 bits)
//! copies the reference changes in one step. Each row is kept as its changing elements (T.4
//! §4.2.1.3.1) in a preallocated buffer with sentinels at both ends, which are both the next
//! row's reference line and what the row's black runs are filled from. Anything unusual — an
//! invalid or unsupported code word (T.4 extensions, uncompressed mode), a run past the row, a
//! missing EOL in 2-D data, data ending before the last row, a row wider than 2^20 — is an
//! error, and the caller decodes the strip again with the general decoder (`hayro-ccitt`), so
//! this path only changes speed, never what is decoded.
//!
//! Bounded: every mode and code word consumes at least one bit, past the end of the data the
//! reader gives zero bits (no code word is all zeros, so decoding fails there within a code
//! word), the bit position is checked against the end after every row, and at most `rows` rows
//! are decoded; a row holds at most `width` changes, the size of its buffer.

use super::mh::run_code;
use std::sync::OnceLock;

/// How the strip is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// T.4 one-dimensional (Modified Huffman, T.4 §4.1).
    Mh,
    /// T.4 two-dimensional (Modified READ, T.4 §4.2): each row after an EOL and a tag bit.
    Mr,
    /// T.6 (Modified Modified READ, T.6 §2): 2-D rows, no EOLs, first reference line white.
    Mmr,
}

/// How a strip is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    /// The coding scheme.
    pub(crate) coding: Coding,
    /// Rows may be preceded by EOLs with fill bits (TIFF Compression 3; required for
    /// [`Coding::Mr`], whose tag bit follows the EOL).
    pub(crate) eol: bool,
    /// Each row starts on a byte boundary (TIFF Compression 2).
    pub(crate) byte_aligned: bool,
}

/// Why a fast decode gave up (the caller falls back to the general decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unclean;

/// Bits of the white-run table index (longest white code word, T.4 Table 2/3: 12 bits).
const WHITE_BITS: u32 = 12;
/// Bits of the black-run table index (longest black code word: 13 bits).
const BLACK_BITS: u32 = 13;
/// Bits of the 2-D mode table index (longest mode code word we decode: 7 bits, T.4 Table 4).
const MODE_BITS: u32 = 7;

/// 2-D modes (T.4 §4.2.1.3.2, Table 4) in the mode table: entry = mode | code length, where
/// mode is `PASS`, `HORIZONTAL`, or for a vertical mode `(3 + a1 - b1) << 3` (VL3..VR3) plus
/// [`VERTICAL`].
const PASS: u8 = 1 << 3;
const HORIZONTAL: u8 = 2 << 3;
/// Entry bit of a vertical mode that is not the first of a V0 string (see [`modes`]).
const VERTICAL: u8 = 0x80;
/// Code length bits of a mode table entry.
const LEN: u8 = 7;

struct Tables {
    /// Entry = run length << 4 | code length; code length 0 = no such code word.
    white: Vec<u16>,
    black: Vec<u16>,
    /// Two terminating codes in one look-up (short runs): indexed by the next [`PAIR_BITS`] bits
    /// at a white (`pair[0]`) or black (`pair[1]`) run, entry = first run << 10 | second run << 4
    /// | both codes' length; 0 = the next two codes are not two terminating codes within
    /// [`PAIR_BITS`] bits.
    pair: [Vec<u16>; 2],
    /// See [`PASS`], [`HORIZONTAL`], [`VERTICAL`]; code length 0 = no such code word.
    mode: [u8; 1 << MODE_BITS],
    /// The vertical modes of `mode` in three tables that the 2-D decode loop ([`modes`]) reads
    /// at the same index: the code length (0: not a vertical mode, or the start of a V0 string),
    /// a1 − b1 (−3 to 3), and where the search for the next b1 starts, as an offset from b1's
    /// index minus one: 0 for the VL modes (the change before b1), 2 for the others (the change
    /// after b1).
    vlen: [u8; 1 << MODE_BITS],
    vd: [i32; 1 << MODE_BITS],
    vfrom: [u8; 1 << MODE_BITS],
}

/// Bits of the two-run table index.
const PAIR_BITS: u32 = 12;

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let build = |black: bool, bits: u32| {
            let mut t = vec![0u16; 1 << bits];
            let runs = (0..64).chain((1..=40).map(|k| k * 64));
            for run in runs {
                let (code, len) = run_code(black, run);
                if len == 0 || len > bits {
                    continue;
                }
                let first = (code << (bits - len)) as usize;
                for e in &mut t[first..first + (1 << (bits - len))] {
                    *e = (run << 4 | len) as u16;
                }
            }
            t
        };
        let pair = |black: bool| {
            let mut t = vec![0u16; 1 << PAIR_BITS];
            for r1 in 0..64 {
                let (c1, l1) = run_code(black, r1);
                for r2 in 0..64 {
                    let (c2, l2) = run_code(!black, r2);
                    let len = l1 + l2;
                    if len > PAIR_BITS {
                        continue;
                    }
                    let code = c1 << l2 | c2;
                    let first = (code << (PAIR_BITS - len)) as usize;
                    for e in &mut t[first..first + (1 << (PAIR_BITS - len))] {
                        *e = (r1 << 10 | r2 << 4 | len) as u16;
                    }
                }
            }
            t
        };
        let mut mode = [0u8; 1 << MODE_BITS];
        let v = |d: u8| VERTICAL | (3 + d) << 3;
        let codes: [(u32, u32, u8); 9] = [
            (0b0001, 4, PASS),
            (0b001, 3, HORIZONTAL),
            (0b1, 1, v(0)),
            (0b011, 3, v(1)),
            (0b000011, 6, v(2)),
            (0b0000011, 7, v(3)),
            (0b010, 3, v(0).wrapping_sub(1 << 3)),
            (0b000010, 6, v(0).wrapping_sub(2 << 3)),
            (0b0000010, 7, v(0).wrapping_sub(3 << 3)),
        ];
        for (code, len, m) in codes {
            let first = (code << (MODE_BITS - len)) as usize;
            for e in &mut mode[first..first + (1 << (MODE_BITS - len))] {
                *e = m | len as u8;
            }
        }
        // A V0 string (the top `V0_STRING` bits all ones) is not taken as a vertical mode.
        for e in &mut mode[((1 << V0_STRING) - 1) << (MODE_BITS - V0_STRING)..] {
            *e &= !VERTICAL;
        }
        let vertical = |e: u8| e & VERTICAL != 0;
        let d = |e: u8| i32::from(e >> 3 & 15) - 3;
        Tables {
            vlen: mode.map(|e| if vertical(e) { e & LEN } else { 0 }),
            vd: mode.map(|e| if vertical(e) { d(e) } else { 0 }),
            vfrom: mode.map(|e| if vertical(e) && d(e) >= 0 { 2 } else { 0 }),
            white: build(false, WHITE_BITS),
            black: build(true, BLACK_BITS),
            pair: [pair(false), pair(true)],
            mode,
        }
    })
}

/// The 8 bytes at `i`, big-endian; bytes past the end of `data` read as zero.
#[inline(always)]
fn load(data: &[u8], i: usize) -> u64 {
    match data.get(i..i + 8) {
        Some(b) => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
        None => load_tail(data, i),
    }
}

/// [`load`] within 8 bytes of the end (once or twice per strip): out of line, so that the decode
/// loops keep their values in registers across it.
#[cold]
#[inline(never)]
fn load_tail(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(rest) = data.get(i..) {
        let n = rest.len().min(8);
        b[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(b)
}

/// MSB-first bit reader with a 64-bit buffer refilled without branches (whole bytes, keeping
/// 56 to 63 bits); reads past the end give zero bits (no code word is all zeros, so a decode
/// running off the end stops on an invalid code), and the position is checked against the end
/// of the data per row.
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    /// The next bits, MSB first; bits below the top `n` are the following stream bits or zero.
    buf: u64,
    /// Valid bits in `buf`.
    n: u32,
    /// Next byte of `data` to load (`8 * i - n` is the bit position).
    i: usize,
    /// Bits in `data`.
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut r = Reader {
            data,
            buf: 0,
            n: 0,
            i: 0,
            end: data.len() * 8,
        };
        r.refill();
        r
    }

    /// Top the buffer up to at least 56 bits.
    #[inline(always)]
    fn refill(&mut self) {
        self.buf |= load(self.data, self.i) >> self.n;
        self.i += ((63 - self.n) >> 3) as usize;
        self.n |= 56;
    }

    /// Drop `k` bits (at most `n`).
    #[inline(always)]
    fn consume(&mut self, k: u32) {
        self.buf <<= k;
        self.n -= k;
    }

    /// Bit position.
    #[inline(always)]
    fn pos(&self) -> usize {
        self.i * 8 - self.n as usize
    }

    /// Move to bit position `pos`.
    fn seek(&mut self, pos: usize) {
        self.i = pos >> 3;
        self.buf = 0;
        self.n = 0;
        self.refill();
        self.consume((pos & 7) as u32);
    }

    /// Skip fill bits and one EOL (eleven or more 0 bits then a 1, T.4 §4.1.2) if they come next;
    /// whether there was one.
    fn eol(&mut self) -> bool {
        let start = self.pos();
        let mut pos = start;
        loop {
            let p = (load(self.data, pos >> 3) << (pos & 7) >> 32) as u32;
            if p == 0 {
                if pos >= self.end {
                    return false;
                }
                pos += 32;
                continue;
            }
            let zeros = pos - start + p.leading_zeros() as usize;
            if zeros >= 11 {
                self.seek(pos + p.leading_zeros() as usize + 1);
                return true;
            }
            return false;
        }
    }

    /// One run length: make-up codes, then a terminating code (T.4 §4.1.1), at most `max`.
    /// Needs 13 bits in the buffer on entry.
    #[inline(always)]
    fn run(&mut self, t: &Tables, black: bool, max: i32) -> Result<i32, Unclean> {
        let mut total = 0i32;
        loop {
            let e = if black {
                t.black[(self.buf >> (64 - BLACK_BITS)) as usize]
            } else {
                t.white[(self.buf >> (64 - WHITE_BITS)) as usize]
            };
            let len = u32::from(e & 15);
            if len == 0 {
                return Err(Unclean);
            }
            self.consume(len);
            let r = i32::from(e >> 4);
            total += r;
            if total > max {
                return Err(Unclean);
            }
            if r < 64 {
                return Ok(total);
            }
            self.refill();
        }
    }
}

/// Widest row the fast path takes (positions fit an `i32` with room to spare).
const MAX_WIDTH: u32 = 1 << 20;

/// Leading entries of a row of changes, below any position: `changes[ib - 1]` exists for the
/// first b1 and the index parity is the colour (even index = change to black).
const HEAD: usize = 2;
/// Trailing copies of the width after a row's changes (b1 and b2 never run off).
const TAIL: usize = 4;
const _: () = assert!(TAIL >= 3, "the vertical step reads up to two past b1");
/// Leading V0 modes (1 bits) from which a string of V0 modes is copied from the reference row
/// rather than decoded one vertical mode at a time.
const V0_STRING: u32 = 3;
/// Reference changes copied at once for a string of V0 modes (whole, whatever the count used;
/// the row buffers have that much slack past their trailing widths).
const COPY: usize = 8;

/// Length of the change rows of the common widths (up to 4082 pixels), for which the 2-D decode
/// is compiled with the length as a constant.
const FIXED: usize = 4096;

/// A row of changing elements: `HEAD` sentinels, the changes, `TAIL` copies of the width, then
/// unused entries up to a power-of-two length of at least [`FIXED`] (see [`Changes::mask`]).
#[derive(Default)]
struct Changes {
    v: Vec<i32>,
    /// Index of the first trailing width (`HEAD` + number of changes).
    n: usize,
}

impl Changes {
    fn new(width: u32) -> Self {
        let len = (HEAD + width as usize + TAIL + COPY)
            .next_power_of_two()
            .max(FIXED);
        let mut v = vec![i32::MIN; len];
        v[HEAD..HEAD + TAIL].fill(width as i32);
        Changes { v, n: HEAD }
    }

    /// Append a changing element `x` (at or after the last one and `<= w`); one at the same
    /// place as the last cancels it (a zero-length run), one at `w` is no change. At most `w`
    /// changes are kept (strictly increasing, `< w`), so the buffer never overflows.
    #[inline(always)]
    fn push(&mut self, x: i32, w: i32) {
        if self.v[self.n - 1] == x {
            self.n -= 1;
        } else if x < w {
            self.v[self.n] = x;
            self.n += 1;
        }
    }

    /// `v.len() - 1`, a mask for indices into `v` (its length is a power of two).
    #[inline(always)]
    fn mask(&self) -> usize {
        self.v.len().wrapping_sub(1)
    }

    /// Close the row: the trailing widths.
    #[inline(always)]
    fn finish(&mut self, w: i32) {
        self.v[self.n..self.n + TAIL].fill(w);
    }
}

/// One T.4 1-D row (T.4 §4.1.1) into `cur`.
#[inline(always)]
fn mh_row(r: &mut Reader, t: &Tables, cur: &mut Changes, w: i32) -> Result<(), Unclean> {
    cur.n = HEAD;
    let mut pos = 0i32;
    while pos < w {
        // At a white run: two short runs in one look-up when they end before the row does.
        r.refill();
        let e = t.pair[0][(r.buf >> (64 - PAIR_BITS)) as usize];
        let a1 = pos + i32::from(e >> 10);
        let a2 = a1 + i32::from((e >> 4) & 63);
        if e != 0 && a1 < w {
            if a2 > w {
                return Err(Unclean);
            }
            r.consume(u32::from(e & 15));
            cur.push(a1, w);
            cur.push(a2, w);
            pos = a2;
            continue;
        }
        pos += r.run(t, false, w - pos)?;
        cur.push(pos, w);
        if pos >= w {
            break;
        }
        r.refill();
        pos += r.run(t, true, w - pos)?;
        cur.push(pos, w);
    }
    cur.finish(w);
    Ok(())
}

/// The two runs of a horizontal mode code (T.4 §4.2.1.3.2 c) from `start`, the first of colour
/// `black`: the two changing elements a1, a2.
#[inline(always)]
fn horizontal(
    r: &mut Reader,
    t: &Tables,
    black: bool,
    start: i32,
    w: i32,
) -> Result<(i32, i32), Unclean> {
    let e = t.pair[usize::from(black)][(r.buf >> (64 - PAIR_BITS)) as usize];
    if e != 0 {
        let a1 = start + i32::from(e >> 10);
        let a2 = a1 + i32::from((e >> 4) & 63);
        if a2 > w {
            return Err(Unclean);
        }
        r.consume(u32::from(e & 15));
        return Ok((a1, a2));
    }
    let a1 = start + r.run(t, black, w - start)?;
    r.refill();
    let a2 = a1 + r.run(t, !black, w - a1)?;
    Ok((a1, a2))
}

/// The bit buffer `buf` of a [`Reader`] with its `n` valid bits marked by a 1 bit right below
/// them (the bits below the marker zero): [`modes`] counts no bits, it only shifts, and the
/// marker's position tells how many bits are left.
#[inline(always)]
fn mark(buf: u64, n: u32) -> u64 {
    buf & !(u64::MAX >> n) | 1u64 << (63 - n)
}

/// [`mark`] undone: the buffer and its number of valid bits.
#[inline(always)]
fn unmark(buf: u64) -> (u64, u32) {
    (buf & buf.wrapping_sub(1), 63 - buf.trailing_zeros())
}

/// A marked buffer with fewer than 7 valid bits (a whole mode code may not be in it).
const LOW7: u64 = (1 << 57) - 1;

/// State of a 2-D row decode, between [`row_2d`] and [`modes`].
struct Row2d<'a> {
    r: Reader<'a>,
    /// b1's index minus one.
    base: usize,
    /// Index of the coding row's next change (`HEAD` + the changes so far).
    out: usize,
    a0: i32,
}

/// The vertical, pass and V0-string modes of a 2-D row from `st` on, until a horizontal mode
/// (left in the bit buffer for [`row_2d`]), an invalid code or the row's end (`st.a0 == w`).
/// Separate from [`row_2d`] so that its loop keeps every value in a register.
#[inline(never)]
fn modes<const N: usize>(
    t: &Tables,
    refl: &Changes,
    cv: &mut [i32],
    w: i32,
    st: &mut Row2d,
) -> Result<(), Unclean> {
    let m = if N > 0 { N - 1 } else { refl.mask() };
    let rv = &refl.v[..=m];
    let cv = &mut cv[..=m];
    let ends = refl.n;
    let mut r = st.r;
    let Row2d {
        mut base,
        mut out,
        mut a0,
        ..
    } = *st;
    r.refill();
    let mut buf = mark(r.buf, r.n);
    loop {
        let idx = (buf >> (64 - MODE_BITS)) as usize;
        let len = t.vlen[idx];
        if len != 0 {
            // VL3..VR3, V0 included, branch-free but for rare long searches. The next b1 has
            // the other colour: `lo + 1` (one step back for VL, forward otherwise) or two
            // further. All three reference changes are loaded at once from `base`, so the step
            // costs one load latency, not two in a row. `base >= HEAD - 1` (the change before b1
            // is the sentinel `i32::MIN` at `HEAD - 1`, never right of a1), and the reads stay
            // within the row's changes and trailing widths: a b1 at the trailing widths gives
            // a1 >= w (row end or error) unless a1 < b1. The check on `base` (never taken) is
            // what lets the compiler drop the bounds checks of the three reads.
            buf <<= len;
            let d = t.vd[idx];
            let k = usize::from(t.vfrom[idx] & 2);
            if base >= m - 4 {
                return Err(Unclean);
            }
            let lo = base + k;
            let (b1, c0, c2) = (rv[base + 1], rv[lo], rv[lo + 2]);
            let a1 = b1 + d;
            if a1 <= a0 {
                return Err(Unclean);
            }
            if a1 >= w {
                if a1 > w {
                    return Err(Unclean);
                }
                a0 = w;
                break;
            }
            cv[out & m] = a1;
            out += 1;
            a0 = a1;
            base = (lo + 2 * usize::from(c0 <= a0)).wrapping_sub(1);
            if c2 <= a0 {
                // Rare (VR2, VR3 over short reference runs): on in steps of two.
                while rv[(base + 1) & m] <= a0 {
                    base += 2;
                }
            }
        } else if buf >> (64 - V0_STRING) == (1 << V0_STRING) - 1 {
            // At least `V0_STRING` V0 modes (a1 = b1), as many in a row as the buffer shows (up
            // to `COPY`), while b1 is a change: the reference changes are copied as they are.
            // Shorter strings take the vertical path above (one branch less to mispredict where
            // V0, VL1 and VR1 come in no predictable order, as on dithered pages).
            let ib = base + 1;
            let valid = 63 - buf.trailing_zeros();
            let k = (buf.leading_ones().min(valid) as usize)
                .min(ends.saturating_sub(ib))
                .min(COPY);
            if k == 0 {
                // b1 is the end of the row.
                buf <<= 1;
                a0 = w;
                break;
            }
            cv[out..out + COPY].copy_from_slice(&rv[ib..ib + COPY]);
            out += k;
            base += k;
            a0 = rv[base & m];
            buf <<= k;
        } else if t.mode[idx] == PASS | 4 {
            buf <<= 4;
            base += 2;
            a0 = rv[base & m];
            if a0 >= w {
                break;
            }
        } else {
            break;
        }
        if buf & LOW7 == 0 {
            (r.buf, r.n) = unmark(buf);
            r.refill();
            buf = mark(r.buf, r.n);
        }
    }
    (r.buf, r.n) = unmark(buf);
    *st = Row2d { r, base, out, a0 };
    Ok(())
}

/// One 2-D row (T.4 §4.2.1.3, T.6 §2.2) into `cur` against `refl`: the modes other than
/// horizontal in [`modes`], the horizontal ones here.
///
/// The index of b1 (the first reference change right of a0 of the colour opposite to a0's) has
/// a0's colour as its parity (odd = black), and it only moves right except for one step back
/// after VL modes. Both rows are indexed through [`Changes::mask`]: the sentinels keep every
/// index below the buffer's length, and the mask lets the compiler see that without a bounds
/// check per access. `N` is the rows' length when it is [`FIXED`], or 0.
#[inline(never)]
fn row_2d<const N: usize>(
    reader: &mut Reader,
    t: &Tables,
    cur: &mut Changes,
    refl: &Changes,
    w: i32,
) -> Result<(), Unclean> {
    let m = if N > 0 { N - 1 } else { refl.mask() };
    let mut st = Row2d {
        r: *reader,
        base: HEAD - 1,
        out: HEAD,
        a0: -1,
    };
    loop {
        modes::<N>(t, refl, &mut cur.v, w, &mut st)?;
        if st.a0 >= w {
            break;
        }
        // What `modes` leaves is a horizontal mode or an invalid code.
        let r = &mut st.r;
        r.refill();
        if t.mode[(r.buf >> (64 - MODE_BITS)) as usize] != HORIZONTAL | 3 {
            return Err(Unclean);
        }
        r.consume(3);
        let ib = st.base + 1;
        let (a1, a2) = horizontal(r, t, ib & 1 == 1, st.a0.max(0), w)?;
        let cv = &mut cur.v[..=m];
        let rv = &refl.v[..=m];
        let mut n = st.out;
        for x in [a1, a2] {
            // `Changes::push` on the local count.
            if cv[(n - 1) & m] == x {
                n -= 1;
            } else if x < w {
                cv[n & m] = x;
                n += 1;
            }
        }
        st.out = n;
        st.a0 = a2;
        if a2 >= w {
            break;
        }
        while rv[(st.base + 1) & m] <= a2 {
            st.base += 2;
        }
    }
    let cv = &mut cur.v[..=m];
    let mut n = st.out;
    if cv[(n - 1) & m] == w {
        n -= 1;
    }
    cur.n = n;
    cur.finish(w);
    *reader = st.r;
    Ok(())
}

/// Decode `rows` rows of `width` pixels into `out` (`stride` bytes per row, zeroed by the caller;
/// 1 = black), laid out as `format` says. Succeeds only when every row decodes cleanly; on
/// [`Unclean`] `out` holds garbage and must be cleared before another decoder writes it.
pub(crate) fn decode(
    data: &[u8],
    out: &mut [u8],
    width: u32,
    stride: usize,
    rows: u32,
    format: Format,
) -> Result<(), Unclean> {
    if width == 0
        || width > MAX_WIDTH
        || stride * 8 < width as usize
        || out.len() < stride * rows as usize
    {
        return Err(Unclean);
    }
    if width > SCRATCH_MAX_WIDTH {
        return decode_rows(
            data,
            out,
            width,
            stride,
            rows,
            format,
            &mut Scratch::new(width),
        );
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let s = match &mut *s {
            Some(s) if s.width == width => s,
            slot => slot.insert(Scratch::new(width)),
        };
        decode_rows(data, out, width, stride, rows, format, s)
    })
}

/// The change rows and toggle words of one strip decode, kept per thread between strips of the
/// same width: a page is dozens of strips, and allocating and filling two rows of `width`
/// changes per strip cost more memory traffic than the page itself.
struct Scratch {
    width: u32,
    cur: Changes,
    refl: Changes,
    /// Two arrays of the row's words, zero between rows (see [`fill_row`]).
    toggles: Vec<u64>,
    /// One octet per pixel of the row's words, zero between rows (dense rows in [`fill_row`]).
    marks: Vec<u8>,
}

impl Scratch {
    fn new(width: u32) -> Self {
        Scratch {
            width,
            cur: Changes::new(width),
            refl: Changes::new(width),
            toggles: vec![0u64; 2 * (width as usize).div_ceil(64)],
            marks: vec![0u8; 64 * (width as usize).div_ceil(64)],
        }
    }
}

/// Widest row whose buffers are kept between strips (A3 at 400 dpi is 4864 pixels); wider rows
/// allocate their own, so one absurd file does not pin megabytes to a thread.
const SCRATCH_MAX_WIDTH: u32 = 8192;

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// [`decode`] with the buffers of `s` (any previous content; the reference row is reset to the
/// white row every strip starts from, TIFF 6.0 §10 and T.6 §2.2.1). The buffers are moved into
/// locals for the decode, so the compiler knows stores into a row cannot change its length.
fn decode_rows(
    data: &[u8],
    out: &mut [u8],
    width: u32,
    stride: usize,
    rows: u32,
    format: Format,
    s: &mut Scratch,
) -> Result<(), Unclean> {
    let mut cur = std::mem::take(&mut s.cur);
    let mut refl = std::mem::take(&mut s.refl);
    let mut toggles = std::mem::take(&mut s.toggles);
    let mut marks = std::mem::take(&mut s.marks);
    let res = decode_strip(
        data,
        out,
        width,
        stride,
        rows,
        format,
        (&mut cur, &mut refl, &mut toggles, &mut marks),
    );
    (s.cur, s.refl, s.toggles, s.marks) = (cur, refl, toggles, marks);
    res
}

#[inline(always)]
fn decode_strip(
    data: &[u8],
    out: &mut [u8],
    width: u32,
    stride: usize,
    rows: u32,
    format: Format,
    (cur, refl, toggles, marks): (&mut Changes, &mut Changes, &mut Vec<u64>, &mut Vec<u8>),
) -> Result<(), Unclean> {
    let Format {
        coding,
        eol,
        byte_aligned,
    } = format;
    let t = tables();
    let mut r = Reader::new(data);
    let w = width as i32;
    refl.n = HEAD;
    refl.finish(w);
    toggles.fill(0);
    marks.fill(0);
    for row in out.chunks_exact_mut(stride).take(rows as usize) {
        if byte_aligned {
            let p = r.pos().next_multiple_of(8);
            r.seek(p);
        }
        let one_d = match coding {
            Coding::Mmr => false,
            Coding::Mh => {
                if eol {
                    r.eol();
                }
                true
            }
            Coding::Mr => {
                if !r.eol() {
                    return Err(Unclean);
                }
                let tag = r.buf >> 63 == 1;
                r.consume(1);
                tag
            }
        };
        if one_d {
            mh_row(&mut r, t, cur, w)?;
        } else {
            if cur.v.len() == FIXED && refl.v.len() == FIXED {
                row_2d::<FIXED>(&mut r, t, cur, refl, w)?;
            } else {
                row_2d::<0>(&mut r, t, cur, refl, w)?;
            }
        }
        if r.pos() > r.end {
            return Err(Unclean);
        }
        fill_row(row, &cur.v[HEAD..cur.n], toggles, marks, width);
        std::mem::swap(cur, refl);
    }
    Ok(())
}

/// One T.4 1-D line (T.4 §4.1.1) from a stream holding that line only (its bits between two
/// EOLs), decoded leniently the way libtiff's `Fax3Decode1D` does (`EXPAND1D` and
/// `CLEANUP_RUNS` in `tif_fax3.h`), so that a damaged line keeps what was read: runs are
/// decoded until the line is `width` pixels or a code word is invalid (which includes the EOL's
/// zeros or the end of the data, a line cut short); a pending make-up code counts as a run; a
/// line that ran past `width` loses whole runs from its end until it fits; what is missing is
/// white. Returns the line's changing elements (increasing, `< width`; even index = change to
/// black) and whether the line was exactly `width` pixels of valid code words.
///
/// Bounded: every code word consumes at least one bit and the zeros past the end of `data` are
/// no code word, so at most `8 × data.len()` code words are read.
pub(crate) fn mh_line_lenient(data: &[u8], width: u32) -> (Vec<u32>, bool) {
    let t = tables();
    let mut r = Reader::new(data);
    let w = i64::from(width);
    let mut runs: Vec<i64> = Vec::new();
    let mut a0 = 0i64;
    let mut black = false;
    let mut clean = true;
    'line: while a0 < w {
        let mut run = 0i64;
        loop {
            r.refill();
            let e = if black {
                t.black[(r.buf >> (64 - BLACK_BITS)) as usize]
            } else {
                t.white[(r.buf >> (64 - WHITE_BITS)) as usize]
            };
            let len = u32::from(e & 15);
            if len == 0 {
                if run > 0 {
                    runs.push(run);
                    a0 += run;
                }
                clean = false;
                break 'line;
            }
            r.consume(len);
            let v = i64::from(e >> 4);
            run += v;
            if v < 64 {
                break;
            }
        }
        runs.push(run);
        a0 += run;
        black = !black;
    }
    if a0 != w {
        clean = false;
        while a0 > w {
            match runs.pop() {
                Some(run) => a0 -= run,
                None => break,
            }
        }
        if a0 < w {
            if runs.len() % 2 == 1 {
                runs.push(0);
            }
            runs.push(w - a0.max(0));
        }
    }
    let mut changes: Vec<u32> = Vec::new();
    let mut x = 0i64;
    for run in runs {
        x += run;
        if changes.last().is_some_and(|&l| i64::from(l) == x) {
            changes.pop();
        } else if (0..w).contains(&x) {
            changes.push(x as u32);
        }
    }
    (changes, clean)
}

/// Pixels per change above which a row is marked with [`mark_dense`].
const DENSE: usize = 8;

/// Mark `changes` in the words `even` (changes at even indices) and `odd` (the others).
fn mark_sparse(changes: &[i32], even: &mut [u64], odd: &mut [u64]) {
    let (mut acc0, mut acc1) = (0u64, 0u64);
    let (mut last0, mut last1) = (usize::MAX, usize::MAX);
    let mut pairs = changes.chunks_exact(2);
    for p in &mut pairs {
        let (x0, x1) = (p[0] as u32, p[1] as u32);
        let (w0, w1) = ((x0 / 64) as usize, (x1 / 64) as usize);
        acc0 = if w0 == last0 { acc0 } else { 0 } ^ (1u64 << (63 - x0 % 64));
        acc1 = if w1 == last1 { acc1 } else { 0 } ^ (1u64 << (63 - x1 % 64));
        (last0, last1) = (w0, w1);
        if let Some(t) = even.get_mut(w0) {
            *t = acc0;
        }
        if let Some(t) = odd.get_mut(w1) {
            *t = acc1;
        }
    }
    if let [x] = *pairs.remainder() {
        let x = x as u32;
        let wi = (x / 64) as usize;
        acc0 = if wi == last0 { acc0 } else { 0 } ^ (1u64 << (63 - x % 64));
        if let Some(t) = even.get_mut(wi) {
            *t = acc0;
        }
    }
}

/// Mark `changes` in `words` through one octet per pixel: each change sets its octet in
/// `marks` to 1 (plain stores: the changes are strictly increasing, so each octet is set at
/// most once and nothing is read back), then every 8 octets (each 0 or 1)
/// become one octet of bits with one multiplication: with octet `i` at bit `8i` of a
/// little-endian load, `x * 0x8040201008040201` puts it at bit `63 - i` (the factor's bit `9j`
/// meets octet `i` at `8i + 9j`, which is in the top octet only for `j = 7 - i`; all other
/// products land on distinct lower bits, so nothing carries), so the top octet holds the 8
/// pixels first-pixel-first. `marks` (64 octets per word of `words`) is zero on entry and on
/// return; `words` is zero on entry.
fn mark_dense(changes: &[i32], words: &mut [u64], marks: &mut [u8]) {
    for &x in changes {
        if let Some(m) = marks.get_mut(x as u32 as usize) {
            *m = 1;
        }
    }
    for (w, octets) in words.iter_mut().zip(marks.chunks_exact_mut(64)) {
        let mut v = 0u64;
        for eight in octets.chunks_exact(8) {
            let x = u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]));
            v = v << 8 | x.wrapping_mul(0x8040_2010_0804_0201) >> 56;
        }
        *w = v;
        octets.fill(0);
    }
}

/// Fill a packed row (1 = black) from its changing elements (increasing, all
/// `< 64 × toggles.len() / 2`): mark each change in `toggles` (zero on entry and on return), then
/// a prefix XOR along each 64-bit word, carried from word to word, turns the marks into runs.
/// Rows with more than one change per [`DENSE`] pixels (dithered images) are marked through
/// `marks` instead ([`mark_dense`]).
///
/// `toggles` is two arrays of the row's words: the changes at even indices (starts of black runs)
/// are marked in the first, those at odd indices in the second, each word's marks gathered in a
/// register and stored whole. That gives two independent dependency chains of one
/// compare-select and one bit flip per change instead of one chain through all of them (a
/// dithered page has about 1300 changes per row). Not inlined: in the decode loop it spilled
/// the loop's pointers to the stack.
///
/// `row` is zero on entry ([`decode`]'s output is zeroed by its caller), so a row without changes
/// (all white: half the rows of a text page) is left as it is.
#[inline(never)]
fn fill_row(row: &mut [u8], changes: &[i32], toggles: &mut [u64], marks: &mut [u8], width: u32) {
    if changes.is_empty() {
        return;
    }
    let (even, odd) = toggles.split_at_mut(toggles.len() / 2);
    if changes.len() * DENSE > width as usize {
        mark_dense(changes, even, marks);
    } else {
        mark_sparse(changes, even, odd);
    }
    let mut carry = 0u64; // all ones when the word before ended black
    let mut word = |(t, u): (&mut u64, &mut u64)| {
        let mut v = *t ^ *u;
        (*t, *u) = (0, 0);
        v ^= v >> 1;
        v ^= v >> 2;
        v ^= v >> 4;
        v ^= v >> 8;
        v ^= v >> 16;
        v ^= v >> 32;
        v ^= carry;
        carry = 0u64.wrapping_sub(v & 1);
        v.to_be_bytes()
    };
    // Whole words as fixed-size stores, then the row's last partial word.
    let mut words = row.chunks_exact_mut(8);
    let mut ts = even.iter_mut().zip(odd.iter_mut());
    for (out, t) in (&mut words).zip(&mut ts) {
        out.copy_from_slice(&word(t));
    }
    let tail = words.into_remainder();
    if let (false, Some(t)) = (tail.is_empty(), ts.next()) {
        let n = tail.len();
        tail.copy_from_slice(&word(t)[..n]);
    }
    // Runs that end black run on into the padding bits: clear them.
    let full = (width / 8) as usize;
    if width % 8 != 0 {
        if let Some(last) = row.get_mut(full) {
            *last &= 0xFF << (8 - width % 8);
        }
    }
    if let Some(rest) = row.get_mut(full + usize::from(width % 8 != 0)..) {
        rest.fill(0);
    }
}
