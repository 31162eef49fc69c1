//! TIFF reading: our own IFD walk (TIFF 6.0 §2) and strip decoding (CCITT through `hayro-ccitt`).

use super::bits::{clear_padding, set_run};
use super::ccitt;
use super::raster::gray_to_bilevel;
use super::{Bilevel, Bitmap, DecodedPage, Encoding, ImageError, Limits};
use hayro_ccitt::{DecodeSettings, DecoderContext, EncodingMode};
use std::collections::{BTreeMap, HashSet};

/// Whether the bytes start with a classic TIFF header (`II*\0` or `MM\0*`).
pub(crate) fn is_tiff(b: &[u8]) -> bool {
    b.starts_with(b"II*\0") || b.starts_with(b"MM\0*")
}

fn corrupt(msg: impl Into<String>) -> ImageError {
    ImageError::Corrupt(msg.into())
}

pub(crate) struct File<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) le: bool,
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
pub(crate) enum Val {
    Ints(Vec<u64>),
    Reals(Vec<f64>),
    Other,
}

/// Entries of one IFD, keyed by tag, plus the next IFD offset. A tag that appears twice (TIFF 6.0
/// §2 allows each once) keeps its first value, as libtiff does.
pub(crate) fn read_ifd(f: &File, off: u64) -> Result<(BTreeMap<u16, Val>, u32), ImageError> {
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
                tags.entry(tag).or_insert(Val::Other);
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
            tags.entry(tag).or_insert(Val::Other);
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
        tags.entry(tag).or_insert(v);
    }
    let next = f.u32(off + 2 + 12 * u64::from(n)).unwrap_or(0);
    Ok((tags, next))
}

pub(crate) struct Ifd(pub(crate) BTreeMap<u16, Val>);

impl Ifd {
    pub(crate) fn ints(&self, tag: u16) -> Option<&[u64]> {
        match self.0.get(&tag) {
            Some(Val::Ints(v)) => Some(v),
            _ => None,
        }
    }
    pub(crate) fn int(&self, tag: u16) -> Option<u64> {
        self.ints(tag).and_then(|v| v.first().copied())
    }
    pub(crate) fn real(&self, tag: u16) -> Option<f64> {
        match self.0.get(&tag) {
            Some(Val::Reals(v)) => v.first().copied(),
            Some(Val::Ints(v)) => v.first().map(|&x| x as f64),
            _ => None,
        }
    }
}

/// The image directories of a TIFF file in chain order (TIFF 6.0 §2), at most `limits.max_pages`.
pub(crate) fn ifds(b: &[u8], limits: &Limits) -> Result<Vec<Ifd>, ImageError> {
    if !is_tiff(b) {
        return Err(ImageError::Unsupported("not a TIFF file".into()));
    }
    let f = File {
        b,
        le: b[0] == b'I',
    };
    let mut off = u64::from(f.u32(4).ok_or_else(|| corrupt("TIFF header truncated"))?);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while off != 0 {
        if !seen.insert(off) {
            return Err(corrupt(format!("IFD chain loops back to byte {off}")));
        }
        if out.len() >= limits.max_pages {
            return Err(ImageError::Limit(format!(
                "more than {} pages",
                limits.max_pages
            )));
        }
        let (tags, next) = read_ifd(&f, off)?;
        out.push(Ifd(tags));
        off = u64::from(next);
    }
    if out.is_empty() {
        return Err(corrupt("TIFF without any image directory"));
    }
    Ok(out)
}

/// Every page of a TIFF file with its damage report; see [`super::read_pages_report`].
pub(crate) fn read_tiff(
    b: &[u8],
    limits: &Limits,
    bilevel: Bilevel,
) -> Result<Vec<DecodedPage>, ImageError> {
    let pages = TiffPages::new(b, limits)?;
    (0..pages.len())
        .map(|i| {
            pages
                .page(i, limits, bilevel, Vec::new())
                .map_err(|e| name_page(i + 1, e))
        })
        .collect()
}

/// A TIFF file's image directories, each page decoded on request ([`TiffPages::page`]), so a
/// reader holds one page at a time (or one per worker) instead of the whole file's.
pub(crate) struct TiffPages<'a> {
    f: File<'a>,
    ifds: Vec<Ifd>,
}

