//! Bit-level helpers shared by the reader and the encoders.

use fax::Bits;

/// MSB-first bit writer that knows its bit position (needed for EOL fill bits).
pub(crate) struct BitOut {
    pub(crate) bytes: Vec<u8>,
    acc: u32,
    n: u8,
}

impl BitOut {
    pub(crate) fn new() -> Self {
        BitOut {
            bytes: Vec::new(),
            acc: 0,
            n: 0,
        }
    }

    /// Append the low `bits.len` bits of `bits.data` (at most 16).
    pub(crate) fn put(&mut self, bits: Bits) {
        for i in (0..bits.len).rev() {
            self.acc = (self.acc << 1) | u32::from((bits.data >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.bytes.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Zero bits so that a following 12-bit EOL ends on a byte boundary (T.4 §4.1.3 fill).
    pub(crate) fn fill_for_eol(&mut self) {
        while self.n != 4 {
            self.put(Bits { data: 0, len: 1 });
        }
    }

    /// Pad with zero bits to the byte boundary and return the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push((self.acc << (8 - self.n)) as u8);
        }
        self.bytes
    }
}

impl fax::BitWriter for BitOut {
    type Error = std::convert::Infallible;
    fn write(&mut self, bits: Bits) -> Result<(), Self::Error> {
        self.put(bits);
        Ok(())
    }
}

/// Set bits `start..end` (pixels) of one packed MSB-first row to 1.
pub(crate) fn set_run(row: &mut [u8], start: u32, end: u32) {
    let end = end.min((row.len() as u32).saturating_mul(8));
    let mut x = start;
    while x < end {
        let byte = (x / 8) as usize;
        if x % 8 == 0 && end - x >= 8 {
            row[byte] = 0xFF;
            x += 8;
        } else {
            row[byte] |= 0x80 >> (x % 8);
            x += 1;
        }
    }
}

/// Iterate the pixel colours of one packed row: `true` = black.
pub(crate) fn row_pixels(row: &[u8], width: u32) -> impl Iterator<Item = bool> + '_ {
    (0..width).map(move |x| {
        row.get((x / 8) as usize)
            .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
    })
}

/// Run lengths of one packed row, alternating white, black, white, … starting with white
/// (the first run may be 0). Their sum is `width`.
pub(crate) fn runs(row: &[u8], width: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut colour = false;
    let mut len = 0u32;
    for px in row_pixels(row, width) {
        if px != colour {
            out.push(len);
            colour = px;
            len = 0;
        }
        len += 1;
    }
    out.push(len);
    out
}

/// Clear the padding bits past `width` in every row (so equal pages compare equal).
pub(crate) fn clear_padding(data: &mut [u8], width: u32) {
    let stride = (width as usize).div_ceil(8);
    let rem = width % 8;
    if rem == 0 || stride == 0 {
        return;
    }
    let mask = 0xFFu8 << (8 - rem);
    for row in data.chunks_mut(stride) {
        if let Some(last) = row.last_mut() {
            *last &= mask;
        }
    }
}
