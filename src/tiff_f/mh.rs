//! T.4 one-dimensional (MH), T.4 two-dimensional (MR) and T.6 (MMR) encoders, on changing
//! elements (T.4 §4.2.1.3.1) and the `fax` crate's code tables (T.4 Tables 2 and 3).

use super::bits::{changes, for_each_change, BitOut, RowBits};
use super::ImageError;
use fax::maps;
use std::sync::OnceLock;

/// EOL: 000000000001 (T.4 §4.1.2).
const EOL: (u32, u32) = (1, 12);

/// A code word: (bits, length in bits).
type Code = (u32, u32);

/// Run-length code tables for one colour: terminating codes 0..=63 and make-up codes
/// 64..=2560 in steps of 64 (index `n / 64`), T.4 §4.1.1 Tables 2 and 3.
/// Runs with a single table entry: 0..=2560 + 63.
const FULL_RUNS: usize = 2624;

struct RunCodes {
    term: [Code; 64],
    makeup: [Code; 41],
    /// The whole code for every run 0..=2623: make-up code (if any) then terminating code,
    /// concatenated (at most 13 + 12 = 25 bits), so that a run is one bit-writer call; packed
    /// as `bits << 5 | length` to halve the table.
    full: [u32; FULL_RUNS],
}

struct Tables {
    white: RunCodes,
    black: RunCodes,
    /// `white.full` at 0 and `black.full` at [`BOTH_HALF`], for [`put_mh_row_bits`].
    both: Box<[u32; 2 * BOTH_HALF]>,
}

/// Offset of the black codes in [`Tables::both`] (a power of two above [`FULL_RUNS`]).
const BOTH_HALF: usize = 4096;
const _: () = assert!(BOTH_HALF >= FULL_RUNS && BOTH_HALF.is_power_of_two());

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let build = |enc: fn(u16) -> Option<fax::Bits>| {
            let mut t = RunCodes {
                term: [(0, 0); 64],
                makeup: [(0, 0); 41],
                full: [0; FULL_RUNS],
            };
            let conv =
                |b: Option<fax::Bits>| b.map_or((0, 0), |b| (u32::from(b.data), u32::from(b.len)));
            for n in 0..64u16 {
                t.term[n as usize] = conv(enc(n));
            }
            for k in 1..41u16 {
                t.makeup[k as usize] = conv(enc(k * 64));
            }
            for (n, e) in t.full.iter_mut().enumerate() {
                let (tc, tl) = t.term[n % 64];
                *e = if n < 64 {
                    (tc << 5) | tl
                } else {
                    let (mc, ml) = t.makeup[n / 64];
                    (((mc << tl) | tc) << 5) | (ml + tl)
                };
            }
            t
        };
        let (white, black) = (build(maps::white::encode), build(maps::black::encode));
        let mut both = Box::new([0u32; 2 * BOTH_HALF]);
        both[..FULL_RUNS].copy_from_slice(&white.full);
        both[BOTH_HALF..BOTH_HALF + FULL_RUNS].copy_from_slice(&black.full);
        Tables { white, black, both }
    })
}

/// The single T.4 code word (bits, length) for a terminating run (0..=63) or a make-up run
/// (a multiple of 64 up to 2560) of white or black (T.4 §4.1.1 Tables 2 and 3); (0, 0) for
/// other lengths.
pub(crate) fn run_code(black: bool, run: u32) -> (u32, u32) {
    let t = tables();
    let c = if black { &t.black } else { &t.white };
    match run {
        0..=63 => c.term[run as usize],
        64..=2560 if run % 64 == 0 => c.makeup[(run / 64) as usize],
        _ => (0, 0),
    }
}

fn check(data: &[u8], width: u32, height: u32) -> Result<usize, ImageError> {
    let stride = (width as usize).div_ceil(8);
    let need = stride.checked_mul(height as usize);
    if width == 0 || need != Some(data.len()) {
        return Err(ImageError::Corrupt(format!(
            "bitmap of {width}x{height} pixels needs {stride} bytes per row, got {} bytes in all",
            data.len()
        )));
    }
    Ok(stride)
}

