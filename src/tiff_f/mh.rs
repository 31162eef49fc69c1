//! T.4 one-dimensional (MH) and two-dimensional (MR) encoders on the `fax` crate's code tables,
//! and T.6 (MMR) through `fax`'s encoder.

use super::bits::{row_pixels, runs, BitOut};
use super::ImageError;
use fax::{maps, Bits, Color};
use std::cell::RefCell;
use std::rc::Rc;

const EOL: Bits = Bits { data: 1, len: 12 };

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

/// Write one run with make-up codes as needed (T.4 §4.1.1, Tables 2 and 3).
fn put_run(out: &mut BitOut, black: bool, mut n: u32) -> Result<(), ImageError> {
    let code = |v: u32| {
        let v = u16::try_from(v).ok()?;
        if black {
            maps::black::encode(v)
        } else {
            maps::white::encode(v)
        }
    };
    let run = n;
    let missing = || ImageError::Corrupt(format!("no T.4 code for run of {run} pixels"));
    while n >= 2560 {
        out.put(code(2560).ok_or_else(missing)?);
        n -= 2560;
    }
    if n >= 64 {
        out.put(code(n & !63).ok_or_else(missing)?);
        n &= 63;
    }
    out.put(code(n).ok_or_else(missing)?);
    Ok(())
}

fn put_mh_row(out: &mut BitOut, row: &[u8], width: u32) -> Result<(), ImageError> {
    for (i, run) in runs(row, width).into_iter().enumerate() {
        put_run(out, i % 2 == 1, run)?;
    }
    Ok(())
}

/// T.4 §4.1 Modified Huffman: `height` rows of packed MSB-first bits (1 = black), `width` pixels
/// each. Every row is preceded by an EOL padded with fill bits so that the EOL ends on a byte
/// boundary (TIFF T4Options bit 2); no RTC. Returns the encoded bytes.
///
/// Errors: [`ImageError::Corrupt`] when `data` is not `height × ceil(width / 8)` bytes or width is 0.
pub fn encode_mh(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let mut out = BitOut::new();
    for row in data.chunks(stride) {
        out.fill_for_eol();
        out.put(EOL);
        put_mh_row(&mut out, row, width)?;
    }
    Ok(out.finish())
}

/// Bit sink for `fax::encoder::Encoder` that can be muted (used to feed it 1-D reference rows).
#[derive(Clone)]
struct Shared(Rc<RefCell<(BitOut, bool)>>);

impl fax::BitWriter for Shared {
    type Error = std::convert::Infallible;
    fn write(&mut self, bits: Bits) -> Result<(), Self::Error> {
        let mut inner = self.0.borrow_mut();
        if !inner.1 {
            inner.0.put(bits);
        }
        Ok(())
    }
}

fn colours(row: &[u8], width: u32) -> impl Iterator<Item = Color> + '_ {
    row_pixels(row, width).map(|b| if b { Color::Black } else { Color::White })
}

/// T.4 §4.2 Modified READ with parameter `k` (2 for standard, 4 for fine resolution; T.4 §4.2.1):
/// each row is preceded by a byte-aligned EOL and a tag bit (1 = 1-D row, 0 = 2-D row); every
/// `k`-th row starting with the first is 1-D. TIFF Compression 3 with T4Options 5. No RTC.
///
/// Errors: as [`encode_mh`]; `k` of 0 is treated as 1.
pub fn encode_mr(data: &[u8], width: u32, height: u32, k: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let k = k.max(1) as usize;
    let shared = Shared(Rc::new(RefCell::new((BitOut::new(), false))));
    let mut enc = fax::encoder::Encoder::new(shared.clone());
    for (i, row) in data.chunks(stride).enumerate() {
        let one_d = i % k == 0;
        {
            let mut inner = shared.0.borrow_mut();
            inner.0.fill_for_eol();
            inner.0.put(EOL);
            inner.0.put(Bits {
                data: u16::from(one_d),
                len: 1,
            });
            inner.1 = one_d;
        }
        // Always run the 2-D encoder so that its reference row is this row; muted for 1-D rows.
        let _ = enc.encode_line(colours(row, width), width);
        if one_d {
            let mut inner = shared.0.borrow_mut();
            inner.1 = false;
            put_mh_row(&mut inner.0, row, width)?;
        }
    }
    drop(enc);
    let cell = Rc::try_unwrap(shared.0)
        .map_err(|_| ImageError::Corrupt("MR encoder still shared".into()))?;
    Ok(cell.into_inner().0.finish())
}

/// T.6 Modified Modified READ (TIFF Compression 4, T6Options 0), ending with EOFB, through the
/// `fax` crate's encoder.
///
/// Errors: as [`encode_mh`].
pub fn encode_mmr(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ImageError> {
    let stride = check(data, width, height)?;
    let mut enc = fax::encoder::Encoder::new(BitOut::new());
    for row in data.chunks(stride) {
        let _ = enc.encode_line(colours(row, width), width);
    }
    match enc.finish() {
        Ok(w) => Ok(w.finish()),
        Err(never) => match never {},
    }
}
