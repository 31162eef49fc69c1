//! Table-driven T.4 (MH, MR) and T.6 (MMR) decoder for clean strips.
//!
//! The fast path of [`super::read`]: code words are looked up in tables indexed by the next 12
//! (white runs), 13 (black runs) or 7 (2-D modes) bits of a 64-bit window, and each row is kept
//! as its changing elements (T.4 §4.2.1.3.1), which are both the next row's reference line and
//! what the row's black runs are filled from. Anything unusual — an invalid or unsupported code
//! word (T.4 extensions, uncompressed mode), a run past the row, a missing EOL in 2-D data, data
//! ending before the last row — is an error, and the caller decodes the strip again with the
//! general decoder (`hayro-ccitt`), so this path only changes speed, never what is decoded.
//!
//! Bounded: every mode and code word consumes at least one bit, positions on a row only move
//! right, reading stops once the bit position passes the end of the data, and at most `rows`
//! rows are decoded.

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

/// 2-D modes (T.4 §4.2.1.3.2, Table 4).
const PASS: u8 = 1;
const HORIZONTAL: u8 = 2;
/// Vertical modes are `V0 + 3 + (a1 - b1)`, i.e. 4..=10 for VL3..VR3.
const V0: u8 = 7;

struct Tables {
    /// Entry = run length << 4 | code length; code length 0 = no such code word.
    white: Vec<u16>,
    black: Vec<u16>,
    /// Entry = mode << 4 | code length.
    mode: [u8; 1 << MODE_BITS],
}

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
        let mut mode = [0u8; 1 << MODE_BITS];
        let codes: [(u32, u32, u8); 9] = [
            (0b0001, 4, PASS),
            (0b001, 3, HORIZONTAL),
            (0b1, 1, V0),
            (0b011, 3, V0 + 1),
            (0b000011, 6, V0 + 2),
            (0b0000011, 7, V0 + 3),
            (0b010, 3, V0 - 1),
            (0b000010, 6, V0 - 2),
            (0b0000010, 7, V0 - 3),
        ];
        for (code, len, m) in codes {
            let first = (code << (MODE_BITS - len)) as usize;
            for e in &mut mode[first..first + (1 << (MODE_BITS - len))] {
                *e = m << 4 | len as u8;
            }
        }
        Tables {
            white: build(false, WHITE_BITS),
            black: build(true, BLACK_BITS),
            mode,
        }
    })
}

/// MSB-first bit reader; reads past the end give zero bits (no code word is all zeros, so a
/// decode running off the end stops on an invalid code), and `pos > end` is checked per row.
struct Reader<'a> {
    data: &'a [u8],
    /// Bit position.
    pos: usize,
    /// Bits in `data`.
    end: usize,
}

impl Reader<'_> {
    /// The next 32 bits, MSB first.
    #[inline(always)]
    fn peek(&self) -> u32 {
        let i = self.pos >> 3;
        let w = match self.data.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
            None => {
                let mut b = [0u8; 8];
                if let Some(rest) = self.data.get(i..) {
                    b[..rest.len()].copy_from_slice(rest);
                }
                u64::from_be_bytes(b)
            }
        };
        ((w << (self.pos & 7)) >> 32) as u32
    }

    /// Skip fill bits and one EOL (eleven or more 0 bits then a 1, T.4 §4.1.2) if they come next;
    /// whether there was one.
    fn eol(&mut self) -> bool {
        let start = self.pos;
        loop {
            let p = self.peek();
            if p == 0 {
                if self.pos >= self.end {
                    self.pos = start;
                    return false;
                }
                self.pos += 32;
                continue;
            }
            let zeros = self.pos - start + p.leading_zeros() as usize;
            if zeros >= 11 {
                self.pos += p.leading_zeros() as usize + 1;
                return true;
            }
            self.pos = start;
            return false;
        }
    }

    /// One run length: make-up codes, then a terminating code (T.4 §4.1.1), at most `max`.
    #[inline(always)]
    fn run(&mut self, t: &Tables, black: bool, max: u32) -> Result<u32, Unclean> {
        let mut total = 0u32;
        loop {
            let p = self.peek();
            let e = if black {
                t.black[(p >> (32 - BLACK_BITS)) as usize]
            } else {
                t.white[(p >> (32 - WHITE_BITS)) as usize]
            };
            let len = u32::from(e & 15);
            if len == 0 {
                return Err(Unclean);
            }
            self.pos += len as usize;
            let r = u32::from(e >> 4);
            total += r;
            if total > max {
                return Err(Unclean);
            }
            if r < 64 {
                return Ok(total);
            }
        }
    }
}

/// Append a changing element; one at the same place as the last cancels it (a zero-length run).
#[inline(always)]
fn push_change(cur: &mut Vec<u32>, x: u32, w: u32) -> Result<(), Unclean> {
    match cur.last() {
        Some(&l) if x < l => Err(Unclean),
        Some(&l) if x == l => {
            cur.pop();
            Ok(())
        }
        _ => {
            if x < w {
                cur.push(x);
            }
            Ok(())
        }
    }
}

