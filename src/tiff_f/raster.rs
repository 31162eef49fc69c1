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
/// the bilevel page, two at a time for Floyd–Steinberg ([`FloydSteinberg::two_rows`]), without
/// a full-page gray buffer. The same bits as decoding through `image` then
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
    let (mut a, mut b) = (vec![0u8; w], vec![0u8; w]);
    let mut fs = FloydSteinberg::new(w);
    let mut rows = data.chunks_exact_mut(stride);
    while let Some(out_a) = rows.next() {
        if reader.read_row(&mut a).map_err(corrupt)?.is_none() {
            return Err(ImageError::Corrupt("PNG image data ends early".into()));
        }
        match bilevel {
            Bilevel::Threshold(t) => pack_threshold(&a, out_a, t),
            Bilevel::FloydSteinberg => match rows.next() {
                Some(out_b) => {
                    if reader.read_row(&mut b).map_err(corrupt)?.is_none() {
                        return Err(ImageError::Corrupt("PNG image data ends early".into()));
                    }
                    fs.two_rows(&a, &b, out_a, out_b);
                }
                None => fs.row(&a, out_a),
            },
        }
    }
    // Past the last row: consumes the rest of the image data as the general path does.
    reader.read_row(&mut a).map_err(corrupt)?;
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
            let mut srcs = luma.chunks_exact(2 * w);
            let mut outs = data.chunks_exact_mut(2 * stride);
            for (src, out) in (&mut srcs).zip(&mut outs) {
                let (a, b) = src.split_at(w);
                let (oa, ob) = out.split_at_mut(stride);
                fs.two_rows(a, b, oa, ob);
            }
            if let (Some(src), Some(out)) = (
                srcs.remainder().get(..w),
                outs.into_remainder().get_mut(..stride),
            ) {
                fs.row(src, out);
            }
        }
    }
    data
}

/// Row-at-a-time integer Floyd–Steinberg error diffusion (weights 7/16 right, 3/16 below left,
/// 5/16 below, 1/16 below right; threshold 128; errors past the row ends are dropped), so that a
/// caller can dither rows as they are decoded without a full-page gray buffer.
///
/// The error of the pixel to the left is carried in a register and the next row's errors are
/// finalised one pixel behind, in place, so the loop stores each error cell once.
pub(crate) struct FloydSteinberg {
    /// Error diffused into each pixel (×16) of the next row from the row above.
    below: Vec<i32>,
}

impl FloydSteinberg {
    /// A ditherer for rows of `width` pixels (starting with no error).
    pub(crate) fn new(width: usize) -> Self {
        FloydSteinberg {
            below: vec![0; width],
        }
    }

    /// Dither one row of luma (`src`, 0 = black, `width` bytes) into packed bits (`out`,
    /// `ceil(width / 8)` bytes, 1 = black; fully overwritten, padding bits clear).
    #[inline]
    pub(crate) fn row(&mut self, src: &[u8], out: &mut [u8]) {
        let below = &mut self.below[..];
        let w = below.len().min(src.len()).min(out.len() * 8);
        let (mut right, mut e1, mut e2) = (0i32, 0i32, 0i32);
        let mut byte = 0u32;
        for x in 0..w {
            let v = i32::from(src[x]) + ((below[x] + right) >> 4);
            let black = i32::from(v < 128);
            let e = v - 255 + 255 * black;
            byte = (byte << 1) | black as u32;
            if x & 7 == 7 {
                out[x / 8] = byte as u8;
                byte = 0;
            }
            if x > 0 {
                below[x - 1] = 3 * e + 5 * e1 + e2;
            }
            right = 7 * e;
            e2 = e1;
            e1 = e;
        }
        if w > 0 {
            below[w - 1] = 5 * e1 + e2;
        }
        if w % 8 != 0 {
            out[w / 8] = (byte << (8 - w % 8)) as u8;
        }
    }
}

impl FloydSteinberg {
    /// Dither two consecutive rows (`a` above `b`, each `width` bytes of luma) into `out_a` and
    /// `out_b` (as [`FloydSteinberg::row`]); the same bits as two `row` calls.
    ///
    /// A two-row wavefront: row `b` runs one pixel behind row `a` and takes the error `a`
    /// diffuses into it (3/16, 5/16, 1/16) straight from registers, so the loop carries two
    /// independent error chains instead of one, and only `b`'s errors for the next row go to
    /// memory.
    #[inline]
    pub(crate) fn two_rows(&mut self, a: &[u8], b: &[u8], out_a: &mut [u8], out_b: &mut [u8]) {
        let below = &mut self.below[..];
        let w = below
            .len()
            .min(a.len())
            .min(b.len())
            .min(out_a.len() * 8)
            .min(out_b.len() * 8);
        if w < 2 {
            self.row(a, out_a);
            self.row(b, out_b);
            return;
        }
        let (a, b, below) = (&a[..w], &b[..w], &mut below[..w]);
        // Row a, pixel 0; then row a's carried error to the right and last two errors.
        let v = i32::from(a[0]) + (below[0] >> 4);
        let black = i32::from(v < 128);
        let e = v - 255 + 255 * black;
        let mut byte_a = black as u32;
        let (mut ra, mut a1, mut a2) = (7 * e, e, 0i32);
        // Row b: the same.
        let (mut rb, mut b1, mut b2) = (0i32, 0i32, 0i32);
        let mut byte_b = 0u32;
        for x in 1..w {
            // Row a, pixel x.
            let v = i32::from(a[x]) + ((below[x] + ra) >> 4);
            let black = i32::from(v < 128);
            let e = v - 255 + 255 * black;
            byte_a = (byte_a << 1) | black as u32;
            if x & 7 == 7 {
                out_a[x / 8] = byte_a as u8;
                byte_a = 0;
            }
            // What row a diffuses into row b's pixel x - 1, now final.
            let into_b = 3 * e + 5 * a1 + a2;
            ra = 7 * e;
            a2 = a1;
            a1 = e;
            // Row b, pixel x - 1.
            let xb = x - 1;
            let v = i32::from(b[xb]) + ((into_b + rb) >> 4);
            let black = i32::from(v < 128);
            let e = v - 255 + 255 * black;
            byte_b = (byte_b << 1) | black as u32;
            if xb & 7 == 7 {
                out_b[xb / 8] = byte_b as u8;
                byte_b = 0;
            }
            if xb > 0 {
                below[xb - 1] = 3 * e + 5 * b1 + b2;
            }
            rb = 7 * e;
            b2 = b1;
            b1 = e;
        }
        if w % 8 != 0 {
            out_a[w / 8] = (byte_a << (8 - w % 8)) as u8;
        }
        // Row b, last pixel: row a's errors past its end are dropped.
        let xb = w - 1;
        let into_b = 5 * a1 + a2;
        let v = i32::from(b[xb]) + ((into_b + rb) >> 4);
        let black = i32::from(v < 128);
        let e = v - 255 + 255 * black;
        byte_b = (byte_b << 1) | black as u32;
        if xb & 7 == 7 {
            out_b[xb / 8] = byte_b as u8;
            byte_b = 0;
        }
        below[xb - 1] = 3 * e + 5 * b1 + b2;
        below[xb] = 5 * e + b1;
        if w % 8 != 0 {
            out_b[w / 8] = (byte_b << (8 - w % 8)) as u8;
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
}
