//! TIFF reading: our own IFD walk (TIFF 6.0 §2) and strip decoding (CCITT through `hayro-ccitt`).

use super::bits::{clear_padding, set_run};
use super::{Bitmap, ImageError, Limits};
use hayro_ccitt::{DecodeSettings, DecoderContext, EncodingMode};
use std::collections::{BTreeMap, HashSet};

/// Whether the bytes start with a classic TIFF header (`II*\0` or `MM\0*`).
pub(crate) fn is_tiff(b: &[u8]) -> bool {
    b.starts_with(b"II*\0") || b.starts_with(b"MM\0*")
}

fn corrupt(msg: impl Into<String>) -> ImageError {
    ImageError::Corrupt(msg.into())
}

struct File<'a> {
    b: &'a [u8],
    le: bool,
}

impl File<'_> {
    fn bytes(&self, off: u64, n: u64) -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(n).ok()?)?;
        self.b.get(start..end)
    }
    fn u16(&self, off: u64) -> Option<u16> {
        let s: [u8; 2] = self.bytes(off, 2)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    }
    fn u32(&self, off: u64) -> Option<u32> {
        let s: [u8; 4] = self.bytes(off, 4)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }
}

/// One IFD entry's values: integers, or rationals as f64.
#[derive(Debug, Clone)]
enum Val {
    Ints(Vec<u64>),
    Reals(Vec<f64>),
    Other,
}

/// Entries of one IFD, keyed by tag, plus the next IFD offset.
fn read_ifd(f: &File, off: u64) -> Result<(BTreeMap<u16, Val>, u32), ImageError> {
    let n = f
        .u16(off)
        .ok_or_else(|| corrupt(format!("IFD at byte {off} is past the end of the file")))?;
    let mut tags = BTreeMap::new();
    for i in 0..u64::from(n) {
        let e = off + 2 + 12 * i;
        let (Some(tag), Some(ty), Some(count)) = (f.u16(e), f.u16(e + 2), f.u32(e + 4)) else {
            return Err(corrupt(format!(
                "IFD at byte {off}: entry {i} is truncated"
            )));
        };
        let size: u64 = match ty {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => {
                tags.insert(tag, Val::Other);
                continue;
            }
        };
        let total = size * u64::from(count);
        let data_off = if total <= 4 {
            e + 8
        } else {
            u64::from(f.u32(e + 8).ok_or_else(|| corrupt("truncated IFD entry"))?)
        };
        let Some(data) = f.bytes(data_off, total) else {
            // Out-of-file value: keep going, the tags we need are checked later.
            tags.insert(tag, Val::Other);
            continue;
        };
        let sub = File { b: data, le: f.le };
        let cnt = u64::from(count);
        let v = match ty {
            1 | 7 => Val::Ints(data.iter().map(|&x| u64::from(x)).collect()),
            3 => Val::Ints(
                (0..cnt)
                    .filter_map(|k| sub.u16(2 * k))
                    .map(u64::from)
                    .collect(),
            ),
            4 | 13 => Val::Ints(
                (0..cnt)
                    .filter_map(|k| sub.u32(4 * k))
                    .map(u64::from)
                    .collect(),
            ),
            5 => Val::Reals(
                (0..cnt)
                    .filter_map(|k| Some((sub.u32(8 * k)?, sub.u32(8 * k + 4)?)))
                    .map(|(a, b)| {
                        if b == 0 {
                            0.0
                        } else {
                            f64::from(a) / f64::from(b)
                        }
                    })
                    .collect(),
            ),
            _ => Val::Other,
        };
        tags.insert(tag, v);
    }
    let next = f.u32(off + 2 + 12 * u64::from(n)).unwrap_or(0);
    Ok((tags, next))
}

struct Ifd(BTreeMap<u16, Val>);

impl Ifd {
    fn ints(&self, tag: u16) -> Option<&[u64]> {
        match self.0.get(&tag) {
            Some(Val::Ints(v)) => Some(v),
            _ => None,
        }
    }
    fn int(&self, tag: u16) -> Option<u64> {
        self.ints(tag).and_then(|v| v.first().copied())
    }
    fn real(&self, tag: u16) -> Option<f64> {
        match self.0.get(&tag) {
            Some(Val::Reals(v)) => v.first().copied(),
            Some(Val::Ints(v)) => v.first().map(|&x| x as f64),
            _ => None,
        }
    }
}

/// Every page of a TIFF file; see [`super::read_pages`].
pub(crate) fn read_tiff(b: &[u8], limits: &Limits) -> Result<Vec<Bitmap>, ImageError> {
    let f = File {
        b,
        le: b[0] == b'I',
    };
    let mut off = u64::from(f.u32(4).ok_or_else(|| corrupt("TIFF header truncated"))?);
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    while off != 0 {
        if !seen.insert(off) {
            return Err(corrupt(format!("IFD chain loops back to byte {off}")));
        }
        if pages.len() >= limits.max_pages {
            return Err(ImageError::Limit(format!(
                "more than {} pages",
                limits.max_pages
            )));
        }
        let (tags, next) = read_ifd(&f, off)?;
        let n = pages.len() + 1;
        pages.push(read_page(&f, &Ifd(tags), limits).map_err(|e| match e {
            ImageError::Corrupt(m) => ImageError::Corrupt(format!("page {n}: {m}")),
            ImageError::Unsupported(m) => ImageError::Unsupported(format!("page {n}: {m}")),
            ImageError::Limit(m) => ImageError::Limit(format!("page {n}: {m}")),
        })?);
        off = u64::from(next);
    }
    if pages.is_empty() {
        return Err(corrupt("TIFF without any image directory"));
    }
    Ok(pages)
}

