//! Fax image codec: read fax and scan pages, write RFC 3949 TIFF-F.
//!
//! Layout:
//! - `read`: sniff the input, walk TIFF IFDs, decode CCITT strips (T.4/T.6: `ccitt`, falling
//!   back to `hayro-ccitt` for strips it does not decode cleanly) and uncompressed 1-bit strips;
//! - `ccitt`: table-driven T.4/T.6 decoder for clean strips;
//! - `raster`: PNG / JPEG / PBM / PGM / PPM through `image`, then bilevel;
//! - `normalize`: scale any page to the 1728-pixel fax line;
//! - `mh`: our T.4 (MH, MR) and T.6 (MMR) encoders;
//! - `write`: the RFC 3949 TIFF-F container through `tiff`'s `DirectoryEncoder`;
//! - `check`: RFC 3949 profile S / F conformance of a TIFF file, tag by tag.

use thiserror::Error;

mod bits;
mod ccitt;
mod check;
mod mh;
mod normalize;
mod raster;
mod read;
mod write;

pub use check::{check, Conformance, PageConformance, Problem, Profiles};
pub use mh::{encode_mh, encode_mmr, encode_mr};
pub use normalize::{try_normalize, try_normalize_passthrough, FAX_WIDTH, FAX_X_DPI};

/// One bilevel page.
///
/// `data` holds `height` rows of `(width + 7) / 8` bytes each, most significant bit first,
/// bit value 1 = black (the T.4 convention, independent of the file's Photometric).
/// Pages produced by this module have the padding bits past `width` cleared, so equal images
/// compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// Width in pixels.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Horizontal resolution in dots per inch (fax: 204).
    pub x_dpi: u32,
    /// Vertical resolution in lines per inch (fax: 98, 196 or 391).
    pub y_dpi: u32,
    /// Packed rows, see the type's doc.
    pub data: Vec<u8>,
}

/// Compression written into TIFF-F (RFC 3949 §3: profile S is MH only; profile F adds MR and MMR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// T.4 one-dimensional (Modified Huffman), TIFF Compression=3, T4Options=0.
    #[default]
    Mh,
    /// T.4 two-dimensional (Modified READ), Compression=3, T4Options bit 0.
    Mr,
    /// T.6 (Modified Modified READ), Compression=4.
    Mmr,
    /// Keep each page's input coding when it is one of the three above (a TIFF page coded MH,
    /// MR or MMR), else MH. With it, [`convert`] also keeps B4 and A3 widths (2048 and 2432
    /// pixels at 200–204 dpi, RFC 3949 §4.2.1) instead of scaling them to 1728.
    /// [`write_tiff_f`] writes MH for it (it does not know the input).
    Passthrough,
}

/// Vertical resolution of the written pages (horizontal is always 204 dpi).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// 204×98 dpi.
    Standard,
    /// 204×196 dpi.
    #[default]
    Fine,
    /// 204×391 dpi (profile F only).
    Superfine,
    /// Keep the input's fax resolution when it is one of the three; else fine. With it,
    /// [`convert`] also keeps B4 and A3 widths (2048 and 2432 pixels at 200–204 dpi).
    Passthrough,
}

/// How gray pages become bilevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bilevel {
    /// Luma below the value (0..=255) is black.
    Threshold(u8),
    /// Floyd–Steinberg error diffusion.
    FloydSteinberg,
}

impl Default for Bilevel {
    fn default() -> Self {
        Bilevel::Threshold(128)
    }
}

/// Resource limits for decoding untrusted images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum pixels (width × height) of one page, checked on the input before decoding and on
    /// the normalised output. Default 2432 × 20_000 (the widest T.4 line, B4, by 20 000 rows).
    pub max_pixels_per_page: u64,
    /// Maximum pages in one job. Default 500.
    pub max_pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels_per_page: 2432 * 20_000,
            max_pages: 500,
        }
    }
}

