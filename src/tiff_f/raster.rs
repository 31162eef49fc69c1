//! Raster scans (PNG, JPEG, PBM/PGM/PPM) through `image`, made bilevel.

use super::{Bilevel, Bitmap, ImageError, Limits};
use image::{ImageFormat, ImageReader};
use std::io::Cursor;

/// Resolution assumed for raster files that do not state one (a typical scanner setting).
pub(crate) const DEFAULT_SCAN_DPI: u32 = 200;

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImageError> {
    let format = image::guess_format(bytes)
        .map_err(|_| ImageError::Unsupported("not PNG, JPEG, PBM/PGM/PPM or TIFF".into()))?;
    match format {
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Pnm => {
            Ok(ImageReader::with_format(Cursor::new(bytes), format))
        }
        other => Err(ImageError::Unsupported(format!("{other:?} images"))),
    }
}

pub(crate) fn read_raster(
    bytes: &[u8],
    limits: &Limits,
    bilevel: Bilevel,
) -> Result<Bitmap, ImageError> {
    let (width, height) = reader(bytes)?
        .into_dimensions()
        .map_err(|e| ImageError::Corrupt(format!("reading image header: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels_per_page {
        return Err(ImageError::Limit(format!(
            "{width}x{height} pixels, over {} per page",
            limits.max_pixels_per_page
        )));
    }
    if pixels == 0 {
        return Err(ImageError::Corrupt(format!("empty image {width}x{height}")));
    }
    let (x_dpi, y_dpi) = density(bytes).unwrap_or((DEFAULT_SCAN_DPI, DEFAULT_SCAN_DPI));
    if let Some(data) = gray_png_rows(bytes, width, height, bilevel)? {
        return Ok(Bitmap {
            width,
            height,
            x_dpi,
            y_dpi,
            data,
        });
    }
    let mut r = reader(bytes)?;
    let mut il = image::Limits::default();
    il.max_image_width = Some(width);
    il.max_image_height = Some(height);
    // Worst case: 16-bit RGBA output plus the decoder's own buffers.
    il.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    r.limits(il);
    let img = r.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ImageError::Limit(l.to_string()),
        e => ImageError::Corrupt(format!("decoding image: {e}")),
    })?;
    let luma = img.into_luma8();
    let data = gray_to_bilevel(luma.as_raw(), width, height, bilevel);
    drop(luma);
    Ok(Bitmap {
        width,
        height,
        x_dpi,
        y_dpi,
        data,
    })
}

/// Fast path for the common scan, an 8-bit gray non-interlaced PNG without transparency: rows
/// are decoded one at a time (the `png` crate's row API, identity transformations) straight into
/// the bilevel page, [`FS_ROWS`] at a time for Floyd–Steinberg ([`FloydSteinberg::rows`]),
/// without a full-page gray buffer. The same bits as decoding through `image` then
/// [`gray_to_bilevel`]. `Ok(None)` for any other input (the caller takes the general path);
/// `width × height` is the checked header size.
fn gray_png_rows(
    bytes: &[u8],
    width: u32,
    height: u32,
    bilevel: Bilevel,
) -> Result<Option<Vec<u8>>, ImageError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(None);
    }
    let corrupt = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => ImageError::Limit("PNG decoder buffers".into()),
        e => ImageError::Corrupt(format!("decoding image: {e}")),
    };
    // Row buffers only; the same bound as the general path's.
    let limit = (u64::from(width) * u64::from(height))
        .saturating_mul(16)
        .max(1 << 20);
    let dec = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: usize::try_from(limit).unwrap_or(usize::MAX),
        },
    );
    let Ok(mut reader) = dec.read_info() else {
        return Ok(None); // let the general path report it
    };
    let info = reader.info();
    let plain_gray = info.color_type == png::ColorType::Grayscale
        && info.bit_depth == png::BitDepth::Eight
        && !info.interlaced
        && info.trns.is_none()
        && (info.width, info.height) == (width, height);
    if !plain_gray {
        return Ok(None);
    }
    let w = width as usize;
    let stride = w.div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    let mut fs = FloydSteinberg::new(w);
    let mut luma = vec![0u8; FS_ROWS * w];
    let group = match bilevel {
        Bilevel::Threshold(_) => 1,
        Bilevel::FloydSteinberg => FS_ROWS,
    };
    for out in data.chunks_mut(group * stride) {
        let n = out.len() / stride;
        for src in luma.chunks_exact_mut(w).take(n) {
            if reader.read_row(src).map_err(corrupt)?.is_none() {
                return Err(ImageError::Corrupt("PNG image data ends early".into()));
            }
        }
        match bilevel {
            Bilevel::Threshold(t) => pack_threshold(&luma[..w], out, t),
            Bilevel::FloydSteinberg => dither_group(&mut fs, &luma[..n * w], out, w, stride),
        }
    }
    // Past the last row: consumes the rest of the image data as the general path does.
    reader.read_row(&mut luma[..w]).map_err(corrupt)?;
    Ok(Some(data))
}