fn resolution(ifd: &Ifd) -> (u32, u32) {
    let unit = ifd.int(296).unwrap_or(2);
    let conv = |v: Option<f64>, default: u32| -> u32 {
        let Some(v) = v.filter(|v| v.is_finite() && *v > 0.0) else {
            return default;
        };
        let dpi = if unit == 3 { v * 2.54 } else { v };
        if (1.0..=100_000.0).contains(&dpi) {
            dpi.round() as u32
        } else {
            default
        }
    };
    (conv(ifd.real(282), 204), conv(ifd.real(283), 196))
}

struct Geometry {
    width: u32,
    stride: usize,
}

fn read_page(f: &File, ifd: &Ifd, limits: &Limits) -> Result<Bitmap, ImageError> {
    let width = ifd.int(256).ok_or_else(|| corrupt("no ImageWidth"))?;
    let height = ifd.int(257).ok_or_else(|| corrupt("no ImageLength"))?;
    if width == 0 || height == 0 {
        return Err(corrupt(format!("empty image {width}x{height}")));
    }
    let pixels = width.saturating_mul(height);
    if pixels > limits.max_pixels_per_page {
        return Err(ImageError::Limit(format!(
            "{width}x{height} pixels, over {} per page",
            limits.max_pixels_per_page
        )));
    }
    let (width, height) = match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(ImageError::Limit(format!("{width}x{height} pixels"))),
    };
    let bps = ifd.int(258).unwrap_or(1);
    let spp = ifd.int(277).unwrap_or(1);
    if bps != 1 || spp != 1 {
        return Err(ImageError::Unsupported(format!(
            "{spp} samples of {bps} bits per pixel, not bilevel"
        )));
    }
    if ifd.0.contains_key(&322) || ifd.0.contains_key(&324) {
        return Err(ImageError::Unsupported("tiled TIFF".into()));
    }
    let photometric = ifd.int(262).unwrap_or(0);
    if photometric > 1 {
        return Err(ImageError::Unsupported(format!(
            "Photometric {photometric} for a bilevel image"
        )));
    }
    let compression = ifd.int(259).unwrap_or(1);
    let settings = match compression {
        1 => None,
        2 => Some(ccitt(EncodingMode::Group3_1D, false, true)),
        3 => {
            let t4 = ifd.int(292).unwrap_or(0);
            if t4 & 2 != 0 {
                return Err(ImageError::Unsupported(
                    "T.4 uncompressed mode (T4Options bit 1)".into(),
                ));
            }
            let mode = if t4 & 1 != 0 {
                EncodingMode::Group3_2D
            } else {
                EncodingMode::Group3_1D
            };
            Some(ccitt(mode, true, false))
        }
        4 => {
            if ifd.int(293).unwrap_or(0) & 2 != 0 {
                return Err(ImageError::Unsupported(
                    "T.6 uncompressed mode (T6Options bit 1)".into(),
                ));
            }
            Some(ccitt(EncodingMode::Group4, false, false))
        }
        c => return Err(ImageError::Unsupported(format!("TIFF Compression {c}"))),
    };
    let stride = (width as usize).div_ceil(8);
    let size = stride
        .checked_mul(height as usize)
        .ok_or_else(|| ImageError::Limit(format!("{width}x{height} pixels")))?;
    let geo = Geometry { width, stride };
    let offsets = ifd.ints(273).ok_or_else(|| corrupt("no StripOffsets"))?;
    let counts: Vec<u64> = match ifd.ints(279) {
        Some(c) if c.len() == offsets.len() => c.to_vec(),
        Some(_) => return Err(corrupt("StripOffsets and StripByteCounts differ in length")),
        // TIFF 6.0 requires StripByteCounts; a lone strip may run to the end of the file.
        None if offsets.len() == 1 => vec![(f.b.len() as u64).saturating_sub(offsets[0])],
        None => return Err(corrupt("no StripByteCounts")),
    };
    let rps = ifd
        .int(278)
        .unwrap_or(u64::from(height))
        .clamp(1, u64::from(height)) as u32;
    let reverse = ifd.int(266) == Some(2);
    let mut data = vec![0u8; size];
    let mut decoded = 0u32;
    let mut first_error = None;
    for (i, (&off, &cnt)) in offsets.iter().zip(&counts).enumerate() {
        let row0 = (i as u64) * u64::from(rps);
        if row0 >= u64::from(height) {
            break;
        }
        let row0 = row0 as u32;
        let rows = rps.min(height - row0);
        // A strip cut short by the end of the file decodes what is there.
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(f.b.len());
        let end = start
            .saturating_add(usize::try_from(cnt).unwrap_or(usize::MAX))
            .min(f.b.len());
        let mut strip = f.b[start..end].to_vec();
        if reverse {
            strip.iter_mut().for_each(|b| *b = b.reverse_bits());
        }
        let out = &mut data[row0 as usize * stride..(row0 + rows) as usize * stride];
        let (got, err) = match settings {
            None => raw_strip(&strip, out, &geo),
            Some(s) => ccitt_strip(&strip, out, &geo, rows, s),
        };
        decoded += got;
        if let (None, Some(e)) = (&first_error, err) {
            first_error = Some(format!(
                "strip {} (rows {}..{}): {e} after {got} of {rows} rows",
                i + 1,
                row0,
                row0 + rows
            ));
        }
    }
    if let Some(e) = first_error {
        if u64::from(decoded) * 2 < u64::from(height) {
            return Err(corrupt(format!(
                "{e}; only {decoded} of {height} rows decoded"
            )));
        }
        tracing::warn!("TIFF page partly decoded ({decoded} of {height} rows): {e}");
    } else if u64::from(decoded) * 2 < u64::from(height) {
        return Err(corrupt(format!("only {decoded} of {height} rows decoded")));
    }
    if photometric == 1 {
        data.iter_mut().for_each(|b| *b = !*b);
    }
    clear_padding(&mut data, width);
    let (x_dpi, y_dpi) = resolution(ifd);
    Ok(Bitmap {
        width,
        height,
        x_dpi,
        y_dpi,
        data,
    })
}

