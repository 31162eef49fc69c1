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
    Ok(scale(page, FAX_WIDTH, ty, h.max(1) as u32))
}

/// Whether a page is B4 or A3 fax width (2048 or 2432 pixels, T.4 §2.2) at 203–204 dpi.
fn is_wide_fax(page: &Bitmap) -> bool {
    matches!(page.width, 2048 | 2432) && (203..=204).contains(&page.x_dpi)
}

/// [`try_normalize`] for a peer that says passthrough: a page already B4 or A3 fax width (2048 or
/// 2432 pixels at 203–204 dpi, RFC 3949 §4.2.1 profile F) keeps its width and only has its rows
/// resampled to `resolution` (`round(height × target_y / y_dpi)`); every other page is normalised
/// by [`try_normalize`]. x resolution is written as 204.
///
/// Errors: as [`try_normalize`].
pub fn try_normalize_passthrough(
    page: &Bitmap,
    resolution: Resolution,
    limits: &Limits,
) -> Result<Bitmap, ImageError> {
    if !is_wide_fax(page) || page.height == 0 || page.y_dpi == 0 {
        return try_normalize(page, resolution, limits);
    }
    let ty = target_y(page, resolution);
    let y = fax_y(page.y_dpi).unwrap_or(page.y_dpi);
    let h = (u64::from(page.height) * u64::from(ty) + u64::from(y) / 2) / u64::from(y);
    if h.saturating_mul(u64::from(page.width)) > limits.max_pixels_per_page {
        return Err(ImageError::Limit(format!(
            "normalised page would be {}x{h} pixels",
            page.width
        )));
    }
    Ok(scale(page, page.width, ty, h.max(1) as u32))
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
    scale(page, FAX_WIDTH, ty, h)
}

/// Nearest-neighbour (pixel centre) resampling to `out_w × h`.
fn scale(page: &Bitmap, out_w: u32, ty: u32, h: u32) -> Bitmap {
    let stride_in = page.stride();
    let unchanged = page.width == out_w
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
    let stride = (out_w as usize).div_ceil(8);
    let mut data = vec![0u8; stride * h as usize];
    let same_width = page.width == out_w;
    // Source column for each output column: centre sampling.
    let cols: Vec<u32> = (0..out_w)
        .map(|x| ((2 * u64::from(x) + 1) * u64::from(page.width) / (2 * u64::from(out_w))) as u32)
        .collect();
    let mut prev: Option<usize> = None;
    for y in 0..h as usize {
        let sy = ((2 * y as u64 + 1) * u64::from(page.height) / (2 * u64::from(h))) as usize;
        let (done, rest) = data.split_at_mut(y * stride);
        let out = &mut rest[..stride];
        if prev == Some(sy) {
            // Same source row as the output row before: copy it.
            out.copy_from_slice(&done[(y - 1) * stride..]);
            continue;
        }
        prev = Some(sy);
        let Some(src) = page.data.get(sy * stride_in..(sy + 1) * stride_in) else {
            continue;
        };
        if same_width {
            out.copy_from_slice(src);
            continue;
        }
        for (x, &sx) in cols.iter().enumerate() {
            if src[(sx / 8) as usize] & (0x80 >> (sx % 8)) != 0 {
                out[x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut page_out = Bitmap {
        width: out_w,
        height: h,
        x_dpi: FAX_X_DPI,
        y_dpi: ty,
        data,
    };
    super::bits::clear_padding(&mut page_out.data, out_w);
    page_out
}