impl<'a> TiffPages<'a> {
    /// The directories of `b` ([`ifds`]: at most `limits.max_pages`, at least one).
    pub(crate) fn new(b: &'a [u8], limits: &Limits) -> Result<Self, ImageError> {
        let ifds = ifds(b, limits)?;
        Ok(TiffPages {
            f: File {
                b,
                le: b[0] == b'I',
            },
            ifds,
        })
    }

    /// Number of pages (directories).
    pub(crate) fn len(&self) -> usize {
        self.ifds.len()
    }

    /// Page `i` (from 0) decoded into `buf`'s allocation (any content; a buffer of the page's size
    /// or more is reused as it is, without allocating). Errors do not name the page (see
    /// [`name_page`]).
    pub(crate) fn page(
        &self,
        i: usize,
        limits: &Limits,
        bilevel: Bilevel,
        buf: Vec<u8>,
    ) -> Result<DecodedPage, ImageError> {
        let ifd = self
            .ifds
            .get(i)
            .ok_or_else(|| corrupt(format!("no such page, the file has {}", self.ifds.len())))?;
        read_page(&self.f, ifd, limits, bilevel, buf)
    }
}

/// `e` with `page n: ` in front of its message.
pub(crate) fn name_page(n: usize, e: ImageError) -> ImageError {
    match e {
        ImageError::Corrupt(m) => ImageError::Corrupt(format!("page {n}: {m}")),
        ImageError::Unsupported(m) => ImageError::Unsupported(format!("page {n}: {m}")),
        ImageError::Limit(m) => ImageError::Limit(format!("page {n}: {m}")),
    }
}

/// (x, y) resolution in dpi; ResolutionUnit 3 (centimetre) is converted, unit 1 or absent values
/// give 204×196.
pub(crate) fn resolution(ifd: &Ifd) -> (u32, u32) {
    let unit = ifd.int(296).unwrap_or(2);
    let conv = |v: Option<f64>, default: u32| -> u32 {
        let Some(v) = v.filter(|v| v.is_finite() && *v > 0.0) else {
            return default;
        };
        let dpi = match unit {
            3 => v * 2.54,
            2 => v,
            _ => return default,
        };
        if (1.0..=100_000.0).contains(&dpi) {
            dpi.round() as u32
        } else {
            default
        }
    };
    (conv(ifd.real(282), 204), conv(ifd.real(283), 196))
}

/// Row geometry of a strip.
pub(crate) struct Geometry {
    /// Pixels per row.
    pub(crate) width: u32,
    /// Bytes per row.
    pub(crate) stride: usize,
}

/// Sample layout of a page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Samples {
    Bilevel,
    Gray8,
    Rgb8,
}

/// How a strip is compressed.
#[derive(Clone, Copy)]
enum Codec {
    Raw,
    Lzw,
    PackBits,
    Ccitt(DecodeSettings),
}