/// Resolution stated in the file: PNG `pHYs` (pixels per metre) or JPEG JFIF APP0 density.
fn density(b: &[u8]) -> Option<(u32, u32)> {
    let plausible = |v: f64| (10.0..=10_000.0).contains(&v).then(|| v.round() as u32);
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        let mut p = 8usize;
        while let Some(head) = b.get(p..p.checked_add(8)?) {
            let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
            let body = b.get(p + 8..(p + 8).checked_add(len)?)?;
            match &head[4..8] {
                b"pHYs" if len == 9 && body[8] == 1 => {
                    let x = u32::from_be_bytes(body[..4].try_into().ok()?);
                    let y = u32::from_be_bytes(body[4..8].try_into().ok()?);
                    return Some((
                        plausible(f64::from(x) * 0.0254)?,
                        plausible(f64::from(y) * 0.0254)?,
                    ));
                }
                b"IDAT" | b"IEND" => return None,
                _ => p = p.checked_add(12 + len)?,
            }
        }
        return None;
    }
    // JPEG: SOI, then APP0 "JFIF\0" with units (1 = dpi, 2 = dots per cm) and densities.
    if b.get(..4)? == [0xFF, 0xD8, 0xFF, 0xE0] && b.get(6..11)? == b"JFIF\0" {
        let units = *b.get(13)?;
        let x = f64::from(u16::from_be_bytes([*b.get(14)?, *b.get(15)?]));
        let y = f64::from(u16::from_be_bytes([*b.get(16)?, *b.get(17)?]));
        let k = match units {
            1 => 1.0,
            2 => 2.54,
            _ => return None,
        };
        return Some((plausible(x * k)?, plausible(y * k)?));
    }
    None
}

/// Make an 8-bit gray page (`width × height` bytes, 0 = black, 255 = white) bilevel: packed rows,
/// 1 = black, padding bits clear. Threshold: luma below the value is black. Floyd–Steinberg:
/// error diffusion left to right with weights 7/16, 3/16, 5/16, 1/16 (threshold 128), in integer
/// arithmetic so that every platform gives the same bits.
pub(crate) fn gray_to_bilevel(luma: &[u8], width: u32, height: u32, bilevel: Bilevel) -> Vec<u8> {
    let w = width as usize;
    let stride = w.div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    if w == 0 {
        return data;
    }
    match bilevel {
        Bilevel::Threshold(t) => {
            for (src, out) in luma.chunks_exact(w).zip(data.chunks_exact_mut(stride)) {
                pack_threshold(src, out, t);
            }
        }
        Bilevel::FloydSteinberg => {
            let mut fs = FloydSteinberg::new(w);
            for (src, out) in luma
                .chunks(FS_ROWS * w)
                .zip(data.chunks_mut(FS_ROWS * stride))
            {
                dither_group(&mut fs, src, out, w, stride);
            }
        }
    }
    data
}

/// Dither up to [`FS_ROWS`] rows (`luma`: rows of `w` bytes; `out`: rows of `stride` bytes):
/// eight at a time with [`FloydSteinberg::rows8`], fewer with [`FloydSteinberg::rows`]; rows
/// missing from either are not dithered.
fn dither_group(fs: &mut FloydSteinberg, luma: &[u8], out: &mut [u8], w: usize, stride: usize) {
    if w == 0 || stride == 0 {
        return;
    }
    let mut s = luma.chunks_exact(w);
    let mut d = out.chunks_exact_mut(stride);
    let mut left = s.len().min(d.len());
    while left > 0 {
        let (s, d) = (&mut s, &mut d);
        left -= match left {
            8.. => {
                fs.rows8(
                    std::array::from_fn(|_| s.next().unwrap_or_default()),
                    std::array::from_fn(|_| d.next().unwrap_or_default()),
                );
                8
            }
            4.. => {
                fs.rows::<4>(
                    std::array::from_fn(|_| s.next().unwrap_or_default()),
                    std::array::from_fn(|_| d.next().unwrap_or_default()),
                );
                4
            }
            3 => {
                fs.rows::<3>(
                    std::array::from_fn(|_| s.next().unwrap_or_default()),
                    std::array::from_fn(|_| d.next().unwrap_or_default()),
                );
                3
            }
            2 => {
                fs.rows::<2>(
                    std::array::from_fn(|_| s.next().unwrap_or_default()),
                    std::array::from_fn(|_| d.next().unwrap_or_default()),
                );
                2
            }
            _ => {
                fs.rows::<1>(
                    [s.next().unwrap_or_default()],
                    [d.next().unwrap_or_default()],
                );
                1
            }
        };
    }
}

/// Row-at-a-time integer Floyd–Steinberg error diffusion (weights 7/16 right, 3/16 below left,
/// 5/16 below, 1/16 below right; threshold 128; errors past the row ends are dropped), so that a
/// caller can dither rows as they are decoded without a full-page gray buffer.
///
/// Rows are dithered up to eight at a time ([`FloydSteinberg::rows`], [`FS_ROWS`] on the fast
/// paths) as a wavefront: row `k` runs one pixel behind row `k - 1` and takes the error that row
/// diffuses into it (3/16, 5/16, 1/16) straight from registers, so the loop carries `K`
/// independent error chains, and only the last row's errors for the next group go to memory.
pub(crate) struct FloydSteinberg {
    /// Error diffused into each pixel (×16) of the next row from the row above.
    below: Vec<i32>,
}