/// Options for writing TIFF-F.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Compression of the written strips (MH by default: RFC 3949 profile S).
    pub encoding: Encoding,
    /// Vertical resolution pages are normalised to by [`convert`].
    pub resolution: Resolution,
    /// How [`convert`] makes gray and colour inputs bilevel.
    pub bilevel: Bilevel,
    /// Value of the Software tag.
    pub software: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            encoding: Encoding::Mh,
            resolution: Resolution::Fine,
            bilevel: Bilevel::default(),
            software: concat!("t37gw ", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// What went wrong with an image, by who is at fault.
#[derive(Debug, Error)]
pub enum ImageError {
    /// Not an image format we read (PNG, JPEG, PBM/PGM/PPM, TIFF).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// A recognised but broken file.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Over a [`Limits`] bound.
    #[error("image exceeds limit: {0}")]
    Limit(String),
}

impl ImageError {
    /// RFC 3463 enhanced status for a DSN about this error: 5.6.1 (media not supported) for
    /// [`ImageError::Unsupported`], 5.6.5 (conversion failed) for corrupt input, 5.3.4 (message too big) for limits.
    pub fn enhanced_status(&self) -> &'static str {
        match self {
            ImageError::Unsupported(_) => "5.6.1",
            ImageError::Corrupt(_) => "5.6.5",
            ImageError::Limit(_) => "5.3.4",
        }
    }
}

/// A written TIFF-F file.
#[derive(Debug, Clone)]
pub struct TiffF {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Number of pages (IFDs).
    pub pages: usize,
}

impl Bitmap {
    /// Bytes per packed row: `(width + 7) / 8`.
    pub fn stride(&self) -> usize {
        (self.width as usize).div_ceil(8)
    }

    /// Whether the pixel at column `x`, row `y` (pixels, from the top left) is black.
    /// Out-of-range coordinates read as white.
    pub fn is_black(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let i = y as usize * self.stride() + (x / 8) as usize;
        self.data.get(i).is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
    }
}

/// One decoded page with what went wrong decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPage {
    /// The page (1 = black), rows that did not decode left white.
    pub bitmap: Bitmap,
    /// Rows (of `bitmap.height`) that did not decode: cut-off strips, invalid T.4/T.6 codes,
    /// short uncompressed data. 0 for a clean page.
    pub damaged_rows: u32,
    /// The first decoding error on the page (strip, rows, reason), if any.
    pub damage: Option<String>,
    /// The page's coding in the input when it was T.4/T.6 (TIFF Compression 3 or 4):
    /// [`Encoding::Mh`], [`Encoding::Mr`] or [`Encoding::Mmr`]; `None` otherwise.
    pub source_encoding: Option<Encoding>,
}

/// [`read_pages`] with a damage report per page: every page of which at least one row decodes is
/// returned, with the number of rows that did not ([`DecodedPage::damaged_rows`]).
///
/// Errors: as [`read_pages`], except that a partly decoded page is not an error; a page of which
/// no row decodes is [`ImageError::Corrupt`].
pub fn read_pages_report(
    bytes: &[u8],
    limits: &Limits,
    bilevel: Bilevel,
) -> Result<Vec<DecodedPage>, ImageError> {
    if read::is_tiff(bytes) {
        let reader = PageReader::new(bytes, limits, bilevel)?;
        (0..reader.len()).map(|i| reader.page(i)).collect()
    } else {
        raster::read_raster(bytes, limits, bilevel).map(|bitmap| {
            vec![DecodedPage {
                bitmap,
                damaged_rows: 0,
                damage: None,
                source_encoding: None,
            }]
        })
    }
}

/// The pages of one TIFF file, decoded one at a time and in any order: a reader of a long fax
/// holds one page (about 0.5 MB for A4 at 204×196 dpi) instead of all of them, and can reuse that
/// page's buffer for the next ([`PageReader::page_into`]). Pages are independent (TIFF 6.0 §2:
/// each image file directory describes its own strips), so threads may decode different pages of
/// one reader at once. Decoding is as [`read_pages_report`] describes.
pub struct PageReader<'a> {
    pages: read::TiffPages<'a>,
    limits: Limits,
    bilevel: Bilevel,
}

impl<'a> PageReader<'a> {
    /// Walk the image file directories of `bytes` (nothing is decoded yet). Gray and colour pages
    /// will be made bilevel by `bilevel`.
    ///
    /// Errors: [`ImageError::Unsupported`] when `bytes` is not a TIFF file;
    /// [`ImageError::Corrupt`] for a truncated header, a broken or looping directory chain, or no
    /// directory at all; [`ImageError::Limit`] for more than `limits.max_pages` directories.
    pub fn new(bytes: &'a [u8], limits: &Limits, bilevel: Bilevel) -> Result<Self, ImageError> {
        Ok(PageReader {
            pages: read::TiffPages::new(bytes, limits)?,
            limits: *limits,
            bilevel,
        })
    }

    /// Number of pages (at least 1).
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Always false: a TIFF file has at least one page ([`PageReader::new`] refuses one without).
    pub fn is_empty(&self) -> bool {
        self.pages.len() == 0
    }

