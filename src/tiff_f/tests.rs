//! Unit tests: hostile input, encoder round trips through an independent decoder (hayro-ccitt),
//! normalisation rules. Comparisons with libtiff live in `tests/tiff_f.rs`.

use super::*;
use hayro_ccitt::{DecodeSettings, DecoderContext, EncodingMode};

const FAX: &[u8] = include_bytes!("../../fixtures/fax-3page-g3.tif");
const SCAN: &[u8] = include_bytes!("../../fixtures/scan-page.png");

fn read(b: &[u8]) -> Result<Vec<Bitmap>, ImageError> {
    read_pages(b, &Limits::default(), Bilevel::default())
}

#[test]
fn garbage_is_an_error() {
    assert!(matches!(read(b""), Err(ImageError::Unsupported(_))));
    assert!(matches!(
        read(b"hello world, not an image"),
        Err(ImageError::Unsupported(_))
    ));
    assert!(matches!(read(b"II*\0"), Err(ImageError::Corrupt(_))));
    assert!(matches!(
        read(b"MM\0*\0\0\0\x08\0"),
        Err(ImageError::Corrupt(_))
    ));
    // IFD pointing at itself.
    let mut looped = b"II*\0\x08\0\0\0\0\0".to_vec();
    looped.extend_from_slice(&8u32.to_le_bytes());
    assert!(read(&looped).is_err());
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let n = rng.usize(0..600);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        if rng.bool() && junk.len() >= 4 {
            junk[..4].copy_from_slice(b"II*\0");
        }
        let _ = read(&junk);
    }
}