/// Rows per group on the fast paths: one [`FloydSteinberg::rows8`] call.
pub(crate) const FS_ROWS: usize = 8;

/// One pixel: luma `p` (0 = black, 255 = white) plus the error diffused into it, ×16:
/// `from_above` and 7 × `e1` (the error of the pixel to the left). Returns (its error, 1 if it
/// is black).
#[inline(always)]
fn fs_pixel(p: u8, from_above: i32, e1: i32) -> (i32, u32) {
    let v = i32::from(p) + ((from_above + 7 * e1) >> 4);
    let black = v < 128;
    (if black { v } else { v - 255 }, u32::from(black))
}

/// The state of one row of a wavefront: the errors of its last two pixels (0 before the row
/// start and past its end) and its last output bits, newest in bit 0.
#[derive(Clone, Copy, Default)]
struct Chain {
    e1: i32,
    e2: i32,
    bits: u32,
}

impl Chain {
    /// Take one pixel's error `e` (0 past the row ends) and bit; returns what the row diffuses
    /// into the pixel below its previous one, ×16 (3 × `e` + 5 × `e1` + `e2`).
    #[inline(always)]
    fn push(&mut self, e: i32, bit: u32) -> i32 {
        let pass = 3 * e + 5 * self.e1 + self.e2;
        self.e2 = self.e1;
        self.e1 = e;
        self.bits = (self.bits << 1) | bit;
        pass
    }
}

impl FloydSteinberg {
    /// A ditherer for rows of `width` pixels (starting with no error).
    pub(crate) fn new(width: usize) -> Self {
        FloydSteinberg {
            below: vec![0; width],
        }
    }

    /// Dither `K` (1 to 8) consecutive rows of luma (`src[0]` the top one, each `width` bytes,
    /// 0 = black) into packed bits (`out`, each `ceil(width / 8)` bytes, 1 = black; fully
    /// overwritten, padding bits clear); the same bits for any `K`. A shorter source or output
    /// row shortens all `K` to it.
    ///
    /// Step `t` dithers pixel `t - k` of row `k`; pixels before a row's start and past its end
    /// are virtual (no error, white bit), so that every step does the same work, and after each
    /// eight steps one byte of every row is complete and stored, without a per-pixel branch. The
    /// steps where every row is inside the page run eight at a time on fixed-size chunks.
    #[inline]
    pub(crate) fn rows<const K: usize>(&mut self, src: [&[u8]; K], out: [&mut [u8]; K]) {
        const { assert!(K >= 1 && K <= 8) };
        let mut w = self.below.len();
        for k in 0..K {
            w = w.min(src[k].len()).min(out[k].len() * 8);
        }
        let stride = w.div_ceil(8);
        let below = &mut self.below[..w];
        let mut out = out.map(|o| &mut o[..stride]);
        let mut ch = [Chain::default(); K];
        // Steps 0..8: the rows start (row k is virtual before step k).
        let mut t = 0;
        while t < 8 {
            step_checked(t, below, &src, &mut out, &mut ch);
            t += 1;
        }
        // Chunks of eight steps with every row inside the page (t ≥ 8 > K - 1, t + 8 ≤ w).
        while t + 8 <= w {
            // Row 0 reads below[t + i]; the last row writes below[t + i - K], final once its
            // pixel t + i - K + 1 is done.
            let bl = &mut below[t - K..t + 8];
            let s: [&[u8]; K] = std::array::from_fn(|k| &src[k][t - k..t - k + 8]);
            // Written out eight times (not a loop) so that the chains stay in registers.
            chunk_step(0, bl, &s, &mut ch);
            chunk_step(1, bl, &s, &mut ch);
            chunk_step(2, bl, &s, &mut ch);
            chunk_step(3, bl, &s, &mut ch);
            chunk_step(4, bl, &s, &mut ch);
            chunk_step(5, bl, &s, &mut ch);
            chunk_step(6, bl, &s, &mut ch);
            chunk_step(7, bl, &s, &mut ch);
            // Row k's byte t / 8 - 1 ended k steps before this chunk's last one.
            for k in 0..K {
                out[k][t / 8 - 1] = (ch[k].bits >> (8 - k)) as u8;
            }
            t += 8;
        }
        // The rest: the rows end (virtual pixels give the padding bits, 0); the last row's last
        // error goes below at step w + K - 1, the last bytes are stored at step 8 × stride + 7.
        while t < 8 * stride + 8 {
            step_checked(t, below, &src, &mut out, &mut ch);
            t += 1;
        }
    }
}