/// Write one run with make-up codes as needed (T.4 §4.1.1: runs over 2560 repeat the 2560 code).
/// Everything inline (no call taking the writer), so that the writer's state stays in
/// registers.
#[inline(always)]
fn put_run(out: &mut RowBits, t: &RunCodes, n: u32) {
    let full = &t.full[..];
    let e = match full.get(n as usize) {
        Some(&e) => e,
        None => {
            // Over 2623 pixels: 2560 make-up codes, then the rest.
            let (c, l) = t.makeup[40];
            let mut n = n;
            while n > 2560 + 63 {
                out.put(c, l);
                n -= 2560;
            }
            full.get(n as usize).copied().unwrap_or(0)
        }
    };
    out.put_clean(e >> 5, e & 31);
}

/// One MH-coded row straight from its packed bits (T.4 §4.1.1): changing elements are found
/// and coded in one pass, without a changes vector. `width` ≤ `row.len() * 8`.
///
/// Written out for the common case (runs of at most 2623 pixels, [`FULL_RUNS`]) with the
/// writer's state in locals: the colour is an offset into one table of both colours'
/// codes, so the loop has no select and keeps its values in registers.
#[inline(always)]
fn put_mh_row_bits(out: &mut RowBits, row: &[u8], width: u32) {
    let t = tables();
    let both = &t.both;
    let mut off = 0usize;
    let mut pos = 0u32;
    let run = |out: &mut RowBits, n: u32, off: usize| {
        if n < FULL_RUNS as u32 {
            let e = both[(off | n as usize) & (2 * BOTH_HALF - 1)];
            out.put_clean(e >> 5, e & 31);
        } else {
            put_run(out, if off != 0 { &t.black } else { &t.white }, n);
        }
    };
    for_each_change(row, width, |c| {
        run(out, c - pos, off);
        off ^= BOTH_HALF;
        pos = c;
    });
    run(out, width - pos, off);
}

/// Bytes one coded row can take at most, with its EOL and tag bit: every run code is at most
/// 25 bits (plus a 12-bit 2560 make-up code per further 2560 pixels), a 2-D row codes at most
/// one pass or vertical code per changing element of either line and a horizontal code per
/// two; 8 bytes per pixel of width covers all of it.
fn row_bound(width: u32) -> usize {
    8 * (width as usize + 2) + 16
}

/// One MH-coded row from its changing elements (T.4 §4.1.1).
#[inline(always)]
fn put_mh_row(out: &mut RowBits, ch: &[u32], width: u32) {
    let t = tables();
    let mut pos = 0;
    for (i, &c) in ch.iter().enumerate() {
        let tab = if i % 2 == 0 { &t.white } else { &t.black };
        put_run(out, tab, c - pos);
        pos = c;
    }
    let tab = if ch.len() % 2 == 0 {
        &t.white
    } else {
        &t.black
    };
    put_run(out, tab, width - pos);
}