/// One T.4 1-D row (T.4 §4.1.1) into `cur`.
fn mh_row(r: &mut Reader, t: &Tables, cur: &mut Vec<u32>, w: u32) -> Result<(), Unclean> {
    cur.clear();
    let mut pos = 0u32;
    let mut black = false;
    while pos < w {
        pos += r.run(t, black, w - pos)?;
        push_change(cur, pos, w)?;
        black = !black;
    }
    Ok(())
}

/// One 2-D row (T.4 §4.2.1.3, T.6 §2.2) into `cur` against `refl` (reference changes followed by
/// at least three copies of `w`).
fn row_2d(
    r: &mut Reader,
    t: &Tables,
    cur: &mut Vec<u32>,
    refl: &[u32],
    w: u32,
) -> Result<(), Unclean> {
    cur.clear();
    let mut a0: i64 = -1;
    let mut black = false;
    let mut ib = 0usize;
    let wi = i64::from(w);
    while a0 < wi {
        // b1: first reference change right of a0 of the colour opposite to a0's (even index =
        // change to black); b2 the one after it.
        while ib < refl.len() && i64::from(refl[ib]) <= a0 {
            ib += 1;
        }
        let j = ib + usize::from((ib & 1 == 1) != black);
        let (Some(&b1), Some(&b2)) = (refl.get(j), refl.get(j + 1)) else {
            return Err(Unclean);
        };
        let e = t.mode[(r.peek() >> (32 - MODE_BITS)) as usize];
        let len = e & 15;
        if len == 0 {
            return Err(Unclean);
        }
        r.pos += usize::from(len);
        match e >> 4 {
            PASS => a0 = i64::from(b2),
            HORIZONTAL => {
                let start = a0.max(0) as u32;
                let r1 = r.run(t, black, w - start)?;
                let a1 = start + r1;
                let r2 = r.run(t, !black, w - a1)?;
                push_change(cur, a1, w)?;
                push_change(cur, a1 + r2, w)?;
                a0 = i64::from(a1 + r2);
            }
            v => {
                let a1 = i64::from(b1) + i64::from(v) - i64::from(V0);
                if a1 <= a0 || a1 > wi {
                    return Err(Unclean);
                }
                push_change(cur, a1 as u32, w)?;
                black = !black;
                a0 = a1;
            }
        }
        if r.pos > r.end {
            return Err(Unclean);
        }
    }
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
    let Format {
        coding,
        eol,
        byte_aligned,
    } = format;
    if width == 0 || stride * 8 < width as usize || out.len() < stride * rows as usize {
        return Err(Unclean);
    }
    let t = tables();
    let mut r = Reader {
        data,
        pos: 0,
        end: data.len() * 8,
    };
    let cap = (width as usize + 4).min(4096);
    let mut cur: Vec<u32> = Vec::with_capacity(cap);
    let mut refl: Vec<u32> = Vec::with_capacity(cap);
    refl.extend([width; 3]);
    let mut toggles = vec![0u64; (width as usize).div_ceil(64)];
    for row in out.chunks_exact_mut(stride).take(rows as usize) {
        if byte_aligned {
            r.pos = r.pos.next_multiple_of(8);
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
                let tag = r.peek() >> 31 == 1;
                r.pos += 1;
                tag
            }
        };
        if one_d {
            mh_row(&mut r, t, &mut cur, width)?;
        } else {
            row_2d(&mut r, t, &mut cur, &refl, width)?;
        }
        if r.pos > r.end {
            return Err(Unclean);
        }
        fill_row(row, &cur, &mut toggles, width);
        std::mem::swap(&mut cur, &mut refl);
        refl.extend([width; 3]);
    }
    Ok(())
}

/// Fill a packed row (1 = black) from its changing elements (all `< 64 × toggles.len()`):
/// mark each change in `toggles` (zero on entry and on return), then a prefix XOR along each
/// 64-bit word, carried from word to word, turns the marks into runs.
fn fill_row(row: &mut [u8], changes: &[u32], toggles: &mut [u64], width: u32) {
    for &x in changes {
        if let Some(t) = toggles.get_mut((x / 64) as usize) {
            *t ^= 1u64 << (63 - x % 64);
        }
    }
    let mut carry = 0u64; // all ones when the word before ended black
    for (t, out) in toggles.iter_mut().zip(row.chunks_mut(8)) {
        let mut v = *t;
        *t = 0;
        v ^= v >> 1;
        v ^= v >> 2;
        v ^= v >> 4;
        v ^= v >> 8;
        v ^= v >> 16;
        v ^= v >> 32;
        v ^= carry;
        carry = 0u64.wrapping_sub(v & 1);
        let b = v.to_be_bytes();
        out.copy_from_slice(&b[..out.len()]);
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