/// Step `i` (0..8) of a chunk of [`FloydSteinberg::rows`] with every row inside the page: `bl`
/// is `below` from `K` pixels before the chunk to its end, `s[k]` row `k`'s eight pixels.
#[inline(always)]
fn chunk_step<const K: usize>(i: usize, bl: &mut [i32], s: &[&[u8]; K], ch: &mut [Chain; K]) {
    let mut above = bl[K + i];
    for k in 0..K {
        let (e, bit) = fs_pixel(s[k][i], above, ch[k].e1);
        above = ch[k].push(e, bit);
    }
    bl[i] = above;
}

/// One step `t` of [`FloydSteinberg::rows`] at the rows' ends, every access checked: row `k`
/// dithers pixel `t - k` (a virtual one outside `0..w`); after step `8j + 7`, `j ≥ 1`, byte
/// `j - 1` of every row is stored.
#[inline(always)]
fn step_checked<const K: usize>(
    t: usize,
    below: &mut [i32],
    src: &[&[u8]; K],
    out: &mut [&mut [u8]; K],
    ch: &mut [Chain; K],
) {
    let w = below.len();
    let mut above = 0;
    for k in 0..K {
        let x = t.wrapping_sub(k);
        let (e, bit) = match src[k].get(x) {
            Some(&p) if x < w => {
                let from_above = if k == 0 {
                    below.get(x).copied().unwrap_or(0)
                } else {
                    above
                };
                fs_pixel(p, from_above, ch[k].e1)
            }
            _ => (0, 0),
        };
        above = ch[k].push(e, bit);
    }
    // The last row's pixel t - K + 1 is done: the error below its left neighbour is final.
    if let Some(x) = t.checked_sub(K) {
        if let Some(b) = below.get_mut(x) {
            *b = above;
        }
    }
    if t % 8 == 7 && t >= 15 {
        let j = t / 8 - 1;
        for k in 0..K {
            if let Some(o) = out[k].get_mut(j) {
                *o = (ch[k].bits >> (8 - k)) as u8;
            }
        }
    }
}

/// Rows (lanes) of the vector wavefront, [`FloydSteinberg::rows8`].
const LANES: usize = 8;

/// Eight `i16` lanes, lane `k` for row `k` of the vector wavefront ([`Lanes`], plain Rust that
/// LLVM turns partly into SSE2 code; the seam for an explicit SIMD version). Every value fits: by induction from 0, a pixel's error `e` is
/// in `-127..=127` (the diffused error ×16 is at most 16 × 127 = 2032 in magnitude, so
/// `v = p + (that >> 4)` is in `-127..=382`; black gives `e = v < 128`, white
/// `e = v - 255 ≥ -127`), so 16 × luma plus that sum plus 7 × `e` is below
/// 4080 + 2032 + 889 = 7001 in magnitude, and 3 + 5 + 1 sixteenths ×16 below 1143.
trait Vector: Copy {
    fn from_array(a: [i16; LANES]) -> Self;
    fn splat(v: i16) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn and(self, o: Self) -> Self;
    /// `!self & o`.
    fn and_not(self, o: Self) -> Self;
    fn shl<const N: i32>(self) -> Self;
    /// Arithmetic shift right.
    fn sra<const N: i32>(self) -> Self;
    /// −1 where `self < o`, else 0.
    fn lt(self, o: Self) -> Self;
    /// `[first, self[0], …, self[6]]`: each lane takes its upper neighbour's value.
    fn shift_in(self, first: i16) -> Self;
    /// Lane 7.
    fn last(self) -> i16;
    /// 16 × luma for eight steps: `rows[k][i]` goes to lane `k` of step `i`.
    fn transpose16(rows: &[[u8; 8]; LANES]) -> [Self; 8];
    /// Lane `k` shifted right (logical) by `BYTE_SHIFT[k]`, low byte.
    fn bytes(self) -> [u8; LANES];
}

/// [`Vector`] in plain Rust: the vector wavefront on targets without SSE2 (on x86_64 only
/// the tests use it, against [`Sse2`]).
#[derive(Clone, Copy)]
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
struct Lanes([i16; LANES]);

#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
impl Lanes {
    #[inline(always)]
    fn map2(self, o: Lanes, f: impl Fn(i16, i16) -> i16) -> Self {
        Lanes(std::array::from_fn(|k| f(self.0[k], o.0[k])))
    }
}

