//! Fax image codec: read fax and scan pages, write RFC 3949 TIFF-F.
//!
//! Layout:
//! - `read`: sniff the input, walk TIFF IFDs, decode CCITT strips (T.4/T.6 via `hayro-ccitt`)
//!   and uncompressed 1-bit strips;
//! - `raster`: PNG / JPEG / PBM / PGM / PPM through `image`, then bilevel;
//! - `normalize`: scale any page to the 1728-pixel fax line;
//! - `mh`: our T.4 encoders (MH, MR) plus `fax`'s T.6 (MMR) encoder;
//! - `write`: the RFC 3949 TIFF-F container through `tiff`'s `DirectoryEncoder`.

use thiserror::Error;

mod bits;
mod mh;
mod normalize;
mod raster;
mod read;
mod write;

pub use mh::{encode_mh, encode_mmr, encode_mr};
pub use normalize::{try_normalize, FAX_WIDTH, FAX_X_DPI};

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
    /// Keep the input's fax resolution when it is one of the three; else fine.
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

/// Decode every page of one input file (TIFF of any fax compression, PNG, JPEG, PBM/PGM/PPM),
/// sniffing the format from the bytes. Gray and colour pages become bilevel by `bilevel`.
///
/// TIFF (TIFF 6.0 §3, §10, §11; RFC 3949): Compression 1 (1 bit per sample), 2 (T.4 MH
/// without EOLs, rows byte-aligned), 3 (T.4 MH or MR per T4Options bit 0, fill bits per bit 2)
/// and 4 (T.6 MMR); FillOrder 2 is bit-reversed; Photometric 1 (min-is-black) is inverted so that
/// the result always has 1 = black. Resolution comes from XResolution/YResolution
/// (ResolutionUnit 3 = centimetre is converted to inch); 204×196 dpi when absent.
/// Raster formats get their dpi from PNG `pHYs` or JPEG JFIF density, else 200×200.
///
/// Errors: [`ImageError::Unsupported`] for an unknown format or a TIFF feature we do not read
/// (tiles, more than 1 bit per sample, T.4 uncompressed mode, other compressions);
/// [`ImageError::Limit`] when a page exceeds `limits.max_pixels_per_page` or the file has more
/// than `limits.max_pages` pages (checked before allocating);
/// [`ImageError::Corrupt`] for broken structure, or a page of which less than half the rows decode
/// (a page with at least half its rows decoded is returned, the rest white).
pub fn read_pages(
    bytes: &[u8],
    limits: &Limits,
    bilevel: Bilevel,
) -> Result<Vec<Bitmap>, ImageError> {
    if read::is_tiff(bytes) {
        read::read_tiff(bytes, limits)
    } else {
        raster::read_raster(bytes, limits, bilevel).map(|p| vec![p])
    }
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

/// Read every input (each a whole file's bytes), normalise each page, write one TIFF-F.
pub fn convert(
    inputs: &[&[u8]],
    opts: &WriteOptions,
    limits: &Limits,
) -> Result<TiffF, ImageError> {
    let mut pages = Vec::new();
    for input in inputs {
        for page in read_pages(input, limits, opts.bilevel)? {
            if pages.len() >= limits.max_pages {
                return Err(ImageError::Limit(format!(
                    "more than {} pages",
                    limits.max_pages
                )));
            }
            pages.push(try_normalize(&page, opts.resolution, limits)?);
        }
    }
    if pages.is_empty() {
        return Err(ImageError::Corrupt("no pages".into()));
    }
    write_tiff_f(&pages, opts)
}

#[cfg(test)]
mod tests;