    /// Page `index` (0-based) in a new buffer. Errors: as [`PageReader::page_into`].
    pub fn page(&self, index: usize) -> Result<DecodedPage, ImageError> {
        self.page_into(index, Vec::new())
    }

    /// Page `index` (0-based), decoded into `buffer`'s allocation: hand back the previous page's
    /// `bitmap.data` and a page of the same size or smaller needs no new memory. The buffer's
    /// content does not matter.
    ///
    /// Errors, each message starting `page N: `: [`ImageError::Limit`] when the page exceeds
    /// `limits.max_pixels_per_page` (checked before allocating); [`ImageError::Unsupported`] for a
    /// layout or compression we do not read; [`ImageError::Corrupt`] for broken tags, an index
    /// past the last page, or a page of which no row decodes (a page with some rows decoded is
    /// returned with [`DecodedPage::damaged_rows`] and [`DecodedPage::damage`]).
    pub fn page_into(&self, index: usize, buffer: Vec<u8>) -> Result<DecodedPage, ImageError> {
        self.page_unnamed(index, buffer)
            .map_err(|e| read::name_page(index + 1, e))
    }

    /// [`PageReader::page_into`] with errors that do not name the page.
    fn page_unnamed(&self, index: usize, buffer: Vec<u8>) -> Result<DecodedPage, ImageError> {
        let p = self.pages.page(index, &self.limits, self.bilevel, buffer)?;
        if p.damaged_rows == p.bitmap.height {
            return Err(ImageError::Corrupt(format!(
                "no row decodes: {}",
                p.damage.as_deref().unwrap_or("no image data")
            )));
        }
        Ok(p)
    }
}

/// Decode a raw T.4 stream without a TIFF around it (mgetty's `.g3` page files, modem captures):
/// `width` pixels per row (1728 for A4), `y_dpi` lines per inch (98 standard, 196 fine, 391
/// superfine); x resolution is 204 dpi. One page: the stream up to RTC (six EOLs) or its end.
///
/// The bit order is detected: the stream is decoded MSB-first (TIFF FillOrder 1) and LSB-first
/// (FillOrder 2, what fax modems deliver and mgetty stores), as T.4 1-D (MH) and 2-D (MR, EOL +
/// tag bit), and the reading that decodes the most rows wins (a 2-D reading needs 10 % more, and
/// a reading with most of its rows damaged counts only the others; ties: a clean decode, then
/// MSB-first, then 1-D). A 64-byte Digifax header ("PC Research, Inc") is skipped. Rows are
/// capped at `limits.max_pixels_per_page / width`.
///
/// Errors: [`ImageError::Corrupt`] when `width` or `y_dpi` is 0, the data is empty or all
/// zero bits, or no row decodes either way;
/// [`ImageError::Limit`] when one row exceeds the pixel limit.
pub fn read_raw_g3(
    bytes: &[u8],
    width: u32,
    y_dpi: u32,
    limits: &Limits,
) -> Result<Vec<Bitmap>, ImageError> {
    read::read_raw_g3(bytes, width, y_dpi, limits).map(|p| vec![p])
}

/// Decode every page of one input file (TIFF of any fax compression, PNG, JPEG, PBM/PGM/PPM),
/// sniffing the format from the bytes. Gray and colour pages become bilevel by `bilevel`.
///
/// TIFF (TIFF 6.0 §3, §9, §10, §11, §13; RFC 3949): Compression 1 (none), 2 (T.4 MH
/// without EOLs, rows byte-aligned), 3 (T.4 MH or MR per T4Options bit 0, fill bits per bit 2),
/// 4 (T.6 MMR), 5 (LZW, Predictor 1 or 2) and 32773 (PackBits); 1-bit bilevel, 8-bit gray
/// (made bilevel by `bilevel`) and 8-bit RGB (luma, then bilevel); FillOrder 2 is bit-reversed; Photometric 1 (min-is-black) is inverted so that
/// the result always has 1 = black. Resolution comes from XResolution/YResolution
/// (ResolutionUnit 3 = centimetre is converted to inch); 204×196 dpi when absent.
/// Raster formats get their dpi from PNG `pHYs` or JPEG JFIF density, else 200×200.
///
/// Errors: [`ImageError::Unsupported`] for an unknown format or a TIFF feature we do not read
/// (tiles, other sample layouts, T.4 uncompressed mode, other compressions, old-style LZW);
/// [`ImageError::Limit`] when a page exceeds `limits.max_pixels_per_page` or the file has more
/// than `limits.max_pages` pages (checked before allocating);
/// [`ImageError::Corrupt`] for broken structure, or a page of which less than half the rows decode
/// (a page with at least half its rows decoded is returned, the rest white).
pub fn read_pages(
    bytes: &[u8],
    limits: &Limits,
    bilevel: Bilevel,
) -> Result<Vec<Bitmap>, ImageError> {
    if !read::is_tiff(bytes) {
        return raster::read_raster(bytes, limits, bilevel).map(|p| vec![p]);
    }
    let pages = read::read_tiff(bytes, limits, bilevel)?;
    let mut out = Vec::with_capacity(pages.len());
    for (i, p) in pages.into_iter().enumerate() {
        half_decoded(&p).map_err(|e| read::name_page(i + 1, e))?;
        if let Some(e) = &p.damage {
            let (height, decoded) = (p.bitmap.height, p.bitmap.height - p.damaged_rows);
            tracing::warn!(
                "TIFF page {} partly decoded ({decoded} of {height} rows): {e}",
                i + 1
            );
        }
        out.push(p.bitmap);
    }
    Ok(out)
}

