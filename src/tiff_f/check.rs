//! RFC 3949 conformance check of a TIFF file, for `t37gw tiff check`.
//!
//! Rules (RFC 3949 §3.2 for profile S, §4.2 for profile F; docs/tiff-f.md has the table):
//! profile S is MH (Compression 3, T4Options bit 0 clear), 1728 pixels, 204 × 98 or 196 dpi in
//! inches, one strip per page; profile F adds MR (T4Options bit 0), MMR (Compression 4),
//! 391 lines per inch, the B4/A3 widths 2048 and 2432, the 200/300/400 dpi resolutions with
//! their widths, and several strips per page. Both require one bit per sample, Photometric 0,
//! FillOrder 1 or 2, NewSubfileType bit 1, PageNumber, no uncompressed mode, image data that
//! decodes (T.4 / T.6).

use super::read::{self, Ifd};
use super::{Bilevel, ImageError, Limits};
use std::fmt;

/// Which profiles a problem breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profiles {
    /// Breaks profile S only (allowed in profile F).
    SOnly,
    /// Breaks both profile S and profile F.
    Both,
}

/// One reason a file misses a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Page (1-based), or `None` for the whole file.
    pub page: Option<usize>,
    /// The TIFF tag at fault (e.g. 256 for ImageWidth), or `None` for image data or structure.
    pub tag: Option<u16>,
    /// Profiles it breaks.
    pub profiles: Profiles,
    /// Where the rule is: e.g. "RFC 3949 §3.2.1".
    pub section: &'static str,
    /// What is wrong, naming the tag and its value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.page {
            write!(f, "page {p}: ")?;
        }
        let which = match self.profiles {
            Profiles::SOnly => "profile S",
            Profiles::Both => "profiles S and F",
        };
        write!(f, "{}: {} (breaks {which})", self.section, self.message)
    }
}

/// The verdict for one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageConformance {
    /// Page number, 1-based.
    pub page: usize,
    /// ImageWidth × ImageLength in pixels (0 when absent).
    pub width: u64,
    /// ImageLength in rows (0 when absent).
    pub height: u64,
    /// Whether the page meets RFC 3949 profile S (§3).
    pub profile_s: bool,
    /// Whether the page meets RFC 3949 profile F (§4).
    pub profile_f: bool,
    /// Rows that did not decode (0 for a clean page; the whole height when the page's data
    /// cannot be read at all).
    pub damaged_rows: u64,
}

/// Result of [`check`]: per page which profile is met, and every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conformance {
    /// One entry per page (IFD), in file order.
    pub pages: Vec<PageConformance>,
    /// Every problem, in page order (file-level problems have `page: None`).
    pub problems: Vec<Problem>,
}

impl Conformance {
    /// Whether every page meets profile S.
    pub fn is_profile_s(&self) -> bool {
        self.pages.iter().all(|p| p.profile_s) && !self.problems.iter().any(|p| p.page.is_none())
    }

    /// Whether every page meets profile F (profile S implies F).
    pub fn is_profile_f(&self) -> bool {
        self.pages.iter().all(|p| p.profile_f)
            && !self
                .problems
                .iter()
                .any(|p| p.page.is_none() && p.profiles == Profiles::Both)
    }

    /// The best profile met by the whole file: `Some("S")`, `Some("F")` or `None`.
    pub fn profile(&self) -> Option<&'static str> {
        if self.is_profile_s() {
            Some("S")
        } else if self.is_profile_f() {
            Some("F")
        } else {
            None
        }
    }
}

/// One line per problem; when there is none, one line saying which profile is met.
impl fmt::Display for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        let n = self.pages.len();
        match self.profile() {
            Some("S") => writeln!(f, "{n} page(s): RFC 3949 profile S (and F)"),
            Some(_) => writeln!(f, "{n} page(s): RFC 3949 profile F, not S"),
            None => writeln!(f, "{n} page(s): neither RFC 3949 profile S nor F"),
        }
    }
}