/// One 2-D coded row (T.4 §4.2.1.3, the same as T.6 §2.2): `cur` and `refl` are the changing
/// elements of the coding and the reference line.
#[inline(always)]
fn put_2d_row(out: &mut RowBits, cur: &[u32], refl: &[u32], width: u32) {
    let t = tables();
    let w = width as i64;
    let mut a0: i64 = -1;
    let mut black = false;
    let (mut ia, mut ib) = (0usize, 0usize);
    loop {
        // a1: first changing element on the coding line right of a0.
        while ia < cur.len() && i64::from(cur[ia]) <= a0 {
            ia += 1;
        }
        let a1 = cur.get(ia).map_or(w, |&v| i64::from(v));
        // b1: first changing element on the reference line right of a0 and of the opposite
        // colour to a0's (index parity: even = change to black).
        // `ib` only moves past elements left of a0 (a0 never decreases); the parity step is
        // taken afresh each time, since a0's colour changes.
        while ib < refl.len() && i64::from(refl[ib]) <= a0 {
            ib += 1;
        }
        let j = ib + usize::from((ib % 2 == 1) != black);
        let b1 = refl.get(j).map_or(w, |&v| i64::from(v));
        let b2 = refl.get(j + 1).map_or(w, |&v| i64::from(v));
        if b2 < a1 {
            out.put(0b0001, 4); // pass mode
            a0 = b2;
        } else if (a1 - b1).abs() <= 3 {
            // Vertical modes VL3..V0..VR3 (T.4 Table 4), by a1 - b1 + 3: one look-up, no
            // seven-way branch.
            const VERTICAL: [(u32, u32); 7] = [
                (0b0000010, 7),
                (0b000010, 6),
                (0b010, 3),
                (1, 1),
                (0b011, 3),
                (0b000011, 6),
                (0b0000011, 7),
            ];
            let (c, l) = VERTICAL[(a1 - b1 + 3) as usize];
            out.put(c, l);
            a0 = a1;
            black = !black;
        } else {
            let a2 = cur.get(ia + 1).map_or(w, |&v| i64::from(v));
            out.put(0b001, 3);
            let (first, second) = if black {
                (&t.black, &t.white)
            } else {
                (&t.white, &t.black)
            };
            put_run(out, first, (a1 - a0.max(0)) as u32);
            put_run(out, second, (a2 - a1) as u32);
            a0 = a2;
        }
        if a0 >= w {
            return;
        }
    }
}

/// T.4 §4.1 Modified Huffman: `height` rows of packed MSB-first bits (1 = black), `width` pixels
/// each. Every row is preceded by an EOL padded with fill bits so that the EOL ends on a byte
/// boundary (TIFF T4Options bit 2); no RTC. Returns the encoded bytes.
///
/// Errors: [`ImageError::Corrupt`] when `data` is not `height × ceil(width / 8)` bytes or width is 0.
pub fn encode_mh(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let mut out = BitOut::with_capacity(data.len() / 8 + 64);
    let bound = row_bound(width);
    for row in data.chunks(stride) {
        out.row(bound, |w| {
            w.fill_and_eol();
            put_mh_row_bits(w, row, width);
        });
    }
    Ok(out.finish())
}

/// T.4 §4.2 Modified READ with parameter `k` (2 for standard, 4 for fine resolution; T.4 §4.2.1):
/// each row is preceded by a byte-aligned EOL and a tag bit (1 = 1-D row, 0 = 2-D row); every
/// `k`-th row starting with the first is 1-D. TIFF Compression 3 with T4Options 5. No RTC.
///
/// Errors: as [`encode_mh`]; `k` of 0 is treated as 1.
pub fn encode_mr(data: &[u8], width: u32, height: u32, k: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let k = k.max(1) as usize;
    let mut out = BitOut::with_capacity(data.len() / 8 + 64);
    let (mut cur, mut refl) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let bound = row_bound(width);
    for (i, row) in data.chunks(stride).enumerate() {
        let one_d = i % k == 0;
        changes(row, width, &mut cur);
        out.row(bound, |w| {
            w.fill_and_eol();
            w.put(u32::from(one_d), 1);
            if one_d {
                put_mh_row(w, &cur, width);
            } else {
                put_2d_row(w, &cur, &refl, width);
            }
        });
        std::mem::swap(&mut cur, &mut refl);
    }
    Ok(out.finish())
}

/// T.6 Modified Modified READ (TIFF Compression 4, T6Options 0): 2-D rows against an imaginary
/// white first reference line, no EOLs, ending with EOFB (two EOLs, T.6 §2.4) and zero bits to
/// the byte boundary.
///
/// Errors: as [`encode_mh`].
pub fn encode_mmr(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let mut out = BitOut::with_capacity(data.len() / 12 + 64);
    let (mut cur, mut refl) = (Vec::with_capacity(64), Vec::new());
    let bound = row_bound(width);
    for row in data.chunks(stride) {
        changes(row, width, &mut cur);
        out.row(bound, |w| put_2d_row(w, &cur, &refl, width));
        std::mem::swap(&mut cur, &mut refl);
    }
    out.put(EOL.0, EOL.1);
    out.put(EOL.0, EOL.1);
    Ok(out.finish())
}