impl Vector for Lanes {
    #[inline(always)]
    fn from_array(a: [i16; LANES]) -> Self {
        Lanes(a)
    }
    #[inline(always)]
    fn splat(v: i16) -> Self {
        Lanes([v; LANES])
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.map2(o, i16::wrapping_add)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.map2(o, i16::wrapping_sub)
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.map2(o, |a, b| a & b)
    }
    #[inline(always)]
    fn and_not(self, o: Self) -> Self {
        self.map2(o, |a, b| !a & b)
    }
    #[inline(always)]
    fn shl<const N: i32>(self) -> Self {
        self.map2(self, |a, _| a << N)
    }
    #[inline(always)]
    fn sra<const N: i32>(self) -> Self {
        self.map2(self, |a, _| a >> N)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        self.map2(o, |a, b| -i16::from(a < b))
    }
    #[inline(always)]
    fn shift_in(self, first: i16) -> Self {
        let mut r = [first; LANES];
        r[1..].copy_from_slice(&self.0[..LANES - 1]);
        Lanes(r)
    }
    #[inline(always)]
    fn last(self) -> i16 {
        self.0[LANES - 1]
    }
    #[inline(always)]
    fn transpose16(rows: &[[u8; 8]; LANES]) -> [Self; 8] {
        std::array::from_fn(|i| Lanes(std::array::from_fn(|k| i16::from(rows[k][i]) << 4)))
    }
    #[inline(always)]
    fn bytes(self) -> [u8; LANES] {
        std::array::from_fn(|k| (self.0[k] as u16 >> BYTE_SHIFT[k]) as u8)
    }
}

/// [`Vector`] in SSE2 (part of the x86_64 baseline: `cfg(target_feature = "sse2")` is always
/// true there, so every intrinsic below is available on every CPU the binary runs on).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[derive(Clone, Copy)]
struct Sse2(std::arch::x86_64::__m128i);

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    // SAFETY (every `unsafe` block in this module): the blocks only call SSE2 intrinsics on
    // values (no pointers), and SSE2 is enabled for the whole x86_64 target (see `Sse2`).
    use super::{Sse2, Vector, BYTE_SHIFT, LANES};
    use std::arch::x86_64::*;

    impl Vector for Sse2 {
        #[inline(always)]
        fn from_array(a: [i16; LANES]) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_set_epi16(a[7], a[6], a[5], a[4], a[3], a[2], a[1], a[0]) })
        }
        #[inline(always)]
        fn splat(v: i16) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_set1_epi16(v) })
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_add_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_sub_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn and(self, o: Self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_and_si128(self.0, o.0) })
        }
        #[inline(always)]
        fn and_not(self, o: Self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_andnot_si128(self.0, o.0) })
        }
        #[inline(always)]
        fn shl<const N: i32>(self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_slli_epi16::<N>(self.0) })
        }
        #[inline(always)]
        fn sra<const N: i32>(self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_srai_epi16::<N>(self.0) })
        }
        #[inline(always)]
        fn lt(self, o: Self) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_cmplt_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn shift_in(self, first: i16) -> Self {
            // SAFETY: see the module.
            Sse2(unsafe { _mm_insert_epi16::<0>(_mm_slli_si128::<2>(self.0), i32::from(first)) })
        }
        #[inline(always)]
        fn last(self) -> i16 {
            // SAFETY: see the module.
            unsafe { _mm_extract_epi16::<7>(self.0) as u16 as i16 }
        }
        #[inline(always)]
        fn transpose16(rows: &[[u8; 8]; LANES]) -> [Self; 8] {
            // SAFETY: see the module.
            unsafe {
                let r = |k: usize| _mm_set_epi64x(0, i64::from_le_bytes(rows[k]));
                // Interleave rows 0/1, 2/3, 4/5, 6/7 octet by octet, then the pairs as 16-bit
                // and 32-bit units: step `i`'s eight octets end up together, row `k` at `k`.
                let a01 = _mm_unpacklo_epi8(r(0), r(1));
                let a23 = _mm_unpacklo_epi8(r(2), r(3));
                let a45 = _mm_unpacklo_epi8(r(4), r(5));
                let a67 = _mm_unpacklo_epi8(r(6), r(7));
                let b0 = _mm_unpacklo_epi16(a01, a23); // steps 0..4, rows 0..4
                let b1 = _mm_unpackhi_epi16(a01, a23); // steps 4..8, rows 0..4
                let b2 = _mm_unpacklo_epi16(a45, a67);
                let b3 = _mm_unpackhi_epi16(a45, a67);
                let c = [
                    _mm_unpacklo_epi32(b0, b2), // steps 0, 1: rows 0..8 each
                    _mm_unpackhi_epi32(b0, b2), // steps 2, 3
                    _mm_unpacklo_epi32(b1, b3), // steps 4, 5
                    _mm_unpackhi_epi32(b1, b3), // steps 6, 7
                ];
                let z = _mm_setzero_si128();
                std::array::from_fn(|i| {
                    let pair = c[i / 2];
                    let octets = if i % 2 == 0 {
                        _mm_unpacklo_epi8(pair, z)
                    } else {
                        _mm_unpackhi_epi8(pair, z)
                    };
                    Sse2(_mm_slli_epi16::<4>(octets))
                })
            }
        }
        #[inline(always)]
        fn bytes(self) -> [u8; LANES] {
            // Lane k >> BYTE_SHIFT[k] as the high half of lane k × 2^(16 - shift).
            let mul: [i16; LANES] =
                std::array::from_fn(|k| (1u32 << (16 - BYTE_SHIFT[k])) as u16 as i16);
            // SAFETY: see the module.
            unsafe {
                let m = _mm_set_epi16(
                    mul[7], mul[6], mul[5], mul[4], mul[3], mul[2], mul[1], mul[0],
                );
                // A shift of 0 multiplies by 2^16, which is 0 in 16 bits: those lanes keep x.
                let zero_shift = _mm_cmpeq_epi16(m, _mm_setzero_si128());
                let hi = _mm_mulhi_epu16(self.0, m);
                let v = _mm_or_si128(
                    _mm_and_si128(zero_shift, self.0),
                    _mm_andnot_si128(zero_shift, hi),
                );
                let low = _mm_and_si128(v, _mm_set1_epi16(0xff));
                let packed = _mm_packus_epi16(low, low);
                (_mm_cvtsi128_si64(packed) as u64).to_le_bytes()
            }
        }
    }
}

