//! Bit-level helpers shared by the reader and the encoders.

/// MSB-first bit writer that knows its bit position (needed for EOL fill bits).
///
/// Branch-free flush: after every code the pending bits (fewer than 8 plus the code) are
/// stored as 8 bytes at the write position, which then advances by the whole bytes done; the
/// partial last byte is rewritten by the next store. The buffer keeps at least 8 bytes of slack
/// past the position (grown geometrically on a rarely taken path).
pub(crate) struct BitOut {
    /// Output; only `..pos` (plus the partial byte) is meaningful, the rest is slack.
    buf: Vec<u8>,
    /// Whole bytes written.
    pos: usize,
    /// Pending bits, right-aligned in the low `n` bits (higher bits are stale); `n` < 8 between
    /// calls.
    acc: u64,
    n: u32,
}

impl BitOut {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        BitOut {
            buf: vec![0; cap.max(64)],
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = (self.buf.len() * 2).max(self.pos + 64);
        self.buf.resize(len, 0);
    }

    /// Append the low `len` bits of `code` (`len` at most 32).
    #[inline(always)]
    pub(crate) fn put(&mut self, code: u32, len: u32) {
        debug_assert!(len <= 32);
        let code = u64::from(code) & ((1u64 << len) - 1);
        self.acc = (self.acc << len) | code;
        self.n += len;
        if self.buf.len() < self.pos + 8 {
            self.grow();
        }
        // n <= 7 + 32: the pending bits, left-aligned, zeros after them.
        let word = (self.acc << (63 - self.n)) << 1;
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        self.pos += (self.n / 8) as usize;
        self.n &= 7;
    }

    /// Run `f` with a [`RowBits`] writer that holds the state in locals (registers) and can
    /// write at least `max_bytes` bytes without growing the buffer; the state is taken back
    /// afterwards. Bits past `max_bytes` are dropped, so callers pass a proven bound.
    #[inline(always)]
    pub(crate) fn row<R>(&mut self, max_bytes: usize, f: impl FnOnce(&mut RowBits) -> R) -> R {
        let need = self.pos.saturating_add(max_bytes).saturating_add(8);
        if self.buf.len() < need {
            let len = (self.buf.len() * 2).max(need);
            self.buf.resize(len, 0);
        }
        let mut w = RowBits {
            buf: &mut self.buf[..],
            pos: self.pos,
            acc: self.acc,
            n: self.n,
        };
        let r = f(&mut w);
        let (pos, acc, n) = (w.pos, w.acc, w.n);
        self.pos = pos;
        self.acc = acc;
        self.n = n;
        r
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> usize {
        self.pos * 8 + self.n as usize
    }

    /// Pad with zero bits to the byte boundary and return the bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        // The last store left the partial byte at `pos` with zero bits after the pending ones.
        let len = self.pos + usize::from(self.n > 0);
        self.buf.truncate(len);
        self.buf
    }
}

