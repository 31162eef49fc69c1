//! Scaling pages to the fax line (T.4 §2: 1728 pels on 215 mm, i.e. 204 dpi across).

use super::{Bitmap, ImageError, Limits, Resolution};

/// Fax line width in pixels at 204 dpi (ITU-T T.4 §2.2, A4/Letter).
pub const FAX_WIDTH: u32 = 1728;
/// Horizontal fax resolution in dpi (8 pels/mm, written as 204 in TIFF-F, RFC 3949 §4).
pub const FAX_X_DPI: u32 = 204;

/// The fax vertical resolution class of a y resolution: 3.85, 7.7 or 15.4 lines/mm written as
/// 98, 196 or 391 lines per inch; nearby values (from rounding) are accepted.
fn fax_y(y: u32) -> Option<u32> {
    match y {
        97..=99 => Some(98),
        195..=197 => Some(196),
        390..=392 => Some(391),
        _ => None,
    }
}

fn target_y(page: &Bitmap, resolution: Resolution) -> u32 {
    match resolution {
        Resolution::Standard => 98,
        Resolution::Fine => 196,
        Resolution::Superfine => 391,
        Resolution::Passthrough => fax_y(page.y_dpi).unwrap_or(196),
    }
}

/// Output height in rows, or `None` for a degenerate page.
fn out_height(page: &Bitmap, ty: u32) -> Option<u64> {
    let x = if page.width == FAX_WIDTH && (203..=204).contains(&page.x_dpi) {
        FAX_X_DPI
    } else {
        page.x_dpi
    };
    let y = fax_y(page.y_dpi).unwrap_or(page.y_dpi);
    if page.width == 0 || page.height == 0 || x == 0 || y == 0 {
        return None;
    }
    // new_height = height × (1728 / width) × (x_dpi / y_dpi) × (target_y / 204), rounded.
    let num = u128::from(page.height) * u128::from(FAX_WIDTH) * u128::from(x) * u128::from(ty);
    let den = u128::from(page.width) * u128::from(y) * u128::from(FAX_X_DPI);
    u64::try_from((num + den / 2) / den).ok()
}

/// Scale a page to the fax profile: 1728 px wide at 204 dpi, `resolution` lines per inch
/// (Standard 98, Fine 196, Superfine 391; Passthrough keeps the page's 98/196/391 and uses 196
/// otherwise), never cropping.
///
/// Rule: the page's width is fitted to the 1728-pixel fax line and its physical aspect ratio is
/// kept, so `new_height = round(height × (1728 / width) × (x_dpi / y_dpi) × (target_y / 204))`.
/// A 1728 px page at 204 dpi keeps its physical size (only rows are resampled); an A4 scan at
/// 200 dpi (1654 px = 8.27 in) is enlarged by 2.4 % to fill the 8.47 in fax line. A page that is
/// already 1728 px wide at 203–204 dpi with the target vertical resolution (±1 line per inch) is returned
/// pixel-exact, with its dpi set to 204 and the exact fax value. Sampling is nearest-neighbour
/// (pixel centres).
///
/// Errors: [`ImageError::Limit`] when the output would exceed `limits.max_pixels_per_page`;
/// [`ImageError::Corrupt`] for a page with zero width, height or dpi.
pub fn try_normalize(
    page: &Bitmap,
    resolution: Resolution,
    limits: &Limits,
) -> Result<Bitmap, ImageError> {
    let ty = target_y(page, resolution);
    let h = out_height(page, ty).ok_or_else(|| {
        ImageError::Corrupt(format!(
            "page {}x{} at {}x{} dpi",
            page.width, page.height, page.x_dpi, page.y_dpi
        ))
    })?;
    if h.saturating_mul(u64::from(FAX_WIDTH)) > limits.max_pixels_per_page {
        return Err(ImageError::Limit(format!(
            "normalised page would be 1728x{h} pixels"
        )));
    }
    Ok(scale(page, ty, h.max(1) as u32))
}

/// [`try_normalize`] that caps the output height at what `limits` allows instead of failing.
pub(crate) fn normalize_capped(page: &Bitmap, resolution: Resolution, limits: &Limits) -> Bitmap {
    let ty = target_y(page, resolution);
    let cap = (limits.max_pixels_per_page / u64::from(FAX_WIDTH)).clamp(1, u64::from(u32::MAX));
    let h = out_height(page, ty).unwrap_or(1).clamp(1, cap) as u32;
    if page.width == 0 || page.height == 0 {
        let stride = (FAX_WIDTH as usize).div_ceil(8);
        return Bitmap {
            width: FAX_WIDTH,
            height: h,
            x_dpi: FAX_X_DPI,
            y_dpi: ty,
            data: vec![0; stride * h as usize],
        };
    }
    scale(page, ty, h)
}

fn scale(page: &Bitmap, ty: u32, h: u32) -> Bitmap {
    let stride_in = page.stride();
    let unchanged = page.width == FAX_WIDTH
        && (203..=204).contains(&page.x_dpi)
        && fax_y(page.y_dpi) == Some(ty)
        && h == page.height
        && page.data.len() == stride_in * page.height as usize;
    if unchanged {
        return Bitmap {
            x_dpi: FAX_X_DPI,
            y_dpi: ty,
            ..page.clone()
        };
    }
    let stride = (FAX_WIDTH as usize).div_ceil(8);
    let mut data = vec![0u8; stride * h as usize];
    // Source column for each output column: centre sampling.
    let cols: Vec<u32> = (0..FAX_WIDTH)
        .map(|x| {
            ((2 * u64::from(x) + 1) * u64::from(page.width) / (2 * u64::from(FAX_WIDTH))) as u32
        })
        .collect();
    for (y, out) in data.chunks_mut(stride).enumerate() {
        let sy = ((2 * y as u64 + 1) * u64::from(page.height) / (2 * u64::from(h))) as usize;
        let Some(src) = page.data.get(sy * stride_in..(sy + 1) * stride_in) else {
            continue;
        };
        for (x, &sx) in cols.iter().enumerate() {
            if src[(sx / 8) as usize] & (0x80 >> (sx % 8)) != 0 {
                out[x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    Bitmap {
        width: FAX_WIDTH,
        height: h,
        x_dpi: FAX_X_DPI,
        y_dpi: ty,
        data,
    }
}