/// Scale a page to the fax profile: 1728 px wide at 204 dpi, `resolution` lines per inch,
/// page length kept (no cropping). See [`try_normalize`] for the rule; this variant applies
/// `Limits::default()` and, should the result exceed it (only for absurd aspect ratios), caps the
/// output height at the limit instead of failing.
pub fn normalize(page: &Bitmap, resolution: Resolution) -> Bitmap {
    normalize::normalize_capped(page, resolution, &Limits::default())
}

/// Write pages already normalised as one TIFF-F file (RFC 3949 §4 profile S for MH; MR and MMR
/// are profile F), one strip per page, little-endian, FillOrder 1, Photometric 0 (min-is-white).
///
/// Each page is written as it is (width, XResolution and YResolution come from the page;
/// normalise first for a conformant file). MH/MR rows start with an EOL that ends on a byte
/// boundary (T4Options bit 2 "fill bits"); no RTC. MMR ends with EOFB.
///
/// Errors: [`ImageError::Corrupt`] when `pages` is empty, a page has zero width or height,
/// `data` is not `height × stride` bytes, or the file would exceed 4 GiB.
pub fn write_tiff_f(pages: &[Bitmap], opts: &WriteOptions) -> Result<TiffF, ImageError> {
    write::write_tiff_f(pages, opts)
}

/// [`write_tiff_f`] page by page: each page is compressed when it is pushed and only its strip
/// and geometry are kept, so a long fax needs one decoded page in memory at a time (read it with
/// [`PageReader::page_into`] and hand the buffer back). The file is the same as
/// [`write_tiff_f`]'s for the same pages.
pub struct TiffFWriter {
    opts: WriteOptions,
    /// The pushed pages without their pixels.
    geometry: Vec<Bitmap>,
    strips: Vec<write::Strip>,
}

impl TiffFWriter {
    /// An empty file to be written with `opts` (its encoding and Software tag).
    pub fn new(opts: &WriteOptions) -> Self {
        TiffFWriter {
            opts: opts.clone(),
            geometry: Vec::new(),
            strips: Vec::new(),
        }
    }

    /// Compress `page` with the writer's encoding ([`Encoding::Passthrough`] is MH) and append
    /// it. Errors: [`ImageError::Corrupt`] (`page N: …`) when the page has zero width or height or
    /// `data` is not `height × stride` bytes; nothing is appended then.
    pub fn push(&mut self, page: &Bitmap) -> Result<(), ImageError> {
        let strip = write::compress(page, self.opts.encoding)
            .map_err(|e| read::name_page(self.geometry.len() + 1, e))?;
        self.strips.push(strip);
        self.geometry.push(Bitmap {
            data: Vec::new(),
            ..*page
        });
        Ok(())
    }

    /// Pages pushed so far.
    pub fn len(&self) -> usize {
        self.geometry.len()
    }

    /// Whether no page was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.geometry.is_empty()
    }

    /// The file. Errors: [`ImageError::Corrupt`] when no page was pushed, there are more than
    /// 65535 pages (PageNumber is a SHORT, RFC 3949 §3.2.2), or the file would exceed 4 GiB.
    pub fn finish(self) -> Result<TiffF, ImageError> {
        write::assemble(&self.geometry, self.strips, &self.opts)
    }
}