const S_BASE: &str = "RFC 3949 §3.2.1";
const S_EXT: &str = "RFC 3949 §3.2.2";
const F_BASE: &str = "RFC 3949 §4.2.1";
const F_EXT: &str = "RFC 3949 §4.2.2";

/// Widths profile F allows for an x resolution (RFC 3949 §4.2.1: A4/letter, B4, A3 at 200/204,
/// 300 and 400/408 dpi).
fn f_widths(x_dpi: u32) -> &'static [u64] {
    match x_dpi {
        200 | 204 => &[1728, 2048, 2432],
        300 => &[2592, 3072, 3648],
        400 | 408 => &[3456, 4096, 4864],
        _ => &[],
    }
}

/// Check `bytes` against RFC 3949 profiles S and F, tag by tag, and decode every page
/// (T.4 / T.6 data that does not decode is a problem too).
///
/// Resolutions are compared after rounding to whole dots per inch, with ±1 allowed for the fax
/// values written in other units (7.7 lines/mm = 195.58 lpi). Byte order II or MM is not a
/// problem (TIFF 6.0 §2: readers accept both).
///
/// Errors: only when the bytes are no TIFF ([`ImageError::Unsupported`]), the directory chain
/// cannot be read ([`ImageError::Corrupt`]) or has more than `limits.max_pages` pages
/// ([`ImageError::Limit`]); everything else is a [`Problem`].
pub fn check(bytes: &[u8], limits: &Limits) -> Result<Conformance, ImageError> {
    let ifds = read::ifds(bytes, limits)?;
    let total = ifds.len() as u64;
    let mut problems = Vec::new();
    let mut pages = Vec::new();
    for (i, ifd) in ifds.iter().enumerate() {
        let n = i + 1;
        check_page(
            ifd,
            i as u64,
            total,
            &mut |tag, profiles, section, message| {
                problems.push(Problem {
                    page: Some(n),
                    tag,
                    profiles,
                    section,
                    message,
                })
            },
        );
        pages.push(PageConformance {
            page: n,
            width: ifd.int(256).unwrap_or(0),
            height: ifd.int(257).unwrap_or(0),
            profile_s: true,
            profile_f: true,
            damaged_rows: 0,
        });
    }
    // Decode the image data (bilevel pages only; other pages have problems already), one page
    // at a time in one reused buffer; a page that cannot be read does not stop the others.
    let unreadable = |page: Option<usize>, e: ImageError, problems: &mut Vec<Problem>| {
        problems.push(Problem {
            page,
            tag: None,
            profiles: Profiles::Both,
            section: "TIFF 6.0 §3",
            message: format!("image data cannot be read: {e}"),
        });
    };
    match read::TiffPages::new(bytes, limits) {
        Ok(reader) => {
            let mut buf = Vec::new();
            for i in 0..reader.len().min(pages.len()) {
                let d = match reader.page(i, limits, Bilevel::default(), std::mem::take(&mut buf)) {
                    Ok(d) => d,
                    Err(e) => {
                        pages[i].damaged_rows = pages[i].height;
                        unreadable(Some(i + 1), read::name_page(i + 1, e), &mut problems);
                        continue;
                    }
                };
                pages[i].damaged_rows = u64::from(d.damaged_rows);
                if let Some(e) = &d.damage {
                    let (section, what) = match d.source_encoding {
                        Some(super::Encoding::Mmr) => ("ITU-T T.6 §2", "T.6"),
                        Some(_) => ("ITU-T T.4 §4", "T.4"),
                        None => ("TIFF 6.0 §3", "image"),
                    };
                    problems.push(Problem {
                        page: Some(i + 1),
                        tag: Some(273),
                        profiles: Profiles::Both,
                        section,
                        message: format!(
                            "{what} data damaged: {} of {} rows do not decode ({e})",
                            d.damaged_rows, d.bitmap.height
                        ),
                    });
                }
                buf = d.bitmap.data;
            }
        }
        Err(e) => unreadable(None, e, &mut problems),
    }
    problems.sort_by_key(|p| p.page.unwrap_or(0));
    for p in &problems {
        if let Some(n) = p.page {
            let pc = &mut pages[n - 1];
            pc.profile_s = false;
            if p.profiles == Profiles::Both {
                pc.profile_f = false;
            }
        }
    }
    Ok(Conformance { pages, problems })
}