fn read_page(
    f: &File,
    ifd: &Ifd,
    limits: &Limits,
    bilevel: Bilevel,
    buf: Vec<u8>,
) -> Result<DecodedPage, ImageError> {
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
    let photometric = ifd.int(262).unwrap_or(0);
    let samples = match (bps, spp, photometric) {
        (1, 1, 0 | 1) => Samples::Bilevel,
        (8, 1, 0 | 1) => Samples::Gray8,
        (8, 3, 2) => Samples::Rgb8,
        _ => {
            return Err(ImageError::Unsupported(format!(
                "{spp} samples of {bps} bits per pixel with Photometric {photometric} \
                 (we read bilevel, 8-bit gray and 8-bit RGB)"
            )))
        }
    };
    if ifd.0.contains_key(&322) || ifd.0.contains_key(&324) {
        return Err(ImageError::Unsupported("tiled TIFF".into()));
    }
    if spp > 1 && ifd.int(284).unwrap_or(1) != 1 {
        return Err(ImageError::Unsupported(
            "PlanarConfiguration 2 (separate planes)".into(),
        ));
    }
    let predictor = ifd.int(317).unwrap_or(1);
    if predictor != 1 && !(predictor == 2 && samples != Samples::Bilevel) {
        return Err(ImageError::Unsupported(format!(
            "Predictor {predictor} with {bps} bits per sample"
        )));
    }
    let compression = ifd.int(259).unwrap_or(1);
    let mut source = None;
    let codec = match compression {
        1 => Codec::Raw,
        5 => Codec::Lzw,
        32773 => Codec::PackBits,
        2..=4 if samples != Samples::Bilevel => {
            return Err(corrupt(format!(
                "CCITT Compression {compression} with {bps} bits per sample"
            )))
        }
        2 => Codec::Ccitt(ccitt(EncodingMode::Group3_1D, false, true)),
        3 => {
            let t4 = ifd.int(292).unwrap_or(0);
            if t4 & 2 != 0 {
                return Err(ImageError::Unsupported(
                    "T.4 uncompressed mode (T4Options bit 1)".into(),
                ));
            }
            let mode = if t4 & 1 != 0 {
                source = Some(Encoding::Mr);
                EncodingMode::Group3_2D
            } else {
                source = Some(Encoding::Mh);
                EncodingMode::Group3_1D
            };
            Codec::Ccitt(ccitt(mode, true, false))
        }
        4 => {
            if ifd.int(293).unwrap_or(0) & 2 != 0 {
                return Err(ImageError::Unsupported(
                    "T.6 uncompressed mode (T6Options bit 1)".into(),
                ));
            }
            source = Some(Encoding::Mmr);
            Codec::Ccitt(ccitt(EncodingMode::Group4, false, false))
        }
        c => return Err(ImageError::Unsupported(format!("TIFF Compression {c}"))),
    };
    let bytes_per_pixel = match samples {
        Samples::Bilevel => 0,
        Samples::Gray8 => 1,
        Samples::Rgb8 => 3,
    };
    let row_bytes = if samples == Samples::Bilevel {
        (width as usize).div_ceil(8)
    } else {
        width as usize * bytes_per_pixel
    };
    let size = row_bytes
        .checked_mul(height as usize)
        .ok_or_else(|| ImageError::Limit(format!("{width}x{height} pixels")))?;
    let geo = Geometry {
        width,
        stride: row_bytes,
    };
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
    // The strip decoders write into zeroed rows (a fresh buffer comes zeroed from the allocator).
    let mut data = if buf.capacity() >= size {
        let mut data = buf;
        data.clear();
        data.resize(size, 0);
        data
    } else {
        vec![0u8; size]
    };
    let mut decoded = 0u32;
    let mut first_error = None;
    let mut strip = Vec::new();
    for (i, (&off, &cnt)) in offsets.iter().zip(&counts).enumerate() {
        let row0 = (i as u64) * u64::from(rps);
        if row0 >= u64::from(height) {
            break;
        }
        let row0 = row0 as u32;
        let rows = rps.min(height - row0);
        let input = strip_input(f.b, off, cnt, reverse, &mut strip);
        let out = &mut data[row0 as usize * row_bytes..(row0 + rows) as usize * row_bytes];
        let (got, err) = match codec {
            Codec::Raw => raw_strip(input, out, &geo),
            Codec::Lzw => lzw_strip(input, out, &geo),
            Codec::PackBits => packbits_strip(input, out, &geo),
            Codec::Ccitt(s) => ccitt_strip(input, out, &geo, rows, s),
        };
        decoded += got;
        if let (None, Some(e)) = (&first_error, err) {
            first_error = Some(format!(
                "strip {} (rows {}..{}): {e} ({got} of {rows} rows clean)",
                i + 1,
                row0,
                row0 + rows
            ));
        }
    }
    let decoded = decoded.min(height);
    let damage = match first_error {
        Some(e) => Some(e),
        None if decoded < height => Some(format!("only {decoded} of {height} rows in the strips")),
        None => None,
    };
    if predictor == 2 {
        for row in data.chunks_mut(row_bytes) {
            for x in bytes_per_pixel..row.len() {
                row[x] = row[x].wrapping_add(row[x - bytes_per_pixel]);
            }
        }
    }
    let data = match samples {
        Samples::Bilevel => {
            if photometric == 1 {
                data.iter_mut().for_each(|b| *b = !*b);
            }
            clear_padding(&mut data, width);
            data
        }
        Samples::Gray8 => {
            // Photometric 0 (WhiteIsZero) stores 0 as white: turn it into luma.
            if photometric == 0 {
                data.iter_mut().for_each(|b| *b = !*b);
            }
            gray_to_bilevel(&data, width, height, bilevel)
        }
        Samples::Rgb8 => {
            let luma: Vec<u8> = data
                .chunks_exact(3)
                .map(|p| {
                    ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114 + 500)
                        / 1000) as u8
                })
                .collect();
            drop(data);
            gray_to_bilevel(&luma, width, height, bilevel)
        }
    };
    let (x_dpi, y_dpi) = resolution(ifd);
    Ok(DecodedPage {
        bitmap: Bitmap {
            width,
            height,
            x_dpi,
            y_dpi,
            data,
        },
        damaged_rows: height - decoded,
        damage,
        source_encoding: source,
    })
}