/// Read every input (each a whole file's bytes), normalise each page, write one TIFF-F.
/// The same as [`convert_with_progress`] without progress reports.
pub fn convert(
    inputs: &[&[u8]],
    opts: &WriteOptions,
    limits: &Limits,
) -> Result<TiffF, ImageError> {
    convert_with_progress(inputs, opts, limits, &|_| {})
}

/// Read every input (each a whole file's bytes: TIFF, PNG, JPEG, PBM/PGM/PPM, see
/// [`read_pages`]), normalise each page to `opts.resolution` ([`try_normalize`]; with
/// [`Resolution::Passthrough`] or [`Encoding::Passthrough`], B4/A3 pages keep their width, see
/// [`try_normalize_passthrough`]), compress each with `opts.encoding` ([`Encoding::Passthrough`]:
/// the page's input coding when it was MH, MR or MMR, else MH) and write one TIFF-F
/// ([`write_tiff_f`]), pages in input order.
///
/// `progress(pages_done)` is called once per finished page (normalised and compressed) with the
/// number of pages finished so far (1, 2, … up to the total, possibly from worker threads).
/// Pages are normalised and compressed on all available cores (`std::thread::available_parallelism`)
/// when there is more than one page.
///
/// Errors: as [`read_pages`], [`try_normalize`] and [`write_tiff_f`]; [`ImageError::Limit`] when
/// the inputs hold more than `limits.max_pages` pages in all; [`ImageError::Corrupt`] when they
/// hold none.
pub fn convert_with_progress(
    inputs: &[&[u8]],
    opts: &WriteOptions,
    limits: &Limits,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<TiffF, ImageError> {
    convert_impl(inputs, opts, limits, progress).map_err(|f| match f.page {
        Some((output_page, _)) => read::name_page(output_page, f.error),
        None => f.error,
    })
}

/// A [`convert_inputs_with_progress`] failure: the error, and the input it came from.
#[derive(Debug)]
pub struct ConvertError {
    /// Index in `inputs` of the input that failed; `None` for errors of the whole conversion
    /// (no pages at all, or the output file too large).
    pub input: Option<usize>,
    /// What went wrong; a page number in it counts the pages of that input.
    pub error: ImageError,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.input {
            Some(i) => write!(f, "input {}: {}", i + 1, self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for ConvertError {}

/// [`convert_with_progress`], with errors saying which input failed (so that a caller can
/// name its file) and numbering pages within that input.
pub fn convert_inputs_with_progress(
    inputs: &[&[u8]],
    opts: &WriteOptions,
    limits: &Limits,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<TiffF, ConvertError> {
    convert_impl(inputs, opts, limits, progress).map_err(|f| ConvertError {
        input: f.input,
        error: match f.page {
            Some((_, input_page)) => read::name_page(input_page, f.error),
            None => f.error,
        },
    })
}

/// A failure inside [`convert_impl`]: the input it came from, and for an error of one page
/// not yet naming it, that page's number in the output and in its input (both from 1).
struct Failure {
    input: Option<usize>,
    page: Option<(usize, usize)>,
    error: ImageError,
}

fn convert_impl(
    inputs: &[&[u8]],
    opts: &WriteOptions,
    limits: &Limits,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<TiffF, Failure> {
    let whole = |error| Failure {
        input: None,
        page: None,
        error,
    };
    let of_input = |k: usize| {
        move |error| Failure {
            input: Some(k),
            page: None,
            error,
        }
    };
    // Each page is decoded, normalised and compressed, then only its strip and geometry are
    // kept: memory holds the pages of the inputs being worked on, not of the whole job.
    let decoded_pages = std::sync::atomic::AtomicUsize::new(0);
    let read_one = |input: &[u8]| -> Result<Vec<(Bitmap, Option<Encoding>)>, ImageError> {
        let decoded = if read::is_tiff(input) {
            read_pages_report(input, limits, opts.bilevel)?
        } else {
            vec![DecodedPage {
                bitmap: raster::read_raster(input, limits, opts.bilevel)?,
                damaged_rows: 0,
                damage: None,
                source_encoding: None,
            }]
        };
        let so_far = decoded_pages.fetch_add(decoded.len(), std::sync::atomic::Ordering::SeqCst);
        if so_far + decoded.len() > limits.max_pages {
            return Err(ImageError::Limit(format!(
                "more than {} pages",
                limits.max_pages
            )));
        }
        let mut pages = Vec::with_capacity(decoded.len());
        for (i, p) in decoded.into_iter().enumerate() {
            half_decoded(&p).map_err(|e| read::name_page(i + 1, e))?;
            pages.push((p.bitmap, p.source_encoding));
        }
        Ok(pages)
    };
    let keep_width =
        opts.resolution == Resolution::Passthrough || opts.encoding == Encoding::Passthrough;
    // Normalise and compress one page; the result keeps the page's geometry, not its pixels.
    let one = |(page, source): &(Bitmap, Option<Encoding>)| {
        let page = if keep_width {
            try_normalize_passthrough(page, opts.resolution, limits)?
        } else {
            try_normalize(page, opts.resolution, limits)?
        };
        let enc = match opts.encoding {
            Encoding::Passthrough => source.unwrap_or(Encoding::Mh),
            e => e,
        };
        let strip = write::compress(&page, enc)?;
        let geometry = Bitmap {
            data: Vec::new(),
            ..page
        };
        Ok::<_, ImageError>((geometry, strip))
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let finish = || progress(done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1);
    // One input (a multi-page TIFF): its pages over all cores. Several inputs (attachments,
    // scans): the inputs over all cores, each decoded and finished page by page.
    type Done = Result<(Bitmap, write::Strip), ImageError>;
    // Each page's result with the input it came from and its number in that input.
    let results: Vec<(usize, usize, Done)> = if let [input] = inputs {
        let numbered = |results: Vec<Done>| -> Vec<(usize, usize, Done)> {
            results
                .into_iter()
                .enumerate()
                .map(|(i, r)| (0, i + 1, r))
                .collect()
        };
        if read::is_tiff(input) {
            // Each worker decodes, normalises and compresses its own pages: memory holds one
            // page per worker, and decoding runs on every core too.
            let reader = PageReader::new(input, limits, opts.bilevel).map_err(of_input(0))?;
            let indices: Vec<usize> = (0..reader.len()).collect();
            let page = |&i: &usize| -> Done {
                let p = reader.page_unnamed(i, Vec::new())?;
                half_decoded(&p)?;
                one(&(p.bitmap, p.source_encoding))
            };
            numbered(par_map(&indices, page, &finish))
        } else {
            let pages = read_one(input).map_err(of_input(0))?;
            numbered(par_map(&pages, one, &finish))
        }
    } else {
        let per_input =
            |&(k, input): &(usize, &[u8])| -> Result<Vec<(usize, usize, Done)>, Failure> {
                Ok(read_one(input)
                    .map_err(of_input(k))?
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let r = one(&p);
                        drop(p);
                        finish();
                        (k, i + 1, r)
                    })
                    .collect())
            };
        let numbered_inputs: Vec<(usize, &[u8])> = inputs.iter().copied().enumerate().collect();
        let mut all = Vec::new();
        for r in par_map(&numbered_inputs, per_input, &|| {}) {
            all.extend(r?);
        }
        all
    };
    if results.is_empty() {
        return Err(whole(ImageError::Corrupt("no pages".into())));
    }
    let mut out_pages = Vec::with_capacity(results.len());
    let mut strips = Vec::with_capacity(results.len());
    for (i, (k, input_page, r)) in results.into_iter().enumerate() {
        let (page, strip) = r.map_err(|error| Failure {
            input: Some(k),
            page: Some((i + 1, input_page)),
            error,
        })?;
        out_pages.push(page);
        strips.push(strip);
    }
    write::assemble(&out_pages, strips, opts).map_err(whole)
}

/// Errors (not naming the page) when less than half of `p`'s rows decoded: such a page is
/// refused rather than sent mostly white.
fn half_decoded(p: &DecodedPage) -> Result<(), ImageError> {
    let decoded = p.bitmap.height - p.damaged_rows;
    match &p.damage {
        Some(e) if u64::from(decoded) * 2 < u64::from(p.bitmap.height) => Err(ImageError::Corrupt(
            format!("{e}; only {decoded} of {} rows decoded", p.bitmap.height),
        )),
        _ => Ok(()),
    }
}

/// `f` over `items` on up to `available_parallelism()` scoped threads, results in input order;
/// `done()` after each item.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    done: &(dyn Fn() + Sync),
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if workers <= 1 {
        return items
            .iter()
            .map(|t| {
                let r = f(t);
                done();
                r
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(t) = items.get(i) else { break };
                let r = f(t);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
                done();
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .expect("every item was mapped by a worker")
        })
        .collect()
}

#[cfg(test)]
mod tests;