/// [`BitOut`]'s state borrowed for one row (see [`BitOut::row`]): the same branch-free store,
/// without the growth check.
pub(crate) struct RowBits<'a> {
    buf: &'a mut [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl RowBits<'_> {
    /// [`RowBits::put`] for a `code` with no bits above its `len` (the encoders' tables):
    /// nothing to mask.
    #[inline(always)]
    pub(crate) fn put_clean(&mut self, code: u32, len: u32) {
        debug_assert!(len <= 32 && u64::from(code) >> len == 0);
        self.acc = (self.acc << len) | u64::from(code);
        self.n += len;
        let word = (self.acc << (63 - self.n)) << 1;
        if let Some(dst) = self
            .buf
            .get_mut(self.pos..)
            .and_then(|b| b.first_chunk_mut::<8>())
        {
            *dst = word.to_be_bytes();
        }
        self.pos += (self.n / 8) as usize;
        self.n &= 7;
    }

    /// Append the low `len` bits of `code` (`len` at most 32).
    #[inline(always)]
    pub(crate) fn put(&mut self, code: u32, len: u32) {
        debug_assert!(len <= 32);
        let code = u64::from(code) & ((1u64 << len) - 1);
        self.acc = (self.acc << len) | code;
        self.n += len;
        let word = (self.acc << (63 - self.n)) << 1;
        debug_assert!(self.pos + 8 <= self.buf.len(), "row bound too small");
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&word.to_be_bytes());
        }
        self.pos += (self.n / 8) as usize;
        self.n &= 7;
    }

    /// Zero bits so that a following 12-bit EOL ends on a byte boundary, then the EOL
    /// 000000000001 (T.4 §4.1.2, §4.1.3 fill).
    #[inline(always)]
    pub(crate) fn fill_and_eol(&mut self) {
        let pad = (12 - self.n % 8) % 8;
        self.put(1, pad + 12);
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
/// the word, and those are taken off by [`take_changes`]; bits past `width` are masked off.
pub(crate) fn changes(row: &[u8], width: u32, out: &mut Vec<u32>) {
    out.clear();
    let width = width.min((row.len() as u32).saturating_mul(8));
    out.reserve(width as usize + 1);
    for_each_change(row, width, |x| out.push(x));
}

/// Call `f` with `base` + the index of every 1 bit of `t` (MSB = index 0), in increasing
/// order. The bits are reversed first so that each step clears the lowest 1 bit
/// (`t & (t - 1)`), which does not wait for the bit scan: clearing the highest one does, and
/// on a dithered page (a change every pixel or two) that chain is what the encoders wait on.
#[inline(always)]
fn take_changes(t: u64, base: u32, f: &mut impl FnMut(u32)) {
    if t == 0 {
        return;
    }
    let mut t = t.reverse_bits();
    while t != 0 {
        f(base + t.trailing_zeros());
        t &= t - 1;
    }
}

/// Call `f` with every changing element of one packed row (see [`changes`]), left to right;
/// `width` must be at most `row.len() * 8`.
#[inline(always)]
pub(crate) fn for_each_change(row: &[u8], width: u32, mut f: impl FnMut(u32)) {
    let full = (width / 64) as usize;
    // Colour of the pixel before the current word, as the word's top bit.
    let mut carry = 0u64;
    let mut base = 0u32;
    for c in row.chunks_exact(8).take(full) {
        let w = u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        let t = w ^ ((w >> 1) | carry);
        carry = w << 63;
        take_changes(t, base, &mut f);
        base += 64;
    }
    let rest_bits = width % 64;
    if rest_bits != 0 {
        let rest = row
            .get(full * 8..(width as usize).div_ceil(8))
            .unwrap_or(&[]);
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        let w = u64::from_be_bytes(b);
        let t = (w ^ ((w >> 1) | carry)) & (!0u64 << (64 - rest_bits));
        take_changes(t, base, &mut f);
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
    fn bit_writer_matches_a_bit_list() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..200 {
            let mut b = BitOut::with_capacity(rng.usize(0..16));
            let mut want: Vec<bool> = Vec::new();
            for _ in 0..rng.usize(0..300) {
                let len = rng.u32(0..=32);
                let code = rng.u32(..);
                b.put(code, len);
                want.extend((0..len).rev().map(|i| code >> i & 1 == 1));
            }
            let got = b.finish();
            want.resize(want.len().div_ceil(8) * 8, false);
            let want: Vec<u8> = want
                .chunks(8)
                .map(|c| c.iter().fold(0u8, |a, &x| a << 1 | u8::from(x)))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn fill_puts_eol_end_on_a_byte_boundary() {
        for pre in 0..16 {
            let mut b = BitOut::with_capacity(8);
            b.put(0, pre);
            b.row(16, |w| w.fill_and_eol());
            assert_eq!(b.bit_len() % 8, 0, "after {pre} bits");
            let bytes = b.finish();
            assert_eq!(bytes.last(), Some(&1), "EOL ends the last byte");
        }
    }
}