/// Step `t` of [`FloydSteinberg::rows8`]: lane `k` dithers pixel `t - 2k` of row `k`.
/// Byte `t / 8 - D[k]` of row `k` is complete after step `t ≡ 7 (mod 8)` and sits in the lane's
/// bit accumulator (pixel `t - 2k` in bit 0) at bit `S[k] = 8 × D[k] - 2k`.
const BYTE_LAG: [usize; LANES] = [0, 1, 1, 1, 1, 2, 2, 2];
const BYTE_SHIFT: [u32; LANES] = [0, 6, 4, 2, 0, 6, 4, 2];

/// The state of the vector wavefront: per lane, the errors of the last two pixels, what the last
/// pixel's row diffuses into the row below (×16: 3, 5 and 1 sixteenths of the last three
/// errors, for the pixel below the one before the last), and the last sixteen bits.
#[derive(Clone, Copy)]
struct Wave<V> {
    e1: V,
    e2: V,
    pass: V,
    bits: V,
}

impl<V: Vector> Wave<V> {
    fn new() -> Self {
        let z = V::splat(0);
        Wave {
            e1: z,
            e2: z,
            pass: z,
            bits: z,
        }
    }

    /// One step: `p16` is 16 × each lane's luma (0 for a virtual pixel), `b0` what the row above
    /// the group diffuses into lane 0's pixel (×16), `inside` (with `MASK`) −1 for a lane whose
    /// pixel is in the page and 0 for a virtual one (no error, white). Returns lane 7's `pass`,
    /// the error (×16) for the pixel of the next group's row 0 below lane 7's previous pixel.
    ///
    /// Lane `k` takes from the row above the `pass` lane `k - 1` made one step earlier, for the
    /// pixel `t - 2k` below its pixel `t - 2k + 1`.
    #[inline(always)]
    fn step<const MASK: bool>(&mut self, p16: V, b0: i16, inside: V) -> i16 {
        let e1 = self.e1;
        let above = self.pass.shift_in(b0);
        let seven_e1 = e1.shl::<3>().sub(e1);
        let v = p16.add(above).add(seven_e1).sra::<4>();
        let mut black = v.lt(V::splat(128));
        let mut e = v.sub(black.and_not(V::splat(255)));
        if MASK {
            black = black.and(inside);
            e = e.and(inside);
        }
        // 3 e + 5 e1 + e2
        let three_e = e.shl::<1>().add(e);
        let five_e1 = e1.shl::<2>().add(e1);
        self.pass = three_e.add(five_e1).add(self.e2);
        self.e2 = e1;
        self.e1 = e;
        self.bits = self.bits.add(self.bits).sub(black);
        self.pass.last()
    }

    /// After step `8m + 7`: store byte `m - BYTE_LAG[k]` of every row `k` (those in the rows).
    #[inline(always)]
    fn store(&self, m: usize, out: &mut [&mut [u8]; LANES]) {
        let bytes = self.bits.bytes();
        for k in 0..LANES {
            if let Some(o) = m.checked_sub(BYTE_LAG[k]).and_then(|j| out[k].get_mut(j)) {
                *o = bytes[k];
            }
        }
    }

    /// Eight steps `t0..t0 + 8` with every lane inside the page: `rows[k]` row `k`'s pixels
    /// `t0 - 2k..t0 - 2k + 8`, `bl` `below[t0 - 15..t0 + 8]` (lane 0 reads `below[t]`, lane 7's
    /// error goes to `below[t - 15]`).
    #[inline(always)]
    fn chunk(&mut self, rows: &[[u8; 8]; LANES], bl: &mut [i32; 23]) {
        let p16 = V::transpose16(rows);
        let none = V::splat(0);
        for i in 0..8 {
            bl[i] = i32::from(self.step::<false>(p16[i], bl[15 + i] as i16, none));
        }
    }

    /// One step `t` at the rows' ends, every access checked.
    fn step_checked(&mut self, t: usize, below: &mut [i32], src: &[&[u8]; LANES]) {
        let w = below.len();
        let mut p16 = [0; LANES];
        let mut inside = [0; LANES];
        for k in 0..LANES {
            let x = t.wrapping_sub(2 * k);
            if x < w {
                if let Some(&p) = src[k].get(x) {
                    p16[k] = i16::from(p) << 4;
                    inside[k] = -1;
                }
            }
        }
        let b0 = below.get(t).map_or(0, |&b| b as i16);
        let pass = self.step::<true>(V::from_array(p16), b0, V::from_array(inside));
        if let Some(b) = t.checked_sub(15).and_then(|x| below.get_mut(x)) {
            *b = i32::from(pass);
        }
    }
}

