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
    let mut luma = img.to_luma8();
    drop(img);
    let stride = (width as usize).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    let threshold = match bilevel {
        Bilevel::Threshold(t) => t,
        Bilevel::FloydSteinberg => {
            image::imageops::dither(&mut luma, &image::imageops::colorops::BiLevel);
            128
        }
    };
    for (y, row) in luma.rows().enumerate() {
        let out = &mut data[y * stride..(y + 1) * stride];
        for (x, p) in row.enumerate() {
            if p.0[0] < threshold {
                out[x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let (x_dpi, y_dpi) = density(bytes).unwrap_or((DEFAULT_SCAN_DPI, DEFAULT_SCAN_DPI));
    Ok(Bitmap {
        width,
        height,
        x_dpi,
        y_dpi,
        data,
    })
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
