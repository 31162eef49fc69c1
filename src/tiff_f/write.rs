//! RFC 3949 TIFF-F container: one IFD and one pre-compressed strip per page.

use super::mh::{encode_mh, encode_mmr, encode_mr};
use super::{Bitmap, Encoding, ImageError, TiffF, WriteOptions};
use std::io::Cursor;
use tiff::encoder::{Rational, TiffEncoder};
use tiff::tags::Tag;

const T4_OPTIONS: u16 = 292;
const T6_OPTIONS: u16 = 293;
const PAGE_NUMBER: u16 = 297;

fn tiff_err(e: tiff::TiffError) -> ImageError {
    ImageError::Corrupt(format!("writing TIFF: {e}"))
}

/// A compressed strip, its Compression value, and its options tag (T4Options/T6Options) and value.
pub(crate) type Strip = (Vec<u8>, u16, (u16, u32));

/// MR's K parameter for a vertical resolution (T.4 §4.2.1): 2 at standard (3.85 lines/mm),
/// 4 at fine (7.7 lines/mm, 200 lpi), 8 at superfine (15.4 lines/mm) and 400 lpi, 6 at 300 lpi.
pub(crate) fn mr_k(y_dpi: u32) -> u32 {
    match y_dpi {
        0..=149 => 2,
        150..=249 => 4,
        250..=349 => 6,
        _ => 8,
    }
}

/// Compress one page (T4Options bit 2: EOLs byte-aligned). [`Encoding::Passthrough`] is MH here.
pub(crate) fn compress(page: &Bitmap, enc: Encoding) -> Result<Strip, ImageError> {
    let (w, h, d) = (page.width, page.height, page.data.as_slice());
    if w == 0 || h == 0 {
        return Err(ImageError::Corrupt(format!("empty page ({w}x{h})")));
    }
    Ok(match enc {
        Encoding::Mh | Encoding::Passthrough => (encode_mh(d, w, h)?, 3, (T4_OPTIONS, 4)),
        Encoding::Mr => (encode_mr(d, w, h, mr_k(page.y_dpi))?, 3, (T4_OPTIONS, 5)),
        Encoding::Mmr => (encode_mmr(d, w, h)?, 4, (T6_OPTIONS, 0)),
    })
}

pub(crate) fn write_tiff_f(pages: &[Bitmap], opts: &WriteOptions) -> Result<TiffF, ImageError> {
    let mut strips = Vec::with_capacity(pages.len());
    for (n, page) in pages.iter().enumerate() {
        strips.push(
            compress(page, opts.encoding)
                .map_err(|e| ImageError::Corrupt(format!("page {}: {e}", n + 1)))?,
        );
    }
    assemble(pages, strips, opts)
}

/// One TIFF-F file from pages and their compressed strips (same order and length).
pub(crate) fn assemble(
    pages: &[Bitmap],
    strips: Vec<Strip>,
    opts: &WriteOptions,
) -> Result<TiffF, ImageError> {
    if pages.is_empty() || pages.len() != strips.len() {
        return Err(ImageError::Corrupt("no pages to write".into()));
    }
    let total = u16::try_from(pages.len())
        .map_err(|_| ImageError::Corrupt(format!("{} pages: more than 65535", pages.len())))?;
    let datetime = chrono::Local::now().format("%Y:%m:%d %H:%M:%S").to_string();
    let mut file = Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut file).map_err(tiff_err)?;
        for (n, (page, (strip, compression, (opt_tag, opt_val)))) in
            pages.iter().zip(strips).enumerate()
        {
            let len = u32::try_from(strip.len())
                .map_err(|_| ImageError::Corrupt(format!("page {}: strip over 4 GiB", n + 1)))?;
            let mut dir = enc.image_directory().map_err(tiff_err)?;
            let offset = dir.write_data(strip.as_slice()).map_err(tiff_err)?;
            let offset =
                u32::try_from(offset).map_err(|_| ImageError::Corrupt("file over 4 GiB".into()))?;
            let page_no = [n as u16, total];
            let longs: [(Tag, u32); 7] = [
                (Tag::NewSubfileType, 2),
                (Tag::ImageWidth, page.width),
                (Tag::ImageLength, page.height),
                (Tag::StripOffsets, offset),
                (Tag::RowsPerStrip, page.height),
                (Tag::StripByteCounts, len),
                (Tag::Unknown(opt_tag), opt_val),
            ];
            for (tag, v) in longs {
                dir.write_tag(tag, v).map_err(tiff_err)?;
            }
            dir.write_tag(
                Tag::XResolution,
                Rational {
                    n: page.x_dpi,
                    d: 1,
                },
            )
            .map_err(tiff_err)?;
            dir.write_tag(
                Tag::YResolution,
                Rational {
                    n: page.y_dpi,
                    d: 1,
                },
            )
            .map_err(tiff_err)?;
            let shorts: [(Tag, u16); 6] = [
                (Tag::BitsPerSample, 1),
                (Tag::Compression, compression),
                (Tag::PhotometricInterpretation, 0),
                (Tag::FillOrder, 1),
                (Tag::SamplesPerPixel, 1),
                (Tag::ResolutionUnit, 2),
            ];
            for (tag, v) in shorts {
                dir.write_tag(tag, v).map_err(tiff_err)?;
            }
            dir.write_tag(Tag::Unknown(PAGE_NUMBER), &page_no[..])
                .map_err(tiff_err)?;
            dir.write_tag(Tag::Software, opts.software.as_str())
                .map_err(tiff_err)?;
            dir.write_tag(Tag::DateTime, datetime.as_str())
                .map_err(tiff_err)?;
            dir.finish().map_err(tiff_err)?;
        }
    }
    Ok(TiffF {
        bytes: file.into_inner(),
        pages: pages.len(),
    })
}
