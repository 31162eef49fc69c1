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
type Strip = (Vec<u8>, u16, (u16, u32));

fn compress(page: &Bitmap, enc: Encoding) -> Result<Strip, ImageError> {
    let (w, h, d) = (page.width, page.height, page.data.as_slice());
    Ok(match enc {
        Encoding::Mh => (encode_mh(d, w, h)?, 3, (T4_OPTIONS, 4)),
        Encoding::Mr => {
            // T.4 §4.2.1: K = 2 at standard, 4 at higher vertical resolutions.
            let k = if page.y_dpi < 150 { 2 } else { 4 };
            (encode_mr(d, w, h, k)?, 3, (T4_OPTIONS, 5))
        }
        Encoding::Mmr => (encode_mmr(d, w, h)?, 4, (T6_OPTIONS, 0)),
    })
}

pub(crate) fn write_tiff_f(pages: &[Bitmap], opts: &WriteOptions) -> Result<TiffF, ImageError> {
    if pages.is_empty() {
        return Err(ImageError::Corrupt("no pages to write".into()));
    }
    let total = u16::try_from(pages.len())
        .map_err(|_| ImageError::Corrupt(format!("{} pages: more than 65535", pages.len())))?;
    let datetime = chrono::Local::now().format("%Y:%m:%d %H:%M:%S").to_string();
    let mut file = Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut file).map_err(tiff_err)?;
        for (n, page) in pages.iter().enumerate() {
            if page.width == 0 || page.height == 0 {
                return Err(ImageError::Corrupt(format!(
                    "page {}: empty ({}x{})",
                    n + 1,
                    page.width,
                    page.height
                )));
            }
            let (strip, compression, (opt_tag, opt_val)) = compress(page, opts.encoding)?;
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