impl FloydSteinberg {
    /// [`FloydSteinberg::rows`] for eight rows as a vector wavefront: row `k` runs two pixels
    /// behind row `k - 1`, so pixel `x` of row `k` needs from the row above only the errors of
    /// pixels up to `x + 1`, done a step earlier, and all eight rows advance in lockstep, one
    /// `i16` lane each ([`Wave::step`]). The same bits as [`FloydSteinberg::rows`].
    pub(crate) fn rows8(&mut self, src: [&[u8]; LANES], out: [&mut [u8]; LANES]) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        self.rows8_with::<Sse2>(src, out);
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        self.rows8_with::<Lanes>(src, out);
    }

    /// [`FloydSteinberg::rows8`] on vectors `V`. Step `t` dithers pixel `t - 2k` of row `k`;
    /// steps run eight at a time: with every lane inside the page, the eight rows' eight pixels
    /// are read whole and transposed ([`Wave::chunk`]); at the row ends every access is checked
    /// and pixels outside `0..width` are virtual ([`Wave::step_checked`]).
    #[inline(always)]
    fn rows8_with<V: Vector>(&mut self, src: [&[u8]; LANES], out: [&mut [u8]; LANES]) {
        let mut w = self.below.len();
        for k in 0..LANES {
            w = w.min(src[k].len()).min(out[k].len() * 8);
        }
        let stride = w.div_ceil(8);
        let below = &mut self.below[..w];
        let mut out = out.map(|o| &mut o[..stride]);
        let mut wave = Wave::<V>::new();
        // Row 7's last pixel is done at step w + 13, its last error below at w + 14, its last
        // byte stored after step 8 × (stride - 1 + 2) + 7.
        for m in 0..stride + 2 {
            let t0 = 8 * m;
            let mut rows = [[0u8; 8]; LANES];
            let mut fast = t0 >= 16 && t0 + 8 <= w;
            if fast {
                for k in 0..LANES {
                    match src[k].get(t0 - 2 * k..t0 + 8 - 2 * k) {
                        Some(s) => rows[k].copy_from_slice(s),
                        None => fast = false,
                    }
                }
            }
            let bl = fast.then(|| below.get_mut(t0 - 15..t0 + 8)).flatten();
            if let Some(Ok(bl)) = bl.map(<&mut [i32; 23]>::try_from) {
                wave.chunk(&rows, bl);
            } else {
                for t in t0..t0 + 8 {
                    wave.step_checked(t, below, &src);
                }
            }
            wave.store(m, &mut out);
        }
    }
}

/// The reference per-pixel Floyd–Steinberg (two error rows), kept to cross-check
/// [`FloydSteinberg`] in tests.
#[cfg(test)]
pub(crate) fn floyd_steinberg_reference(luma: &[u8], width: u32, height: u32) -> Vec<u8> {
    let w = width as usize;
    let stride = w.div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    let mut cur = vec![0i32; w + 2];
    let mut next = vec![0i32; w + 2];
    for (src, out) in luma.chunks_exact(w).zip(data.chunks_exact_mut(stride)) {
        for (x, &p) in src.iter().enumerate() {
            let v = i32::from(p) + (cur[x + 1] >> 4);
            let e = if v < 128 {
                out[x / 8] |= 0x80 >> (x % 8);
                v
            } else {
                v - 255
            };
            cur[x + 2] += e * 7;
            next[x] += e * 3;
            next[x + 1] += e * 5;
            next[x + 2] += e;
        }
        std::mem::swap(&mut cur, &mut next);
        next.fill(0);
    }
    data
}