fn ccitt(encoding: EncodingMode, end_of_line: bool, rows_are_byte_aligned: bool) -> DecodeSettings {
    DecodeSettings {
        columns: 0,
        rows: 0,
        end_of_block: true,
        end_of_line,
        rows_are_byte_aligned,
        encoding,
        strict: false,
    }
}

/// Uncompressed rows: returns (rows copied, error if the strip is short).
fn raw_strip(strip: &[u8], out: &mut [u8], geo: &Geometry) -> (u32, Option<String>) {
    let n = strip.len().min(out.len());
    out[..n].copy_from_slice(&strip[..n]);
    let rows = (n / geo.stride) as u32;
    let want = out.len() / geo.stride;
    let err = (n < out.len())
        .then(|| format!("strip holds {} of {} bytes", strip.len(), want * geo.stride));
    (rows, err)
}

struct Sink<'a> {
    out: &'a mut [u8],
    stride: usize,
    width: u32,
    row: usize,
}

impl hayro_ccitt::Decoder for Sink<'_> {
    fn push_row(&mut self, changes: &[u32]) {
        let Some(row) = self
            .out
            .get_mut(self.row * self.stride..(self.row + 1) * self.stride)
        else {
            return;
        };
        for pair in changes.chunks(2) {
            let end = pair.get(1).copied().unwrap_or(self.width);
            set_run(row, pair[0], end.min(self.width));
        }
        self.row += 1;
    }
}

/// One CCITT strip: returns (rows decoded, error text).
///
/// T.6 strips that `hayro-ccitt` rejects get a second chance with the `fax` crate's decoder, which
/// reads some real-world files hayro stops on; the attempt that decodes more rows wins.
fn ccitt_strip(
    strip: &[u8],
    out: &mut [u8],
    geo: &Geometry,
    rows: u32,
    s: DecodeSettings,
) -> (u32, Option<String>) {
    let first = hayro_strip(strip, out, geo, rows, s);
    if first.1.is_none() || s.encoding != EncodingMode::Group4 {
        return first;
    }
    let mut second = vec![0u8; out.len()];
    let mut sink = Sink {
        out: &mut second,
        stride: geo.stride,
        width: geo.width,
        row: 0,
    };
    let ok = fax::decoder::decode_g4(strip.iter().copied(), geo.width, Some(rows), |t| {
        hayro_ccitt::Decoder::push_row(&mut sink, t)
    })
    .is_some();
    let got = (sink.row as u32).min(rows);
    if got > first.0 || (ok && got == rows) {
        out.copy_from_slice(&second);
        let err = (!ok || got < rows).then(|| "invalid T.6 code (fax decoder)".to_string());
        return (got, err);
    }
    first
}

fn hayro_strip(
    strip: &[u8],
    out: &mut [u8],
    geo: &Geometry,
    rows: u32,
    mut s: DecodeSettings,
) -> (u32, Option<String>) {
    s.columns = geo.width;
    s.rows = rows;
    let mut ctx = DecoderContext::new(s);
    let mut sink = Sink {
        out,
        stride: geo.stride,
        width: geo.width,
        row: 0,
    };
    let res = hayro_ccitt::decode(strip, &mut sink, &mut ctx);
    let got = (sink.row as u32).min(rows);
    match res {
        Err(e) => (got, Some(e.to_string())),
        Ok(_) if got < rows => (got, Some("data ends early".into())),
        Ok(_) => (got, None),
    }
}
