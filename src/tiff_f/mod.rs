//! Fax image codec: read fax and scan pages, write RFC 3949 TIFF-F.
//!
//! STUB: the public API below is the contract; bodies are filled in by the codec work.

use thiserror::Error;

/// One bilevel page.
///
/// `data` holds `height` rows of `(width + 7) / 8` bytes each, most significant bit first,
/// bit value 1 = black (the T.4 convention, independent of the file's Photometric).
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
    /// Maximum pixels (width × height) of one page. Default 1728 × 10_000.
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
    pub encoding: Encoding,
    pub resolution: Resolution,
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

/// Decode every page of one input file (TIFF of any fax compression, PNG, JPEG, PBM/PGM/PPM),
/// sniffing the format from the bytes. Gray and colour pages become bilevel by `bilevel`.
pub fn read_pages(
    _bytes: &[u8],
    _limits: &Limits,
    _bilevel: Bilevel,
) -> Result<Vec<Bitmap>, ImageError> {
    unimplemented!("tiff_f::read_pages")
}

/// Scale a page to the fax profile: 1728 px wide at 204 dpi, `resolution` lines per inch,
/// page length kept (no cropping).
pub fn normalize(_page: &Bitmap, _resolution: Resolution) -> Bitmap {
    unimplemented!("tiff_f::normalize")
}

/// Write pages already normalised as one TIFF-F file (RFC 3949), one strip per page.
pub fn write_tiff_f(_pages: &[Bitmap], _opts: &WriteOptions) -> Result<TiffF, ImageError> {
    unimplemented!("tiff_f::write_tiff_f")
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
            pages.push(normalize(&page, opts.resolution));
        }
    }
    if pages.is_empty() {
        return Err(ImageError::Corrupt("no pages".into()));
    }
    write_tiff_f(&pages, opts)
}