/// The bytes of the strip at `off`, `cnt` octets long, in `b`: a strip cut short by the end of the
/// file gives what is there. With `reverse` (FillOrder 2, TIFF 6.0 §8) the bits of each octet are
/// reversed into `buf`.
fn strip_input<'x>(
    b: &'x [u8],
    off: u64,
    cnt: u64,
    reverse: bool,
    buf: &'x mut Vec<u8>,
) -> &'x [u8] {
    let start = usize::try_from(off).unwrap_or(usize::MAX).min(b.len());
    let end = start
        .saturating_add(usize::try_from(cnt).unwrap_or(usize::MAX))
        .min(b.len());
    if !reverse {
        return &b[start..end];
    }
    buf.clear();
    buf.extend(b[start..end].iter().map(|b| b.reverse_bits()));
    buf
}

pub(crate) fn ccitt(
    encoding: EncodingMode,
    end_of_line: bool,
    rows_are_byte_aligned: bool,
) -> DecodeSettings {
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
    let err =
        (n < out.len()).then(|| format!("strip holds {} of {} bytes", strip.len(), out.len()));
    (rows, err)
}

/// TIFF LZW (TIFF 6.0 §13: MSB-first codes, early code-width change), output bounded by the
/// strip's size (a decompression bomb stops there).
fn lzw_strip(strip: &[u8], out: &mut [u8], geo: &Geometry) -> (u32, Option<String>) {
    if strip.len() >= 2 && strip[0] == 0 && strip[1] & 1 == 1 {
        return (
            0,
            Some("old-style (pre-TIFF 6.0) LZW, bit-reversed codes, is not read".into()),
        );
    }
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let (mut inp, mut done) = (0usize, 0usize);
    let mut err = None;
    while done < out.len() {
        let r = dec.decode_bytes(&strip[inp..], &mut out[done..]);
        inp += r.consumed_in;
        done += r.consumed_out;
        match r.status {
            Ok(weezl::LzwStatus::Ok) if r.consumed_in + r.consumed_out > 0 => continue,
            Ok(weezl::LzwStatus::Done) | Ok(_) => {
                if done < out.len() {
                    err = Some(format!("LZW data ends after {done} of {} bytes", out.len()));
                }
                break;
            }
            Err(e) => {
                err = Some(format!("LZW: {e}"));
                break;
            }
        }
    }
    ((done / geo.stride) as u32, err)
}

/// PackBits (TIFF 6.0 §9), output bounded by the strip's size.
fn packbits_strip(strip: &[u8], out: &mut [u8], geo: &Geometry) -> (u32, Option<String>) {
    let (mut i, mut o) = (0usize, 0usize);
    while o < out.len() && i < strip.len() {
        let n = strip[i] as i8;
        i += 1;
        if n >= 0 {
            let len = (n as usize + 1).min(strip.len() - i).min(out.len() - o);
            out[o..o + len].copy_from_slice(&strip[i..i + len]);
            i += n as usize + 1;
            o += len;
        } else if n != -128 {
            let Some(&v) = strip.get(i) else { break };
            i += 1;
            let len = (1 - isize::from(n)) as usize;
            let len = len.min(out.len() - o);
            out[o..o + len].fill(v);
            o += len;
        }
    }
    let err =
        (o < out.len()).then(|| format!("PackBits data ends after {o} of {} bytes", out.len()));
    ((o / geo.stride) as u32, err)
}

