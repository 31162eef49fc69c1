//! Bit-level helpers shared by the reader and the encoders.

/// MSB-first bit writer that knows its bit position (needed for EOL fill bits). Bits gather in a
/// 64-bit accumulator and go out 32 at a time.
pub(crate) struct BitOut {
    pub(crate) bytes: Vec<u8>,
    /// Pending bits, right-aligned in the low `n` bits (higher bits are stale); `n` < 32 between
    /// calls.
    acc: u64,
    n: u32,
}

impl BitOut {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        BitOut {
            bytes: Vec::with_capacity(cap),
            acc: 0,
            n: 0,
        }
    }

    /// Append the low `len` bits of `code` (`len` at most 32).
    #[inline]
    pub(crate) fn put(&mut self, code: u32, len: u32) {
        debug_assert!(len <= 32);
        let code = u64::from(code) & ((1u64 << len) - 1);
        self.acc = (self.acc << len) | code;
        self.n += len;
        if self.n >= 32 {
            self.n -= 32;
            self.bytes
                .extend_from_slice(&((self.acc >> self.n) as u32).to_be_bytes());
        }
    }

    /// Zero bits so that a following 12-bit EOL ends on a byte boundary (T.4 §4.1.3 fill).
    #[inline]
    pub(crate) fn fill_for_eol(&mut self) {
        let pad = (12 - self.n % 8) % 8;
        self.put(0, pad);
    }

    /// Pad with zero bits to the byte boundary and return the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        while self.n >= 8 {
            self.n -= 8;
            self.bytes.push((self.acc >> self.n) as u8);
        }
        if self.n > 0 {
            self.bytes.push((self.acc << (8 - self.n)) as u8);
        }
        self.bytes
    }
}

/// Set bits `start..end` (pixels) of one packed MSB-first row to 1 (clamped to the row).
#[inline]
pub(crate) fn set_run(row: &mut [u8], start: u32, end: u32) {
    let end = end.min((row.len() as u32).saturating_mul(8));
    if start >= end {
        return;
    }
    let (sb, eb) = ((start / 8) as usize, ((end - 1) / 8) as usize);
    let head = 0xFFu8 >> (start % 8);
    let tail = 0xFFu8 << (7 - (end - 1) % 8);
    if sb == eb {
        row[sb] |= head & tail;
    } else {
        row[sb] |= head;
        row[sb + 1..eb].fill(0xFF);
        row[eb] |= tail;
    }
}

/// Changing elements of one packed row (T.4 §4.2.1.3.1): the pixel positions (< `width`) whose
/// colour differs from the pixel before them, the pixel before the first being white.
/// `out` is cleared first.
///
/// Works 64 pixels at a time: `w ^ (w >> 1 | carry)` has a 1 bit at each changing element of
/// the word, and those are taken off with `leading_zeros`.
pub(crate) fn changes(row: &[u8], width: u32, out: &mut Vec<u32>) {
    out.clear();
    let width = width.min((row.len() as u32).saturating_mul(8));
    let nbytes = (width as usize).div_ceil(8);
    let row = &row[..nbytes];
    // Colour of the pixel before the current word, as the word's top bit.
    let mut carry = 0u64;
    let mut words = row.chunks_exact(8);
    let mut base = 0u32;
    for c in &mut words {
        let w = u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        let mut t = w ^ ((w >> 1) | carry);
        carry = w << 63;
        while t != 0 {
            let z = t.leading_zeros();
            if base + z >= width {
                return; // padding bits of the last byte
            }
            out.push(base + z);
            t &= !(1u64 << 63 >> z);
        }
        base += 64;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        let w = u64::from_be_bytes(b);
        let mut t = w ^ ((w >> 1) | carry);
        while t != 0 {
            let z = t.leading_zeros();
            if base + z >= width {
                break;
            }
            out.push(base + z);
            t &= !(1u64 << 63 >> z);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_match_a_pixel_walk() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut ch = Vec::new();
        for _ in 0..500 {
            let width = rng.u32(1..200);
            let stride = (width as usize).div_ceil(8);
            let row: Vec<u8> = (0..stride).map(|_| rng.u8(..)).collect();
            changes(&row, width, &mut ch);
            let px = |x: u32| row[(x / 8) as usize] & (0x80 >> (x % 8)) != 0;
            let want: Vec<u32> = (0..width)
                .filter(|&x| px(x) != (x > 0 && px(x - 1)))
                .collect();
            assert_eq!(ch, want, "width {width}");
        }
    }

    #[test]
    fn set_run_sets_exactly_the_run() {
        for start in 0..40 {
            for end in start..40 {
                let mut row = [0u8; 5];
                set_run(&mut row, start, end);
                for x in 0..40 {
                    let set = row[(x / 8) as usize] & (0x80 >> (x % 8)) != 0;
                    assert_eq!(set, (start..end).contains(&x), "{start}..{end} at {x}");
                }
            }
        }
    }

    #[test]
    fn fill_puts_eol_end_on_a_byte_boundary() {
        for pre in 0..16 {
            let mut b = BitOut::with_capacity(8);
            b.put(0, pre);
            b.fill_for_eol();
            b.put(1, 12);
            assert_eq!(b.n % 8, 0, "after {pre} bits");
        }
    }
}