/// Tag rules for page `index` (0-based) of `total`; `bad(tag, profiles, section, message)`.
fn check_page(
    ifd: &Ifd,
    index: u64,
    total: u64,
    bad: &mut dyn FnMut(Option<u16>, Profiles, &'static str, String),
) {
    use Profiles::{Both, SOnly};
    // NewSubfileType (254) = 2: bit 1, a page of a multi-page document.
    match ifd.int(254) {
        Some(v) if v & 2 != 0 => {}
        v => bad(
            Some(254),
            Both,
            S_BASE,
            format!(
                "NewSubfileType is {}, must have bit 1 set (2 = page of a multi-page document)",
                v.map_or("absent".to_string(), |v| v.to_string())
            ),
        ),
    }
    let bps = ifd.int(258).unwrap_or(1);
    if bps != 1 {
        bad(
            Some(258),
            Both,
            S_BASE,
            format!("BitsPerSample is {bps}, must be 1"),
        );
    }
    let spp = ifd.int(277).unwrap_or(1);
    if spp != 1 {
        bad(
            Some(277),
            Both,
            S_BASE,
            format!("SamplesPerPixel is {spp}, must be 1"),
        );
    }
    let compression = ifd.int(259);
    let t4 = ifd.int(292).unwrap_or(0);
    match compression {
        Some(3) => {
            if t4 & 1 != 0 {
                bad(
                    Some(292),
                    SOnly,
                    S_EXT,
                    format!("T4Options is {t4}: bit 0 (2-D coding, MR) is profile F only"),
                );
            }
            if t4 & 2 != 0 {
                bad(
                    Some(292),
                    Both,
                    F_EXT,
                    format!("T4Options is {t4}: bit 1 (uncompressed mode) is not allowed"),
                );
            }
            if t4 & !7 != 0 {
                bad(
                    Some(292),
                    Both,
                    F_EXT,
                    format!("T4Options is {t4}: bits 3-31 must be 0"),
                );
            }
        }
        Some(4) => {
            bad(
                Some(259),
                SOnly,
                S_BASE,
                "Compression is 4 (T.6, MMR): profile S allows only 3 (T.4 MH)".into(),
            );
            let t6 = ifd.int(293).unwrap_or(0);
            if t6 != 0 {
                bad(
                    Some(293),
                    Both,
                    F_EXT,
                    format!("T6Options is {t6}, must be 0 (no uncompressed mode)"),
                );
            }
        }
        Some(c) => bad(
            Some(259),
            Both,
            F_BASE,
            format!("Compression is {c}: profile S requires 3 (T.4), profile F 3 or 4 (T.6)"),
        ),
        None => bad(
            Some(259),
            Both,
            S_BASE,
            "Compression is absent (default 1, uncompressed): must be 3 or 4".into(),
        ),
    }
    match ifd.int(266).unwrap_or(1) {
        1 | 2 => {}
        v => bad(
            Some(266),
            Both,
            S_BASE,
            format!("FillOrder is {v}, must be 1 or 2"),
        ),
    }
    let photometric = ifd.int(262);
    if photometric != Some(0) {
        bad(
            Some(262),
            Both,
            S_BASE,
            format!(
                "PhotometricInterpretation is {}, must be 0 (WhiteIsZero)",
                photometric.map_or("absent".to_string(), |v| v.to_string())
            ),
        );
    }
    let unit = ifd.int(296).unwrap_or(2);
    if unit != 2 {
        bad(
            Some(296),
            Both,
            S_BASE,
            format!("ResolutionUnit is {unit}, must be 2 (inch)"),
        );
    }
    let (x, y) = read::resolution(ifd);
    let stated = |tag| ifd.real(tag).is_some();
    let near = |v: u32, targets: &[u32]| targets.iter().any(|&t| v.abs_diff(t) <= 1);
    if !stated(282) || !stated(283) {
        bad(
            Some(if stated(282) { 283 } else { 282 }),
            Both,
            S_BASE,
            "XResolution and YResolution are required".into(),
        );
    } else {
        let x_fax = if near(x, &[204]) {
            204
        } else if [200, 300, 400, 408].contains(&x) {
            x
        } else {
            0
        };
        if x_fax != 204 {
            bad(
                Some(282),
                if x_fax == 0 { Both } else { SOnly },
                if x_fax == 0 { F_BASE } else { S_BASE },
                format!("XResolution is {x} dpi: profile S requires 204, profile F 204, 200, 300, 400 or 408"),
            );
        }
        let y_ok_s = x_fax == 204 && near(y, &[98, 196]);
        let y_ok_f = match x_fax {
            204 => near(y, &[98, 196, 391]),
            408 => near(y, &[391]),
            200 => [100, 200].contains(&y),
            300 => y == 300,
            400 => y == 400,
            _ => false,
        };
        if !y_ok_s {
            bad(
                Some(283),
                if y_ok_f { SOnly } else { Both },
                if y_ok_f { S_BASE } else { F_BASE },
                format!(
                    "YResolution is {y} lpi with XResolution {x}: profile S allows 98 or 196, \
                     profile F also 391 (and 100, 200, 300, 400 with those x resolutions)"
                ),
            );
        }
        let width = ifd.int(256).unwrap_or(0);
        if width != 1728 {
            let f_ok = f_widths(x_fax).contains(&width);
            bad(
                Some(256),
                if f_ok { SOnly } else { Both },
                if f_ok { S_BASE } else { F_BASE },
                match f_widths(x_fax) {
                    [] => format!(
                        "ImageWidth is {width}: profile S requires 1728, and profile F has no \
                         width at {x} dpi"
                    ),
                    widths => format!(
                        "ImageWidth is {width}: profile S requires 1728, profile F at {x} dpi \
                         allows {widths:?}"
                    ),
                },
            );
        }
    }
    // Without resolution tags the width is still checked, against every width profile F has.
    if (!stated(282) || !stated(283)) && ifd.int(256).is_some_and(|w| w != 1728) {
        let width = ifd.int(256).unwrap_or(0);
        let f_ok = [204, 300, 400]
            .iter()
            .any(|&x| f_widths(x).contains(&width));
        bad(
            Some(256),
            if f_ok { SOnly } else { Both },
            if f_ok { S_BASE } else { F_BASE },
            format!(
                "ImageWidth is {width}: profile S requires 1728, profile F 1728, 2048 or 2432 at \
                 204 dpi (and wider at 300 and 400 dpi)"
            ),
        );
    }
    if ifd.int(256).is_none() || ifd.int(257).is_none() {
        bad(
            Some(257),
            Both,
            S_BASE,
            "ImageWidth and ImageLength are required".into(),
        );
    }
    if ifd.0.contains_key(&322) || ifd.0.contains_key(&324) {
        bad(
            Some(322),
            Both,
            S_BASE,
            "tiles: TIFF-FX pages are stored in strips".into(),
        );
    }
    let strips = ifd.ints(273).map_or(0, |v| v.len());
    if strips == 0 || ifd.ints(279).is_none() {
        bad(
            Some(273),
            Both,
            S_BASE,
            "StripOffsets and StripByteCounts are required".into(),
        );
    } else if strips > 1 {
        bad(
            Some(278),
            SOnly,
            S_BASE,
            format!("{strips} strips: profile S stores each page as one strip (RowsPerStrip = ImageLength)"),
        );
    }
    match ifd.ints(297) {
        Some([p, t, ..]) if *p == index && (*t == total || *t == 0) => {}
        Some(v) => bad(
            Some(297),
            Both,
            S_EXT,
            format!("PageNumber is {v:?}, expected [{index}, {total}] (0-based page, page count)"),
        ),
        None => bad(
            Some(297),
            Both,
            S_EXT,
            format!("PageNumber is absent, expected [{index}, {total}]"),
        ),
    }
}