/// Pack one row: luma below `t` becomes a 1 bit.
#[inline]
fn pack_threshold(src: &[u8], out: &mut [u8], t: u8) {
    let mut chunks = src.chunks_exact(8);
    for (o, c) in out.iter_mut().zip(&mut chunks) {
        let mut b = 0u8;
        for &p in c {
            b = (b << 1) | u8::from(p < t);
        }
        *o = b;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = 0u8;
        for (i, &p) in rest.iter().enumerate() {
            b |= u8::from(p < t) << (7 - i);
        }
        out[src.len() / 8] = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_png(luma: &[u8], w: u32, h: u32) -> Vec<u8> {
        use image::ImageEncoder;
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(luma, w, h, image::ExtendedColorType::L8)
            .unwrap();
        png
    }

    #[test]
    fn gray_png_rows_match_the_reference_dither_and_threshold() {
        let mut rng = fastrand::Rng::with_seed(9);
        for i in 0..40 {
            let w = if i < 35 { rng.u32(1..70) } else { 1728 };
            let h = rng.u32(1..14);
            let luma: Vec<u8> = (0..w * h).map(|_| rng.u8(..)).collect();
            let png = gray_png(&luma, w, h);
            let fs = read_raster(&png, &Limits::default(), Bilevel::FloydSteinberg).unwrap();
            assert_eq!(fs.data, floyd_steinberg_reference(&luma, w, h), "{w}x{h}");
            let th = read_raster(&png, &Limits::default(), Bilevel::Threshold(100)).unwrap();
            let stride = (w as usize).div_ceil(8);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let black = th.data[y * stride + x / 8] & (0x80 >> (x % 8)) != 0;
                    assert_eq!(black, luma[y * w as usize + x] < 100, "{w}x{h} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn cut_gray_png_fails_where_image_fails() {
        let luma: Vec<u8> = (0..64 * 40).map(|i| (i * 7 % 256) as u8).collect();
        let png = gray_png(&luma, 64, 40);
        for cut in 8..png.len() {
            let b = &png[..cut];
            let ours = read_raster(b, &Limits::default(), Bilevel::FloydSteinberg);
            match image::load_from_memory_with_format(b, ImageFormat::Png) {
                Err(_) => assert!(ours.is_err(), "cut at {cut}"),
                Ok(img) => assert_eq!(
                    ours.unwrap().data,
                    floyd_steinberg_reference(img.into_luma8().as_raw(), 64, 40),
                    "cut at {cut}"
                ),
            }
        }
    }

    #[test]
    fn row_dither_matches_the_reference() {
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..320 {
            // Mostly narrow pages (every byte-boundary case), a few fax-wide ones.
            let w = if i < 300 {
                rng.u32(1..70)
            } else {
                rng.u32(1700..1800)
            };
            let h = rng.u32(1..12);
            let smooth = rng.bool();
            let luma: Vec<u8> = (0..w * h)
                .map(|i| {
                    if smooth {
                        (i * 37 % 256) as u8
                    } else {
                        rng.u8(..)
                    }
                })
                .collect();
            assert_eq!(
                gray_to_bilevel(&luma, w, h, Bilevel::FloydSteinberg),
                floyd_steinberg_reference(&luma, w, h),
                "{w}x{h}"
            );
        }
    }

    /// Random gray pages through every path ([`gray_to_bilevel`]: groups of eight rows on the
    /// vector wavefront, the rest on the scalar one) against the reference.
    #[test]
    fn vector_wavefront_matches_the_reference() {
        let mut rng = fastrand::Rng::with_seed(11);
        let heights = [1, 2, 3, 7, 8, 9, 15, 16, 17, 19, 20, 23, 25, 33];
        for i in 0..400 {
            let w = if i < 360 { rng.u32(1..71) } else { 1728 };
            let h = if i % 2 == 0 {
                rng.u32(1..21)
            } else {
                heights[rng.usize(..heights.len())]
            };
            let mode = rng.u8(..3);
            let luma: Vec<u8> = (0..w * h)
                .map(|j| match mode {
                    0 => rng.u8(..),
                    1 => (j * 37 % 256) as u8,
                    _ => [0, 127, 128, 255][rng.usize(..4)],
                })
                .collect();
            assert_eq!(
                gray_to_bilevel(&luma, w, h, Bilevel::FloydSteinberg),
                floyd_steinberg_reference(&luma, w, h),
                "{w}x{h} mode {mode}"
            );
        }
    }

    /// The portable lanes (the vector wavefront on other targets) give the same bits and the
    /// same errors for the next group as the SSE2 ones, on random groups of eight rows.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn portable_lanes_match_sse2() {
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..300 {
            let w = if rng.bool() { rng.usize(1..90) } else { 1728 };
            let rows: Vec<Vec<u8>> = (0..LANES)
                .map(|_| (0..w).map(|_| rng.u8(..)).collect())
                .collect();
            let stride = w.div_ceil(8);
            let run = |sse2: bool| {
                let mut fs = FloydSteinberg::new(w);
                let mut out = vec![vec![0u8; stride]; LANES];
                for _ in 0..2 {
                    let src: [&[u8]; LANES] = std::array::from_fn(|k| rows[k].as_slice());
                    let mut it = out.iter_mut();
                    let dst: [&mut [u8]; LANES] =
                        std::array::from_fn(|_| it.next().unwrap().as_mut_slice());
                    if sse2 {
                        fs.rows8_with::<Sse2>(src, dst);
                    } else {
                        fs.rows8_with::<Lanes>(src, dst);
                    }
                }
                (out, fs.below)
            };
            assert_eq!(run(true), run(false), "width {w}");
        }
    }

    /// A real scan (the project's PNG fixture): the vector path against the reference.
    #[test]
    fn vector_wavefront_matches_the_reference_on_a_scan() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scan-page.png");
        let png = std::fs::read(path).unwrap();
        let img = image::load_from_memory_with_format(&png, ImageFormat::Png)
            .unwrap()
            .into_luma8();
        let (w, h) = img.dimensions();
        let fs = read_raster(&png, &Limits::default(), Bilevel::FloydSteinberg).unwrap();
        assert_eq!(fs.data, floyd_steinberg_reference(img.as_raw(), w, h));
    }
}