struct Sink<'a> {
    out: &'a mut [u8],
    stride: usize,
    width: u32,
    row: usize,
}

impl hayro_ccitt::Decoder for Sink<'_> {
    #[inline]
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
pub(crate) fn ccitt_strip(
    strip: &[u8],
    out: &mut [u8],
    geo: &Geometry,
    rows: u32,
    s: DecodeSettings,
) -> (u32, Option<String>) {
    let coding = match s.encoding {
        EncodingMode::Group3_1D => ccitt::Coding::Mh,
        EncodingMode::Group3_2D => ccitt::Coding::Mr,
        EncodingMode::Group4 => ccitt::Coding::Mmr,
    };
    let fast = ccitt::decode(
        strip,
        out,
        geo.width,
        geo.stride,
        rows,
        ccitt::Format {
            coding,
            eol: s.end_of_line,
            byte_aligned: s.rows_are_byte_aligned,
        },
    );
    if fast.is_ok() {
        return (rows, None);
    }
    // Not a clean strip: the general decoder, with its damage report, on a cleared buffer.
    out.fill(0);
    general_strip(strip, out, geo, rows, s)
}

/// [`ccitt_strip`] without the fast path: `hayro-ccitt`, then for T.6 the `fax` crate.
pub(crate) fn general_strip(
    strip: &[u8],
    out: &mut [u8],
    geo: &Geometry,
    rows: u32,
    s: DecodeSettings,
) -> (u32, Option<String>) {
    let first = hayro_strip(strip, out, geo, rows, s);
    if s.encoding == EncodingMode::Group3_1D && s.end_of_line {
        // hayro-ccitt, like libtiff, goes on at the next EOL after a line of the wrong length
        // and keeps it as far as it goes, without an error; count those lines as damaged, as
        // libtiff warns of each ("Line length mismatch", "Premature EOL").
        let (bad, at) = mh_bad_lines(strip, geo.width, first.0);
        if let (true, Some(at)) = (bad > 0, at) {
            let then = first.1.map(|e| format!("; then {e}")).unwrap_or_default();
            return (
                first.0 - bad,
                Some(format!(
                    "{bad} line{} not {} pixels of valid T.4 codes, the first at row {at} \
                     (kept as far as {}){then}",
                    if bad == 1 { "" } else { "s" },
                    geo.width,
                    if bad == 1 {
                        "it decodes"
                    } else {
                        "they decode"
                    },
                )),
            );
        }
    }
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
    // Without a height: given one, the decoder pads the rows after an end-of-block (or what it
    // takes for one, such as a run of zero bits, which T.6 §2.2.2 does not allow as fill) with
    // white and reports success, so a strip whose data was zeroed came out as a clean white
    // page. Rows it did not decode count as damaged, as hayro-ccitt and libtiff count them.
    let ok = fax::decoder::decode_g4(strip.iter().copied(), geo.width, None, |t| {
        hayro_ccitt::Decoder::push_row(&mut sink, t)
    })
    .is_some();
    let got = (sink.row as u32).min(rows);
    if got > first.0 || (ok && got == rows) {
        out.copy_from_slice(&second);
        let err = match (ok, got < rows) {
            (false, _) => Some("invalid T.6 code (fax decoder)".to_string()),
            (true, true) => Some(format!("T.6 data ends after {got} of {rows} rows")),
            (true, false) => None,
        };
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

/// A raw T.4 stream (no TIFF around it), e.g. an mgetty `.g3` page; see [`super::read_raw_g3`].
pub(crate) fn read_raw_g3(
    bytes: &[u8],
    width: u32,
    y_dpi: u32,
    limits: &Limits,
) -> Result<Bitmap, ImageError> {
    if width == 0 || y_dpi == 0 {
        return Err(corrupt(format!("raw G3 with width {width} at {y_dpi} lpi")));
    }
    // mgetty/Digifax files may start with a 64-byte "PC Research, Inc" header.
    let body = if bytes.len() >= 64 && bytes.get(1..17) == Some(b"PC Research, Inc") {
        &bytes[64..]
    } else {
        bytes
    };
    // No code word is all zeros (T.4 §4.1): an empty or all-zero page file is a failed
    // receive, not a blank page.
    if body.iter().all(|&b| b == 0) {
        return Err(corrupt(format!(
            "raw G3 page holds no coded data ({} octets, all zero)",
            body.len()
        )));
    }
    let max_rows = (limits.max_pixels_per_page / u64::from(width)).min(u64::from(u32::MAX)) as u32;
    if max_rows == 0 {
        return Err(ImageError::Limit(format!(
            "width {width} over {} pixels per page",
            limits.max_pixels_per_page
        )));
    }
    let stride = (width as usize).div_ceil(8);
    let reversed: Vec<u8> = body.iter().map(|b| b.reverse_bits()).collect();
    let mut best: Option<(usize, bool, Vec<u8>, Option<String>)> = None;
    for (input, lsb_first) in [(body, false), (reversed.as_slice(), true)] {
        for mode in [EncodingMode::Group3_1D, EncodingMode::Group3_2D] {
            let mut settings = ccitt(mode, true, false);
            settings.columns = width;
            settings.rows = max_rows;
            let mut rows = RowCollector {
                data: Vec::new(),
                stride,
                width,
                max_rows: max_rows as usize,
            };
            let res = hayro_ccitt::decode(input, &mut rows, &mut DecoderContext::new(settings));
            let mut err = res.err().map(|e| e.to_string());
            // Damaged rows among the decoded ones (a failed decode stops before its bad row).
            let mut damaged = 0;
            if mode == EncodingMode::Group3_1D {
                // Resynchronise on EOLs past damaged lines, as fax receivers do; taken when the
                // plain decode failed, or stopped more than one line short of it (a lone
                // trailing segment after the last line is no row).
                let (data, bad) = mh_lines_resync(input, width, max_rows as usize);
                if (err.is_some() && data.len() >= rows.data.len())
                    || data.len() > rows.data.len() + stride
                {
                    rows.data = data;
                    damaged = bad;
                    err =
                        (bad > 0).then(|| format!("{bad} damaged lines, white from the damage on"));
                }
            }
            let n = rows.data.len() / stride;
            tracing::debug!("raw G3 candidate lsb={lsb_first} {mode:?}: {n} rows, {err:?}");
            // More rows wins, 2-D readings needing 10 % more (1-D data read as 2-D can run on
            // as garbage, even without an invalid code); on a tie, a clean decode; then
            // MSB-first and 1-D first. A reading with most of its lines damaged counts only
            // its undamaged ones: 2-D data read as 1-D still gives a row for every EOL, nearly
            // all of them damaged, and must not win over the clean 2-D reading.
            let counted = if damaged * 2 > n { n - damaged } else { n };
            let score = if mode == EncodingMode::Group3_1D {
                counted * 11
            } else {
                counted * 10
            };
            let better = match &best {
                None => true,
                Some((bs, _, _, berr)) => {
                    score > *bs || (score == *bs && berr.is_some() && err.is_none())
                }
            };
            if better {
                best = Some((score, lsb_first, rows.data, err));
            }
        }
    }
    let Some((_, lsb_first, data, err)) = best else {
        return Err(corrupt("raw G3: nothing decoded"));
    };
    let n = data.len() / stride;
    if n == 0 {
        return Err(corrupt(format!(
            "raw G3: no row decodes in either bit order ({})",
            err.unwrap_or_default()
        )));
    }
    if let Some(e) = err {
        tracing::warn!(
            "raw G3 ({} first): {e} after {n} rows",
            if lsb_first { "LSB" } else { "MSB" }
        );
    }
    Ok(Bitmap {
        width,
        height: n as u32,
        x_dpi: super::FAX_X_DPI,
        y_dpi,
        data,
    })
}

/// Decoded rows of unknown count, bounded by `max_rows`.
struct RowCollector {
    data: Vec<u8>,
    stride: usize,
    width: u32,
    max_rows: usize,
}

impl hayro_ccitt::Decoder for RowCollector {
    fn push_row(&mut self, changes: &[u32]) {
        if self.data.len() / self.stride >= self.max_rows {
            return;
        }
        let at = self.data.len();
        self.data.resize(at + self.stride, 0);
        let row = &mut self.data[at..];
        for pair in changes.chunks(2) {
            let end = pair.get(1).copied().unwrap_or(self.width);
            set_run(row, pair[0], end.min(self.width));
        }
    }
}

/// Bit positions just past each EOL (eleven or more 0 bits then a 1, T.4 §4.1.2) in an
/// MSB-first stream; stops after RTC (six EOLs in a row, T.4 §4.1.4).
fn eol_ends(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut zeros = 0usize;
    let mut empty_run = 0;
    let mut last_end = usize::MAX;
    for (i, &b) in data.iter().enumerate() {
        if b == 0 {
            zeros += 8;
            continue;
        }
        for k in 0..8 {
            let bit = b & (0x80 >> k) != 0;
            if !bit {
                zeros += 1;
                continue;
            }
            let pos = i * 8 + k + 1;
            if zeros >= 11 {
                // Consecutive EOLs (nothing but the EOL between) count towards RTC.
                if last_end != usize::MAX && pos - last_end == 12 {
                    empty_run += 1;
                    if empty_run >= 5 {
                        out.pop();
                        return out;
                    }
                } else {
                    empty_run = 0;
                }
                out.push(pos);
                last_end = pos;
            }
            zeros = 0;
        }
    }
    out
}

/// Bits `start..end` of an MSB-first stream, repacked from bit 0.
fn bit_slice(data: &[u8], start: usize, end: usize) -> Vec<u8> {
    let mut out = vec![0u8; (end - start).div_ceil(8)];
    for (j, pos) in (start..end).enumerate() {
        if data[pos / 8] & (0x80 >> (pos % 8)) != 0 {
            out[j / 8] |= 0x80 >> (j % 8);
        }
    }
    out
}

/// The lines of a T.4 1-D (MH) stream with EOLs (T.4 §4.1.2) among its first `rows` that are not
/// exactly `width` pixels of valid code words (T.4 §4.1.1): how many, and the first one's row.
/// Lines as [`mh_lines`] gives them, as [`mh_lines_resync`] counts them.
fn mh_bad_lines(data: &[u8], width: u32, rows: u32) -> (u32, Option<u32>) {
    let (mut bad, mut first) = (0u32, None);
    for (row, line) in (0..rows).zip(mh_lines(data)) {
        if !ccitt::mh_line_lenient(&line, width).1 {
            bad += 1;
            first.get_or_insert(row);
        }
    }
    (bad, first)
}

/// The coded lines of a T.4 1-D stream with EOLs: the bits from one EOL to the next (repacked
/// from bit 0), the last one to the end of the data; EOLs back to back and fill bits alone are
/// no line.
fn mh_lines(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let ends = eol_ends(data);
    (0..ends.len()).filter_map(move |i| {
        let start = ends[i];
        let end = ends.get(i + 1).map_or(data.len() * 8, |&e| e - 12);
        let line = (end > start).then(|| bit_slice(data, start, end))?;
        line.iter().any(|&b| b != 0).then_some(line)
    })
}

/// T.4 1-D (MH) with EOLs decoded line by line between EOLs, so that a damaged line costs only
/// itself (its runs before the damage kept, white from there, as libtiff's `fax2tiff` does; see
/// [`ccitt::mh_line_lenient`]): returns (packed rows, damaged lines).
pub(crate) fn mh_lines_resync(data: &[u8], width: u32, max_rows: usize) -> (Vec<u8>, usize) {
    let stride = (width as usize).div_ceil(8);
    let mut rows = Vec::new();
    let mut bad = 0;
    for line in mh_lines(data).take(max_rows) {
        // Like libtiff's fax2tiff, a damaged line keeps the runs before the damage and is
        // white from there.
        let (changes, ok) = ccitt::mh_line_lenient(&line, width);
        if !ok {
            bad += 1;
        }
        let mut one = RowCollector {
            data: Vec::new(),
            stride,
            width,
            max_rows: 1,
        };
        hayro_ccitt::Decoder::push_row(&mut one, &changes);
        rows.extend_from_slice(&one.data);
    }
    (rows, bad)
}