#[test]
fn truncated_files_are_errors_not_panics() {
    // tiffcp writes each IFD after its strips, so any cut before the first IFD loses every page.
    let first_ifd = u32::from_le_bytes(FAX[4..8].try_into().unwrap()) as usize;
    for cut in (0..first_ifd).step_by(1499) {
        assert!(read(&FAX[..cut]).is_err(), "cut at {cut}");
    }
    for cut in (first_ifd..FAX.len()).step_by(2011) {
        let _ = read(&FAX[..cut]);
    }
    for cut in [0, 8, 40, 100, SCAN.len() / 2, SCAN.len() - 13] {
        assert!(read(&SCAN[..cut]).is_err(), "png cut at {cut}");
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(3949);
    for _ in 0..40 {
        let mut b = FAX.to_vec();
        for _ in 0..rng.usize(1..8) {
            let i = rng.usize(..b.len());
            b[i] = rng.u8(..);
        }
        let _ = read(&b);
    }
}

#[test]
fn limits_are_enforced_before_decoding() {
    let tight = Limits {
        max_pixels_per_page: 1728 * 100,
        max_pages: 500,
    };
    assert!(matches!(
        read_pages(FAX, &tight, Bilevel::default()),
        Err(ImageError::Limit(_))
    ));
    assert!(matches!(
        read_pages(SCAN, &tight, Bilevel::default()),
        Err(ImageError::Limit(_))
    ));
    let two = Limits {
        max_pixels_per_page: u64::MAX,
        max_pages: 2,
    };
    let e = read_pages(FAX, &two, Bilevel::default()).unwrap_err();
    assert!(matches!(e, ImageError::Limit(_)));
    assert_eq!(e.enhanced_status(), "5.3.4");
    // A hostile header claiming 4 billion squared pixels is refused without allocating.
    let mut huge = b"II*\0\x08\0\0\0".to_vec();
    huge.extend_from_slice(&2u16.to_le_bytes());
    for tag in [256u16, 257] {
        huge.extend_from_slice(&tag.to_le_bytes());
        huge.extend_from_slice(&4u16.to_le_bytes());
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    huge.extend_from_slice(&0u32.to_le_bytes());
    assert!(matches!(read(&huge), Err(ImageError::Limit(_))));
}

/// Random bilevel rows with runs of every length class (terminating, make-up, extended make-up).
fn random_page(rng: &mut fastrand::Rng, width: u32, height: u32) -> Vec<u8> {
    let stride = (width as usize).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    for row in data.chunks_mut(stride) {
        let mut x = 0;
        let mut black = rng.bool();
        while x < width {
            let len = match rng.u8(0..4) {
                0 => rng.u32(1..4),
                1 => rng.u32(1..64),
                2 => rng.u32(64..2000),
                _ => rng.u32(2000..6000),
            };
            let end = (x + len).min(width);
            if black {
                bits::set_run(row, x, end);
            }
            x = end;
            black = !black;
        }
    }
    data
}

fn decode(data: &[u8], width: u32, height: u32, encoding: EncodingMode) -> Vec<u8> {
    struct Rows(Vec<u8>, usize, u32);
    impl hayro_ccitt::Decoder for Rows {
        fn push_row(&mut self, changes: &[u32]) {
            let mut row = vec![0u8; self.1];
            for p in changes.chunks(2) {
                bits::set_run(&mut row, p[0], p.get(1).copied().unwrap_or(self.2));
            }
            self.0.extend_from_slice(&row);
        }
    }
    let settings = DecodeSettings {
        columns: width,
        rows: height,
        end_of_block: true,
        end_of_line: encoding != EncodingMode::Group4,
        rows_are_byte_aligned: false,
        encoding,
        strict: true,
    };
    let mut rows = Rows(Vec::new(), (width as usize).div_ceil(8), width);
    hayro_ccitt::decode(data, &mut rows, &mut DecoderContext::new(settings))
        .expect("strict decode");
    rows.0
}

#[test]
fn encoders_round_trip_through_hayro() {
    let mut rng = fastrand::Rng::with_seed(1728);
    for width in [1u32, 7, 8, 9, 63, 64, 65, 127, 1728, 2048, 2560, 2561, 5200] {
        for _ in 0..3 {
            let height = rng.u32(1..40);
            let page = random_page(&mut rng, width, height);
            let mh = encode_mh(&page, width, height).unwrap();
            assert_eq!(
                decode(&mh, width, height, EncodingMode::Group3_1D),
                page,
                "MH width {width}"
            );
            let mr = encode_mr(&page, width, height, 4).unwrap();
            assert_eq!(
                decode(&mr, width, height, EncodingMode::Group3_2D),
                page,
                "MR width {width}"
            );
            let mmr = encode_mmr(&page, width, height).unwrap();
            assert_eq!(
                decode(&mmr, width, height, EncodingMode::Group4),
                page,
                "MMR width {width}"
            );
        }
    }
}

#[test]
fn mh_bits_match_t4_tables() {
    // Three all-white rows of 1728: fill + EOL (0000 0000 0001, ending on a byte boundary),
    // white make-up 1728 (010011011, T.4 Table 3a), white terminating 0 (00110101, Table 2).
    let page = vec![0u8; 216 * 3];
    let mh = encode_mh(&page, 1728, 3).unwrap();
    let row = [0x4D, 0x9A, 0x80];
    let expected: Vec<u8> = [&[0x00, 0x01][..], &row, &[0x01], &row, &[0x01], &row].concat();
    assert_eq!(mh, expected);
    assert!(
        encode_mh(&page, 1728, 4).is_err(),
        "length mismatch is an error"
    );
}

#[test]
fn writes_empty_or_inconsistent_pages_as_errors() {
    let opts = WriteOptions::default();
    assert!(write_tiff_f(&[], &opts).is_err());
    let bad = Bitmap {
        width: 1728,
        height: 2,
        x_dpi: 204,
        y_dpi: 196,
        data: vec![0; 10],
    };
    assert!(write_tiff_f(&[bad], &opts).is_err());
}

fn fax_page(height: u32, y_dpi: u32) -> Bitmap {
    let mut rng = fastrand::Rng::with_seed(u64::from(height));
    Bitmap {
        width: 1728,
        height,
        x_dpi: 204,
        y_dpi,
        data: random_page(&mut rng, 1728, height),
    }
}

#[test]
fn normalize_keeps_fax_pages_pixel_exact() {
    let p = fax_page(300, 196);
    assert_eq!(normalize(&p, Resolution::Fine), p);
    assert_eq!(normalize(&p, Resolution::Passthrough), p);
    let s = fax_page(150, 98);
    assert_eq!(normalize(&s, Resolution::Passthrough), s);
    assert_eq!(normalize(&s, Resolution::Standard), s);
}

#[test]
fn normalize_changes_vertical_resolution_by_row_sampling() {
    let p = fax_page(300, 196);
    let std = normalize(&p, Resolution::Standard);
    assert_eq!((std.width, std.height, std.y_dpi), (1728, 150, 98));
    // Centre sampling: output row y is source row 2y + 1.
    for y in 0..150usize {
        assert_eq!(
            std.data[y * 216..(y + 1) * 216],
            p.data[(2 * y + 1) * 216..(2 * y + 2) * 216]
        );
    }
    let sf = normalize(&p, Resolution::Superfine);
    // 300 × 391 / 196 = 598.47
    assert_eq!((sf.height, sf.y_dpi), (598, 391));
}

/// A little-endian TIFF with one strip of `strip` bytes and the given LONG tags.
fn one_strip_tiff(tags: &[(u16, u32)], strip: &[u8]) -> Vec<u8> {
    let mut all: Vec<(u16, u32)> = tags.to_vec();
    let n = all.len() + 2;
    let data_off = 8 + 2 + 12 * n as u32 + 4;
    all.push((273, data_off));
    all.push((279, strip.len() as u32));
    all.sort();
    let mut b = b"II*\0\x08\0\0\0".to_vec();
    b.extend_from_slice(&(n as u16).to_le_bytes());
    for (tag, v) in all {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(strip);
    b
}

#[test]
fn random_ccitt_strips_at_the_size_limit_end_quickly() {
    let mut rng = fastrand::Rng::with_seed(42);
    let strip: Vec<u8> = (0..200_000).map(|_| rng.u8(..)).collect();
    for (compression, t4) in [(2, 0), (3, 0), (3, 1), (3, 4), (4, 0)] {
        let tiff = one_strip_tiff(
            &[(256, 2432), (257, 20_000), (259, compression), (292, t4)],
            &strip,
        );
        let start = std::time::Instant::now();
        let r = read(&tiff);
        assert!(
            matches!(r, Err(ImageError::Corrupt(_))),
            "compression {compression}: {r:?}"
        );
        // Generous bound (debug build, shared cores): decoding stops with the data.
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }
}

/// The general CCITT path's rows, rows decoded and error.
type General = (Vec<u8>, u32, Option<String>);

/// Both CCITT paths of the reader on one strip: (fast rows, general rows and error).
fn both_decoders(
    data: &[u8],
    width: u32,
    rows: u32,
    s: DecodeSettings,
) -> (Option<Vec<u8>>, General) {
    let geo = read::Geometry {
        width,
        stride: (width as usize).div_ceil(8),
    };
    let mut fast = vec![0u8; geo.stride * rows as usize];
    let format = ccitt::Format {
        coding: match s.encoding {
            EncodingMode::Group3_1D => ccitt::Coding::Mh,
            EncodingMode::Group3_2D => ccitt::Coding::Mr,
            EncodingMode::Group4 => ccitt::Coding::Mmr,
        },
        eol: s.end_of_line,
        byte_aligned: s.rows_are_byte_aligned,
    };
    let ok = ccitt::decode(data, &mut fast, width, geo.stride, rows, format).is_ok();
    let mut general = vec![0u8; fast.len()];
    let (got, err) = read::general_strip(data, &mut general, &geo, rows, s);
    (ok.then_some(fast), (general, got, err))
}

/// A page that looks like text: white with short black runs, some rows blank.
fn texty_page(rng: &mut fastrand::Rng, width: u32, height: u32) -> Vec<u8> {
    let stride = (width as usize).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    for row in data.chunks_mut(stride) {
        if rng.u8(..) < 60 {
            continue;
        }
        let mut x = rng.u32(0..width.min(200) + 1);
        while x < width {
            let run = rng.u32(1..12);
            bits::set_run(row, x, (x + run).min(width));
            x += run + rng.u32(1..40);
        }
    }
    bits::clear_padding(&mut data, width);
    data
}

#[test]
fn fast_ccitt_decoder_matches_the_general_one() {
    let mut rng = fastrand::Rng::with_seed(604);
    for width in [1u32, 5, 8, 9, 63, 64, 65, 200, 1728, 2048, 2432, 2561, 4000] {
        for k in 0..6 {
            let height = rng.u32(1..30);
            let page = if k % 2 == 0 {
                random_page(&mut rng, width, height)
            } else {
                texty_page(&mut rng, width, height)
            };
            for (enc, mode, eol) in [
                (Encoding::Mh, EncodingMode::Group3_1D, true),
                (Encoding::Mr, EncodingMode::Group3_2D, true),
                (Encoding::Mmr, EncodingMode::Group4, false),
            ] {
                let data = match enc {
                    Encoding::Mh => encode_mh(&page, width, height),
                    Encoding::Mr => encode_mr(&page, width, height, 1 + k),
                    _ => encode_mmr(&page, width, height),
                }
                .unwrap();
                let s = read::ccitt(mode, eol, false);
                let (fast, (general, got, err)) = both_decoders(&data, width, height, s);
                assert_eq!(err, None, "{enc:?} width {width}");
                assert_eq!(got, height);
                assert_eq!(general, page, "{enc:?} width {width} general");
                assert_eq!(fast.as_ref(), Some(&page), "{enc:?} width {width} fast");
                // Damaged copies: wherever the fast path still succeeds, it agrees.
                for _ in 0..4 {
                    let mut bad = data.clone();
                    match rng.u8(0..3) {
                        0 => bad.truncate(rng.usize(0..bad.len())),
                        1 => {
                            let i = rng.usize(0..bad.len());
                            bad[i] ^= 1 << rng.u8(0..8);
                        }
                        _ => bad.iter_mut().for_each(|b| *b = rng.u8(..)),
                    }
                    let (fast, (general, got, err)) = both_decoders(&bad, width, height, s);
                    if let Some(fast) = fast {
                        if err.is_none() && got == height {
                            assert_eq!(fast, general, "{enc:?} width {width} damaged");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn fast_ccitt_decoder_is_bounded_on_junk() {
    let mut rng = fastrand::Rng::with_seed(4);
    let mut out = vec![0u8; 216 * 50];
    for _ in 0..3000 {
        let n = rng.usize(0..400);
        let junk: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        for coding in [ccitt::Coding::Mh, ccitt::Coding::Mr, ccitt::Coding::Mmr] {
            let format = ccitt::Format {
                coding,
                eol: rng.bool(),
                byte_aligned: rng.bool(),
            };
            let _ = ccitt::decode(&junk, &mut out, 1728, 216, 50, format);
        }
    }
    // All zeros (fill for ever) is no row; all ones (white 7, black 2, ...) must just end.
    for b in [0u8, 0xFF] {
        let junk = vec![b; 100_000];
        for coding in [ccitt::Coding::Mh, ccitt::Coding::Mr, ccitt::Coding::Mmr] {
            let format = ccitt::Format {
                coding,
                eol: true,
                byte_aligned: false,
            };
            let r = ccitt::decode(&junk, &mut out, 1728, 216, 50, format);
            assert!(b != 0 || r.is_err());
        }
    }
}

/// A page like a dithered photo for 2-D coding: each row is the one above with its pixels taken
/// from up to one place left or right (so mostly VL1..VR1 and V0 modes, in no order, several
/// per refill of the fast decoder's bit buffer), some rows copied whole (V0 strings reaching
/// the row's end), and rows that end black (a vertical mode or V0 at the end of the row,
/// followed at once by the next row's codes).
fn dithery_page(rng: &mut fastrand::Rng, width: u32, height: u32) -> Vec<u8> {
    let stride = (width as usize).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    let w = width as usize;
    let mut prev: Vec<bool> = (0..w).map(|_| rng.u8(..) < 110).collect();
    for row in data.chunks_mut(stride) {
        let cur: Vec<bool> = match rng.u8(0..8) {
            0 => prev.clone(),
            _ => {
                let mut off = 0i64;
                (0..w)
                    .map(|x| {
                        if rng.u8(0..4) == 0 {
                            off = rng.i64(-1..=1);
                        }
                        let sx = (x as i64 + off).clamp(0, w as i64 - 1) as usize;
                        if rng.u8(..) < 8 {
                            !prev[sx]
                        } else {
                            prev[sx]
                        }
                    })
                    .collect()
            }
        };
        let mut cur = cur;
        if rng.bool() {
            cur[w - 1] = true;
        }
        for (x, _) in cur.iter().enumerate().filter(|(_, &b)| b) {
            bits::set_run(row, x as u32, x as u32 + 1);
        }
        prev = cur;
    }
    data
}

#[test]
fn fast_ccitt_decoder_matches_the_general_one_on_dithered_pages() {
    let mut rng = fastrand::Rng::with_seed(1742);
    for width in [1u32, 2, 7, 8, 9, 63, 64, 65, 200, 1000, 1728, 2034, 2561] {
        for _ in 0..4 {
            let height = rng.u32(1..40);
            let page = dithery_page(&mut rng, width, height);
            for (enc, mode, eol) in [
                (Encoding::Mr, EncodingMode::Group3_2D, true),
                (Encoding::Mmr, EncodingMode::Group4, false),
            ] {
                let data = match enc {
                    Encoding::Mr => encode_mr(&page, width, height, 4),
                    _ => encode_mmr(&page, width, height),
                }
                .unwrap();
                let s = read::ccitt(mode, eol, false);
                let (fast, (general, got, err)) = both_decoders(&data, width, height, s);
                assert_eq!(err, None, "{enc:?} width {width}");
                assert_eq!(got, height);
                assert_eq!(general, page, "{enc:?} width {width} general");
                assert_eq!(fast.as_ref(), Some(&page), "{enc:?} width {width} fast");
            }
        }
    }
}

#[test]
fn page_reader_gives_the_same_pages_in_any_order_through_a_dirty_buffer() {
    let mut rng = fastrand::Rng::with_seed(2_000);
    // Pages of different sizes, so a reused buffer is sometimes larger than the page.
    let pages: Vec<Bitmap> = [(1728, 300), (2048, 40), (1728, 700), (2432, 5)]
        .into_iter()
        .map(|(width, height)| Bitmap {
            width,
            height,
            x_dpi: 204,
            y_dpi: 196,
            data: texty_page(&mut rng, width, height),
        })
        .collect();
    // Uncompressed rows that stop after 30 of 80: the missing rows must come out white.
    let short = one_strip_tiff(
        &[(256, 1728), (257, 80), (259, 1), (262, 0)],
        &[0x0F; 216 * 30],
    );
    let mut files = vec![FAX.to_vec(), short];
    for encoding in [Encoding::Mh, Encoding::Mr, Encoding::Mmr] {
        let opts = WriteOptions {
            encoding,
            ..WriteOptions::default()
        };
        let tiff = write_tiff_f(&pages, &opts).unwrap();
        let reader = PageReader::new(&tiff.bytes, &Limits::default(), Bilevel::default()).unwrap();
        for (i, want) in pages.iter().enumerate() {
            assert!(
                &reader.page(i).unwrap().bitmap == want,
                "{encoding:?} page {i} differs"
            );
        }
        // A damaged copy: the first page's strip cut to a third (StripByteCounts).
        let mut damaged = tiff.bytes.clone();
        let count = read::ifds(&damaged, &Limits::default()).unwrap()[0]
            .int(279)
            .unwrap();
        patch_tag(&mut damaged, 0, 279, (count / 3) as u32);
        files.push(tiff.bytes);
        files.push(damaged);
    }
    let mut saw_damage = 0;
    for file in &files {
        let reader = PageReader::new(file, &Limits::default(), Bilevel::default()).unwrap();
        let fresh: Vec<_> = (0..reader.len()).map(|i| reader.page(i)).collect();
        let mut buf = vec![0xFF; 1 << 20];
        for i in (0..reader.len()).rev().chain(0..reader.len()) {
            match reader.page_into(i, std::mem::take(&mut buf)) {
                Ok(p) => {
                    // Not assert_eq: a page's Debug is half a megabyte of octets.
                    assert!(Some(&p) == fresh[i].as_ref().ok(), "page {i} differs");
                    saw_damage += usize::from(i == 0 && p.damaged_rows > 0);
                    buf = p.bitmap.data;
                    buf.fill(0xFF);
                }
                Err(e) => {
                    let want = fresh[i].as_ref().map(|_| ()).map_err(|e| e.to_string());
                    assert_eq!(Err(e.to_string()), want, "page {i}");
                }
            }
        }
        let past = reader.page(reader.len()).unwrap_err().to_string();
        let n = reader.len();
        assert!(
            past.contains(&format!("page {}: no such page, the file has {n}", n + 1)),
            "{past}"
        );
    }
    // The first page of the short uncompressed file and of the three cut files, each read twice.
    assert_eq!(saw_damage, 8, "the damaged pages decode with damaged rows");
}

/// Set the value of `tag` (a SHORT or LONG held in the entry) in image file directory `index` of
/// a TIFF file (TIFF 6.0 §2: header, then a chain of directories of 12-octet entries).
fn patch_tag(b: &mut [u8], index: usize, tag: u16, value: u32) {
    let le = b[0] == b'I';
    let u16_at = |b: &[u8], at: usize| {
        let x = [b[at], b[at + 1]];
        if le {
            u16::from_le_bytes(x)
        } else {
            u16::from_be_bytes(x)
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    let mut ifd = u32_at(b, 4) as usize;
    for _ in 0..index {
        ifd = u32_at(b, ifd + 2 + 12 * usize::from(u16_at(b, ifd))) as usize;
    }
    for e in (0..usize::from(u16_at(b, ifd))).map(|i| ifd + 2 + 12 * i) {
        if u16_at(b, e) == tag {
            let value = match (u16_at(b, e + 2), le) {
                (3, true) => (value as u16).to_le_bytes().to_vec(),
                (3, false) => (value as u16).to_be_bytes().to_vec(),
                (_, true) => value.to_le_bytes().to_vec(),
                (_, false) => value.to_be_bytes().to_vec(),
            };
            b[e + 8..e + 8 + value.len()].copy_from_slice(&value);
            return;
        }
    }
    panic!("no tag {tag} in directory {index}");
}

#[test]
fn check_goes_on_past_a_page_it_cannot_read() {
    let mut rng = fastrand::Rng::with_seed(3949);
    let pages: Vec<Bitmap> = (0..3)
        .map(|_| Bitmap {
            width: 1728,
            height: 200,
            x_dpi: 204,
            y_dpi: 196,
            data: texty_page(&mut rng, 1728, 200),
        })
        .collect();
    let opts = WriteOptions {
        encoding: Encoding::Mmr,
        ..WriteOptions::default()
    };
    let mut b = write_tiff_f(&pages, &opts).unwrap().bytes;
    // Page 2 in a compression we do not read (32946, Deflate), page 3's strip cut to a third.
    patch_tag(&mut b, 1, 259, 32946);
    let count = read::ifds(&b, &Limits::default()).unwrap()[2]
        .int(279)
        .unwrap();
    patch_tag(&mut b, 2, 279, (count / 3) as u32);
    let c = check(&b, &Limits::default()).unwrap();
    let text = c.to_string();
    assert!(
        text.contains("page 2: TIFF 6.0 §3: image data cannot be read"),
        "{text}"
    );
    assert!(
        text.contains("page 3: ITU-T T.6 §2: T.6 data damaged"),
        "{text}"
    );
    assert_eq!(c.pages[0].damaged_rows, 0);
    assert_eq!(c.pages[1].damaged_rows, 200);
    assert!((1..200).contains(&c.pages[2].damaged_rows), "{text}");
}

#[test]
fn writer_page_by_page_writes_what_write_tiff_f_writes() {
    let mut rng = fastrand::Rng::with_seed(3949);
    let pages: Vec<Bitmap> = [(1728, 120, 98), (2048, 80, 196), (1728, 30, 391)]
        .into_iter()
        .map(|(width, height, y_dpi)| Bitmap {
            width,
            height,
            x_dpi: 204,
            y_dpi,
            data: texty_page(&mut rng, width, height),
        })
        .collect();
    for encoding in [Encoding::Mh, Encoding::Mr, Encoding::Mmr] {
        let opts = WriteOptions {
            encoding,
            ..WriteOptions::default()
        };
        let whole = write_tiff_f(&pages, &opts).unwrap();
        let mut w = TiffFWriter::new(&opts);
        assert!(w.is_empty());
        for p in &pages {
            w.push(p).unwrap();
        }
        // A page that cannot be written is refused and leaves the writer as it was.
        let empty = Bitmap {
            height: 0,
            data: Vec::new(),
            ..pages[0].clone()
        };
        let e = w.push(&empty).unwrap_err().to_string();
        assert!(e.contains("page 4: "), "{e}");
        assert_eq!(w.len(), 3);
        let streamed = w.finish().unwrap();
        assert_eq!(streamed.pages, 3);
        // Same layout (only the DateTime text may differ, same length), same pages.
        assert_eq!(streamed.bytes.len(), whole.bytes.len(), "{encoding:?}");
        assert!(read(&streamed.bytes).unwrap() == pages, "{encoding:?}");
        assert!(read(&whole.bytes).unwrap() == pages, "{encoding:?}");
    }
    assert!(TiffFWriter::new(&WriteOptions::default()).finish().is_err());
}

/// RFC 3949 §4.2.1: a page's width is one of the profile widths whether or not its resolution
/// tags are there; without them, both the missing tags and a width no profile has are reported.
#[test]
fn check_reports_the_width_also_without_resolution_tags() {
    let tags = |w: u32| {
        vec![
            (254, 2),
            (256, w),
            (257, 1),
            (258, 1),
            (259, 1),
            (262, 0),
            (266, 1),
            (278, 1),
        ]
    };
    for (width, breaks_f) in [(2000u32, true), (2048, false), (1728, false)] {
        let strip = vec![0u8; (width as usize).div_ceil(8)];
        let file = one_strip_tiff(&tags(width), &strip);
        let c = check(&file, &Limits::default()).unwrap();
        assert!(
            c.problems.iter().any(|p| p.tag == Some(282)),
            "{:?}",
            c.problems
        );
        let width_problem = c.problems.iter().find(|p| p.tag == Some(256));
        match width {
            1728 => assert!(width_problem.is_none(), "{:?}", c.problems),
            _ => {
                let p = width_problem.unwrap_or_else(|| panic!("{width}: {:?}", c.problems));
                let want = if breaks_f {
                    crate::tiff_f::Profiles::Both
                } else {
                    crate::tiff_f::Profiles::SOnly
                };
                assert_eq!(p.profiles, want, "{p}");
            }
        }
    }
}

/// T.4 §4.1: no code word is all zeros, so an empty or all-zero raw G3 page (a failed receive)
/// is refused rather than made a blank page.
#[test]
fn empty_or_zero_raw_g3_is_refused() {
    for bytes in [&[][..], &[0u8; 4096][..]] {
        let e = crate::tiff_f::read_raw_g3(bytes, 1728, 98, &Limits::default()).unwrap_err();
        assert!(matches!(e, ImageError::Corrupt(_)), "{e}");
    }
}
