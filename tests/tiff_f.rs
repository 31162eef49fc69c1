//! Codec tests against libtiff's tools (tiffinfo, tiffcp) and the shared TIFF corpus.
//!
//! Missing tools or a missing `../shared` skip with a reason locally and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use t37gw::tiff_f::{self, Bilevel, Bitmap, Encoding, Limits, Resolution, WriteOptions};

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip (return false) with a reason, or panic under CI.
fn need(ok: bool, reason: &str) -> bool {
    if !ok {
        assert!(!under_ci(), "CI=true but {reason}");
        eprintln!("SKIP: {reason}");
    }
    ok
}

fn have_tool(name: &str) -> bool {
    need(
        Command::new(name).arg("-h").output().is_ok(),
        &format!("{name} not installed (Debian libtiff-tools)"),
    )
}

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `tiffcp -c none in out`, then decode `out` with the test's own uncompressed-TIFF reader.
fn tiffcp_none(input: &Path) -> Result<Vec<(u32, u32, Vec<u8>)>, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("none.tif");
    let r = Command::new("tiffcp")
        .arg("-c")
        .arg("none")
        .arg(input)
        .arg(&out)
        .output()
        .expect("run tiffcp");
    let stderr = String::from_utf8_lossy(&r.stderr);
    // libtiff reports damaged data as errors on stderr (lines without "Warning") yet may exit 0.
    if !r.status.success() || stderr.lines().any(|l| !l.contains("Warning")) {
        return Err(stderr.into_owned());
    }
    let bytes = std::fs::read(&out).map_err(|e| e.to_string())?;
    read_uncompressed(&bytes)
}

/// `tiffcp -c none` of a file libtiff reads with complaints: its first page as it decodes it.
fn tiffcp_none_lenient(input: &Path) -> (u32, u32, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("none.tif");
    let r = Command::new("tiffcp")
        .args(["-c", "none"])
        .arg(input)
        .arg(&out)
        .output()
        .expect("run tiffcp");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    read_uncompressed(&std::fs::read(&out).unwrap())
        .unwrap()
        .remove(0)
}

/// Minimal reader for the uncompressed bilevel TIFF that `tiffcp -c none` writes, independent of
/// the crate: returns (width, height, packed rows with 1 = black, padding bits cleared) per page.
fn read_uncompressed(b: &[u8]) -> Result<Vec<(u32, u32, Vec<u8>)>, String> {
    let le = b.first() == Some(&b'I');
    let u16_at = |o: usize| -> Result<u32, String> {
        let s = b.get(o..o + 2).ok_or("short")?;
        Ok(u32::from(if le {
            u16::from_le_bytes([s[0], s[1]])
        } else {
            u16::from_be_bytes([s[0], s[1]])
        }))
    };
    let u32_at = |o: usize| -> Result<u32, String> {
        let s: [u8; 4] = b.get(o..o + 4).ok_or("short")?.try_into().unwrap();
        Ok(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let mut pages = Vec::new();
    let mut ifd = u32_at(4)? as usize;
    while ifd != 0 {
        let n = u16_at(ifd)? as usize;
        let mut tags = std::collections::HashMap::<u16, Vec<u32>>::new();
        for i in 0..n {
            let e = ifd + 2 + 12 * i;
            let (tag, ty, count) = (u16_at(e)? as u16, u16_at(e + 2)?, u32_at(e + 4)? as usize);
            let size = match ty {
                3 => 2,
                4 => 4,
                _ => continue,
            };
            let at = if size * count <= 4 {
                e + 8
            } else {
                u32_at(e + 8)? as usize
            };
            let vals = (0..count)
                .map(|k| {
                    if size == 2 {
                        u16_at(at + 2 * k)
                    } else {
                        u32_at(at + 4 * k)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            tags.insert(tag, vals);
        }
        let get = |t: u16| tags.get(&t).and_then(|v| v.first().copied());
        let (w, h) = (get(256).ok_or("width")?, get(257).ok_or("height")?);
        assert_eq!(get(259).unwrap_or(1), 1, "tiffcp -c none wrote compression");
        let gray = match (get(258).unwrap_or(1), get(277).unwrap_or(1)) {
            (1, 1) => false,
            (8, 1) => true,
            _ => return Err("libtiff decodes it, but not to bilevel or 8-bit gray".into()),
        };
        let stride = (w as usize).div_ceil(8);
        let mut data = Vec::new();
        for (o, c) in tags[&273].iter().zip(&tags[&279]) {
            data.extend_from_slice(b.get(*o as usize..(*o + *c) as usize).ok_or("strip")?);
        }
        if gray {
            // 8-bit gray: threshold at 128 like `Bilevel::Threshold(128)` (luma < 128 = black).
            data.truncate(w as usize * h as usize);
            let min_is_black = get(262) == Some(1);
            let mut packed = vec![0u8; stride * h as usize];
            for (i, &v) in data.iter().enumerate() {
                // Photometric 1 (BlackIsZero): the sample is the luma; 0 (WhiteIsZero): inverted.
                let luma = if min_is_black { v } else { 255 - v };
                if luma < 128 {
                    let (y, x) = (i / w as usize, i % w as usize);
                    packed[y * stride + x / 8] |= 0x80 >> (x % 8);
                }
            }
            pages.push((w, h, packed));
            ifd = u32_at(ifd + 2 + 12 * n)? as usize;
            continue;
        }
        data.truncate(stride * h as usize);
        assert_eq!(data.len(), stride * h as usize, "short image data");
        if get(266) == Some(2) {
            data.iter_mut().for_each(|x| *x = x.reverse_bits());
        }
        if get(262).unwrap_or(0) == 1 {
            data.iter_mut().for_each(|x| *x = !*x);
        }
        clear_pad(&mut data, w);
        pages.push((w, h, data));
        ifd = u32_at(ifd + 2 + 12 * n)? as usize;
    }
    Ok(pages)
}

/// Pages decoded by Pillow (its bundled libtiff, newer than Debian's tools), 1 = black.
fn pillow_pages(input: &Path) -> Result<Vec<(u32, u32, Vec<u8>)>, String> {
    const SCRIPT: &str = r#"
import sys
from PIL import Image, ImageSequence
im = Image.open(sys.argv[1])
out = sys.stdout.buffer
for frame in ImageSequence.Iterator(im):
    if frame.mode != "1":
        sys.exit("mode " + frame.mode)
    data = frame.tobytes()
    out.write(b"%d %d %d\n" % (frame.width, frame.height, len(data)))
    out.write(data)
"#;
    let r = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(input)
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&r.stderr);
    if !r.status.success() || stderr.lines().any(|l| !l.contains("Warning")) {
        return Err(stderr.into_owned());
    }
    let mut rest = r.stdout.as_slice();
    let mut pages = Vec::new();
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let head = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let v: Vec<usize> = head.split(' ').map(|x| x.parse().unwrap()).collect();
        let mut data = rest[nl + 1..nl + 1 + v[2]].to_vec();
        rest = &rest[nl + 1 + v[2]..];
        // Pillow's mode "1" packs 1 = white.
        data.iter_mut().for_each(|x| *x = !*x);
        clear_pad(&mut data, v[0] as u32);
        pages.push((v[0] as u32, v[1] as u32, data));
    }
    Ok(pages)
}

fn have_pillow() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    need(ok, "Pillow not installed (python3 -m pip install Pillow)")
}

fn clear_pad(data: &mut [u8], w: u32) {
    let stride = (w as usize).div_ceil(8);
    if w % 8 != 0 {
        let mask = 0xFFu8 << (8 - w % 8);
        for row in data.chunks_mut(stride) {
            *row.last_mut().unwrap() &= mask;
        }
    }
}

fn assert_same(ours: &[Bitmap], theirs: &[(u32, u32, Vec<u8>)], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: page count");
    for (i, (a, (w, h, d))) in ours.iter().zip(theirs).enumerate() {
        assert_eq!((a.width, a.height), (*w, *h), "{what}: page {} size", i + 1);
        if a.data != *d {
            let stride = a.stride();
            let row = a
                .data
                .chunks(stride)
                .zip(d.chunks(stride))
                .position(|(x, y)| x != y);
            panic!(
                "{what}: page {} pixels differ, first at row {:?}",
                i + 1,
                row
            );
        }
    }
}

#[test]
fn reads_fixture_g3_like_libtiff() {
    if !have_tool("tiffcp") {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let ours = tiff_f::read_pages(
        &fixture("fax-3page-g3.tif"),
        &Limits::default(),
        Bilevel::default(),
    )
    .unwrap();
    let theirs = tiffcp_none(&path).unwrap();
    assert_same(&ours, &theirs, "fax-3page-g3.tif");
    for p in &ours {
        assert_eq!(
            (p.width, p.height, p.x_dpi, p.y_dpi),
            (1728, 2200, 204, 196)
        );
    }
}

fn convert_and_check(name: &str, encoding: Encoding, resolution: Resolution, pages: usize) {
    if !have_tool("tiffinfo") || !have_tool("tiffcp") {
        return;
    }
    let input = fixture(name);
    let opts = WriteOptions {
        encoding,
        resolution,
        ..WriteOptions::default()
    };
    let limits = Limits::default();
    let out = tiff_f::convert(&[&input], &opts, &limits).unwrap();
    assert_eq!(out.pages, pages);
    let expected: Vec<Bitmap> = tiff_f::read_pages(&input, &limits, opts.bilevel)
        .unwrap()
        .iter()
        .map(|p| tiff_f::normalize(p, resolution))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.tif");
    std::fs::write(&file, &out.bytes).unwrap();
    let info = Command::new("tiffinfo")
        .arg("-D")
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&info.stdout),
        String::from_utf8_lossy(&info.stderr),
    );
    assert!(info.status.success(), "tiffinfo failed: {stderr}");
    assert!(stderr.trim().is_empty(), "tiffinfo -D complained: {stderr}");
    let scheme = if encoding == Encoding::Mmr {
        "CCITT Group 4"
    } else {
        "CCITT Group 3"
    };
    assert_eq!(stdout.matches(scheme).count(), pages, "{stdout}");
    assert_eq!(
        stdout.matches("Image Width: 1728").count(),
        pages,
        "{stdout}"
    );
    assert_eq!(stdout.matches("TIFF Directory at offset").count(), pages);
    assert!(stdout.contains("min-is-white"), "{stdout}");

    let theirs = tiffcp_none(&file).unwrap();
    assert_same(&expected, &theirs, &format!("{name} -> {encoding:?}"));
}

#[test]
fn fax_fixture_to_mh_fine() {
    convert_and_check("fax-3page-g3.tif", Encoding::Mh, Resolution::Fine, 3);
}

#[test]
fn fax_fixture_to_mh_standard() {
    convert_and_check("fax-3page-g3.tif", Encoding::Mh, Resolution::Standard, 3);
}

#[test]
fn fax_fixture_to_mr_and_mmr() {
    convert_and_check("fax-3page-g3.tif", Encoding::Mr, Resolution::Fine, 3);
    convert_and_check("fax-3page-g3.tif", Encoding::Mmr, Resolution::Fine, 3);
}

#[test]
fn scan_fixture_to_mh_fine() {
    convert_and_check("scan-page.png", Encoding::Mh, Resolution::Fine, 1);
}

#[test]
fn scan_fixture_geometry() {
    let page = tiff_f::read_pages(
        &fixture("scan-page.png"),
        &Limits::default(),
        Bilevel::default(),
    )
    .unwrap();
    assert_eq!(page.len(), 1);
    // Pillow wrote the PNG at 1654x2338 with dpi=(200, 200) (pHYs 7874 px/m).
    assert_eq!(
        (page[0].width, page[0].height, page[0].x_dpi, page[0].y_dpi),
        (1654, 2338, 200, 200)
    );
    let n = tiff_f::normalize(&page[0], Resolution::Fine);
    // 2338 × (1728/1654) × (200/200) × (196/204) = 2346.8 -> 2347
    assert_eq!(
        (n.width, n.height, n.x_dpi, n.y_dpi),
        (1728, 2347, 204, 196)
    );
}

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    need(p.is_dir(), &format!("{} is absent", p.display())).then_some(p)
}

#[test]
fn corpus_tiffs_match_libtiff() {
    let Some(shared) = shared() else { return };
    if !have_tool("tiffcp") || !have_pillow() {
        return;
    }
    let dir = shared.join("corpus/tiff");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut compared = 0;
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let ours = tiff_f::read_pages(&bytes, &Limits::default(), Bilevel::default());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match (tiffcp_none(&f), ours) {
            (Ok(theirs), Ok(ours)) => {
                assert_same(&ours, &theirs, &name);
                eprintln!("{name}: {} pages equal to libtiff's", ours.len());
                compared += 1;
            }
            (Ok(theirs), Err(e)) => panic!(
                "{name}: libtiff decodes {} pages, we fail: {e}",
                theirs.len()
            ),
            (Err(why), ours) => match pillow_pages(&f) {
                // Debian's libtiff 4.5 fails some files that newer libtiff (Pillow's) decodes.
                Ok(theirs) => {
                    let ours =
                        ours.unwrap_or_else(|e| panic!("{name}: Pillow decodes it, we fail: {e}"));
                    assert_same(&ours, &theirs, &format!("{name} (vs Pillow)"));
                    eprintln!("{name}: {} pages equal to Pillow's", ours.len());
                    compared += 1;
                }
                Err(why2) => {
                    eprintln!(
                        "{name}: tiffcp: {}; Pillow: {}; we: {:?}",
                        why.trim(),
                        why2.trim(),
                        ours.as_ref().map(|p| p.len())
                    );
                    // A page that libtiff decodes only up to a bad code word, and that we
                    // keep as damaged (more than half its rows decode): the rows before the
                    // first line libtiff complains of are libtiff's rows.
                    let line_of = |l: &str| {
                        l.split("at line ")
                            .nth(1)?
                            .split(' ')
                            .next()?
                            .parse::<usize>()
                            .ok()
                    };
                    let bad_line = why
                        .lines()
                        .any(|l| !l.contains("Warning"))
                        .then(|| why.lines().filter_map(line_of).min())
                        .flatten();
                    match (ours, bad_line) {
                        (Err(_), _) => {}
                        (Ok(ours), Some(n)) => {
                            let (tw, th, theirs) = tiffcp_none_lenient(&f);
                            let p = &ours[0];
                            assert_eq!((p.width, p.height), (tw, th), "{name}: size");
                            let upto = n * p.stride();
                            assert!(
                                p.data[..upto] == theirs[..upto],
                                "{name}: rows before libtiff's first damaged line {n} differ"
                            );
                            eprintln!("{name}: rows 0..{n} equal to libtiff's partial decode");
                            compared += 1;
                        }
                        (Ok(_), None) => panic!("{name}: libtiff rejects it, we accept it"),
                    }
                }
            },
        }
    }
    assert!(compared > 0);
}

/// Pillow's reading of a gray image, thresholded at 128 (luma < 128 = black), packed 1 = black.
fn pillow_threshold(input: &Path) -> (u32, u32, Vec<u8>) {
    const SCRIPT: &str = r#"
import sys
from PIL import Image
im = Image.open(sys.argv[1])
assert im.mode == "L", im.mode
bw = im.point(lambda v: 255 if v < 128 else 0).convert("1")
sys.stdout.buffer.write(b"%d %d\n" % bw.size + bw.tobytes())
"#;
    let r = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(input)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let nl = r.stdout.iter().position(|&b| b == b'\n').unwrap();
    let head = String::from_utf8_lossy(&r.stdout[..nl]).into_owned();
    let v: Vec<u32> = head.split(' ').map(|x| x.parse().unwrap()).collect();
    let mut data = r.stdout[nl + 1..].to_vec();
    clear_pad(&mut data, v[0]);
    (v[0], v[1], data)
}

#[test]
fn gray_rasters_threshold_like_pillow() {
    if !have_pillow() {
        return;
    }
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan-page.png")];
    if let Some(shared) = shared() {
        files.push(shared.join("corpus/g3/bw-gopher.png"));
    }
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let ours = tiff_f::read_pages(&bytes, &Limits::default(), Bilevel::Threshold(128)).unwrap();
        let theirs = pillow_threshold(&f);
        assert_same(&ours, &[theirs], &f.display().to_string());
    }
}

#[test]
fn floyd_steinberg_scan_converts_cleanly() {
    if !have_tool("tiffinfo") || !have_tool("tiffcp") {
        return;
    }
    let input = fixture("scan-page.png");
    let opts = WriteOptions {
        bilevel: Bilevel::FloydSteinberg,
        ..WriteOptions::default()
    };
    let out = tiff_f::convert(&[&input, &input], &opts, &Limits::default()).unwrap();
    assert_eq!(out.pages, 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fs.tif");
    std::fs::write(&file, &out.bytes).unwrap();
    let info = Command::new("tiffinfo")
        .arg("-D")
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stderr).trim().is_empty());
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        stdout.contains("Page Number: 0-2") && stdout.contains("Page Number: 1-2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Resolution: 204, 196 pixels/inch"),
        "{stdout}"
    );
    let theirs = tiffcp_none(&file).unwrap();
    let expected = tiff_f::normalize(
        &tiff_f::read_pages(&input, &Limits::default(), Bilevel::FloydSteinberg).unwrap()[0],
        Resolution::Fine,
    );
    assert_same(&[expected.clone(), expected], &theirs, "dithered scan");
}

#[test]
fn tiffinfo_shows_the_rfc3949_tags() {
    if !have_tool("tiffinfo") {
        return;
    }
    let out = tiff_f::convert(
        &[&fixture("fax-3page-g3.tif")],
        &WriteOptions::default(),
        &Limits::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.tif");
    std::fs::write(&file, &out.bytes).unwrap();
    let info = Command::new("tiffinfo").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&info.stdout);
    eprintln!("{stdout}");
    for want in [
        "Subfile Type: multi-page document (2 = 0x2)",
        "Image Width: 1728 Image Length: 2200",
        "Resolution: 204, 196 pixels/inch",
        "Bits/Sample: 1",
        "Compression Scheme: CCITT Group 3",
        "Photometric Interpretation: min-is-white",
        "FillOrder: msb-to-lsb",
        "Samples/Pixel: 1",
        "Rows/Strip: 2200",
        "Page Number: 2-3",
        "Group 3 Options: EOL padding (4 = 0x4)",
        "Software: t37gw ",
        "DateTime: 2",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
}

#[test]
fn reads_every_libtiff_fax_variant() {
    if !have_tool("tiffcp") {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let dir = tempfile::tempdir().unwrap();
    let variants: [&[&str]; 8] = [
        &["-c", "g3:1d"],
        &["-c", "g3:2d:fill"],
        &["-c", "g3:2d", "-r", "1000"],
        &["-c", "g4"],
        &["-c", "g4", "-f", "lsb2msb"],
        &["-c", "g3:1d:fill", "-f", "lsb2msb", "-r", "1"],
        &["-c", "none"],
        &["-c", "none", "-f", "lsb2msb", "-r", "7"],
    ];
    for (i, args) in variants.iter().enumerate() {
        let file = dir.path().join(format!("v{i}.tif"));
        let r = Command::new("tiffcp")
            .args(*args)
            .arg(&src)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "tiffcp {args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let ours = tiff_f::read_pages(
            &std::fs::read(&file).unwrap(),
            &Limits::default(),
            Bilevel::default(),
        )
        .unwrap_or_else(|e| panic!("tiffcp {args:?}: {e}"));
        assert_same(
            &ours,
            &tiffcp_none(&file).unwrap(),
            &format!("tiffcp {args:?}"),
        );
    }
}

/// Run a command; Err(stderr) when it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    let r = cmd.output().map_err(|e| e.to_string())?;
    if r.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&r.stderr).into_owned())
    }
}

/// `g3test.g3` (1-D, EOL before every line) against libtiff's `fax2tiff`, in both bit orders.
///
/// What we share with fax2tiff: a line cut short by an EOL ("premature EOL", rows 19–35 here) or
/// stopped by an invalid code word keeps the runs decoded so far and is white from there
/// (libtiff's `CLEANUP_RUNS`), so rows 0–180 are the same pixel for pixel.
///
/// Where we differ, on purpose: line 181 has an invalid code word at x = 1528 (fax2tiff reports
/// it as "Bad code word at line 180 ... (x 1528)"; fed that line alone, fax2tiff gives the same
/// partial row as ours), and in the whole stream fax2tiff leaves that line out of its output,
/// so its rows 181.. are our rows 182.. (checked up to its next damaged line, 389; at later
/// damaged lines the two drift further apart). We keep every damaged line as far as it decodes
/// rather than shift the rest of the page up by a row.
#[test]
fn raw_g3_matches_fax2tiff_in_both_bit_orders() {
    let Some(shared) = shared() else { return };
    if !have_tool("fax2tiff") || !have_tool("tiffcp") {
        return;
    }
    let raw = std::fs::read(shared.join("corpus/g3/g3test.g3")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // g3test.g3 is stored MSB-first (fax2tiff -M); its bit-reversed twin is LSB-first (-L, the
    // modem order mgetty stores).
    let lsb: Vec<u8> = raw.iter().map(|b| b.reverse_bits()).collect();
    for (bytes, flag, name) in [(&raw, "-M", "msb"), (&lsb, "-L", "lsb")] {
        let input = dir.path().join(format!("{name}.g3"));
        let tif = dir.path().join(format!("{name}.tif"));
        std::fs::write(&input, bytes).unwrap();
        let r = Command::new("fax2tiff")
            .arg(flag)
            .arg("-o")
            .arg(&tif)
            .arg(&input)
            .output()
            .unwrap();
        assert!(r.status.success());
        // fax2tiff names the damaged lines ("Bad code word at line 180 ... (x 1528)"), counted
        // in its output rows.
        let bad: Vec<usize> = String::from_utf8_lossy(&r.stderr)
            .lines()
            .filter_map(|l| l.split("at line ").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(
            bad.iter().take(2).copied().collect::<Vec<_>>(),
            [180, 389],
            "libtiff's verdict on g3test.g3 changed: {bad:?}"
        );
        let (tw, th, theirs) = tiffcp_none_lenient(&tif);
        assert_eq!((tw, th), (1728, 1103));
        let ours = tiff_f::read_raw_g3(bytes, 1728, 98, &Limits::default()).unwrap();
        let p = &ours[0];
        assert_eq!((p.width, p.y_dpi), (1728, 98));
        assert!((1100..=1103).contains(&p.height), "rows: ours {}", p.height);
        let row = |d: &[u8], y: usize| d[y * 216..(y + 1) * 216].to_vec();
        for y in 0..=180 {
            assert!(
                row(&p.data, y) == row(&theirs, y),
                "g3test.g3 {name}-first: row {y} differs from fax2tiff"
            );
        }
        // Line 181, which fax2tiff leaves out, is here as far as it decodes (not white).
        assert!(row(&p.data, 181).iter().any(|&b| b != 0));
        for t in 181..389 {
            assert!(
                row(&p.data, t + 1) == row(&theirs, t),
                "g3test.g3 {name}-first: our row {} differs from fax2tiff's row {t}",
                t + 1
            );
        }
    }
}

/// The 3-page fixture rewritten by `tiffcp` with `args` into `dir/name`; its path.
fn fixture_by_tiffcp(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let out = dir.join(name);
    run(Command::new("tiffcp").args(args).arg(&src).arg(&out)).unwrap();
    out
}

/// The first strip of a little-endian TIFF's first directory (tags 273 and 279, one value each).
fn first_strip(b: &[u8]) -> &[u8] {
    let at = first_strip_offset(b);
    &b[at..at + first_ifd_value(b, 279)]
}

/// A T.4 1-D line of the wrong length (a bit flipped in the strip, so that the line's runs add
/// up to more or fewer than its 1728 pixels before the next EOL, T.4 §4.1.1) is damage at the row
/// where libtiff warns of it ("Line length mismatch" or "Premature EOL at line N"), though it
/// decodes as far as it goes. It used to be reported as a clean page: the general decoder, like
/// libtiff, goes on at the next EOL without an error.
#[test]
fn mh_line_of_the_wrong_length_is_damage_where_libtiff_sees_it() {
    if !have_tool("tiffcp") || !have_tool("tiffinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mh = fixture_by_tiffcp(dir.path(), "mh.tif", &["-c", "g3:1d", "-r", "100000"]);
    let clean = std::fs::read(&mh).unwrap();
    let at = first_strip_offset(&clean);
    let len = first_strip(&clean).len();
    let mut checked = 0;
    for k in 0..300 {
        let mut b = clean.clone();
        b[at + len / 4 + k * 13] ^= 0x80 >> (k % 8);
        let file = dir.path().join("bad.tif");
        std::fs::write(&file, &b).unwrap();
        let r = Command::new("tiffinfo")
            .arg("-D")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        // Only flips that libtiff sees as exactly one line of the wrong length.
        let [line] = lines[..] else { continue };
        let Some(row) = ["Line length mismatch at line ", "Premature EOL at line "]
            .iter()
            .find_map(|m| line.split(m).nth(1)?.split(' ').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        let pages = tiff_f::read_pages_report(&b, &Limits::default(), Bilevel::default()).unwrap();
        let damage = pages[0].damage.clone().unwrap_or_default();
        // Named as the first damaged line, or (a flip that loses the last line) as where the
        // clean rows end.
        let named = damage.contains(&format!("the first at row {row}"))
            || damage.contains(&format!("({row} of "));
        assert!(
            pages[0].damaged_rows >= 1 && named,
            "libtiff: {line}; ours: {} damaged rows, {damage:?}",
            pages[0].damaged_rows
        );
        eprintln!("libtiff: {line}; ours: {damage}");
        checked += 1;
        if checked == 5 {
            break;
        }
    }
    assert!(checked > 0, "no flip gave libtiff's single length warning");
}

/// A clean T.4 2-D (MR) page as a raw stream: the strip of `tiffcp -c g3:2d` (an EOL and a tag
/// bit before every line, T.4 §4.2), alone and with an RTC (six EOLs each with tag bit 1,
/// T.4 §4.2.4) after it, in both bit orders, decodes to libtiff's pixels. It used to be read as
/// 1-D: that reading gives a row for every EOL, each one damaged, and the choice between the
/// readings counted all rows.
#[test]
fn raw_g3_two_dimensional_matches_libtiff() {
    if !have_tool("tiffcp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mr = fixture_by_tiffcp(dir.path(), "mr.tif", &["-c", "g3:2d", "-r", "100000"]);
    let (tw, th, theirs) = tiffcp_none(&mr).unwrap().remove(0);
    let file = std::fs::read(&mr).unwrap();
    let strip = first_strip(&file).to_vec();
    // RTC: six times EOL (000000000001) and tag bit 1, 78 bits, then zero bits to the octet.
    let mut rtc_bits = String::new();
    for _ in 0..6 {
        rtc_bits.push_str("0000000000011");
    }
    rtc_bits.push_str("00");
    let rtc: Vec<u8> = rtc_bits
        .as_bytes()
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, &b| acc << 1 | (b - b'0')))
        .collect();
    let with_rtc = [strip.clone(), rtc].concat();
    for (name, msb) in [("strip", strip), ("strip + RTC", with_rtc)] {
        let lsb: Vec<u8> = msb.iter().map(|b| b.reverse_bits()).collect();
        for (order, bytes) in [("MSB", &msb), ("LSB", &lsb)] {
            let ours = tiff_f::read_raw_g3(bytes, tw, 196, &Limits::default()).unwrap();
            let p = &ours[0];
            assert_eq!((p.width, p.height), (tw, th), "{name}, {order} first: size");
            assert!(
                p.data == theirs,
                "{name}, {order} first: pixels differ from libtiff"
            );
        }
    }
}

#[test]
fn raw_g3_gopher_matches_its_png() {
    let Some(shared) = shared() else { return };
    if !have_pillow() {
        return;
    }
    let png = shared.join("corpus/g3/bw-gopher.png");
    let theirs = pillow_threshold(&png);
    assert_eq!((theirs.0, theirs.1), (153, 55));
    let raw = std::fs::read(shared.join("corpus/g3/bw-gopher.ccitt_group3")).unwrap();
    let ours = tiff_f::read_raw_g3(&raw, 153, 196, &Limits::default()).unwrap();
    assert_same(
        &ours,
        std::slice::from_ref(&theirs),
        "bw-gopher.ccitt_group3",
    );
    // The "aligned" twin pads every row to a byte (golang's EncodedByteAlign, TIFF Compression 2
    // style), which no fax stream does: we state what we get rather than guess.
    let raw = std::fs::read(shared.join("corpus/g3/bw-gopher-aligned.ccitt_group3")).unwrap();
    let r = tiff_f::read_raw_g3(&raw, 153, 196, &Limits::default());
    eprintln!(
        "bw-gopher-aligned: {:?} (rows are byte-aligned without EOLs: not read as T.4 EOL data)",
        r.map(|p| p[0].height)
    );
    // The truncated stream gives rows or a clear error, never a panic.
    let cut = std::fs::read(shared.join("corpus/g3/bw-gopher-truncated0.ccitt_group3")).unwrap();
    let r = tiff_f::read_raw_g3(&cut, 153, 196, &Limits::default());
    eprintln!("truncated: {:?}", r.as_ref().map(|p| p[0].height));
}

/// A gray TIFF written by Pillow from the scan fixture (uncompressed, 8 bits, min-is-black).
fn pillow_gray_tiff(dir: &Path) -> PathBuf {
    let out = dir.join("gray.tif");
    run(Command::new("python3").args([
        "-c",
        "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('L').save(sys.argv[2], dpi=(200, 200))",
    ])
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan-page.png"))
    .arg(&out))
    .unwrap();
    out
}

#[test]
fn lzw_packbits_and_gray_tiffs_match_libtiff() {
    if !have_tool("tiffcp") || !have_pillow() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bilevel = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let gray = pillow_gray_tiff(dir.path());
    let cases: [(&Path, &[&str]); 7] = [
        (&bilevel, &["-c", "lzw"]),
        (&bilevel, &["-c", "packbits", "-r", "5"]),
        (&bilevel, &["-c", "lzw", "-f", "lsb2msb"]),
        (&gray, &["-c", "none"]),
        (&gray, &["-c", "lzw"]),
        (&gray, &["-c", "lzw:2", "-r", "16"]),
        (&gray, &["-c", "packbits"]),
    ];
    for (i, (src, args)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.tif"));
        run(Command::new("tiffcp").args(*args).arg(src).arg(&file)).unwrap();
        let ours = tiff_f::read_pages(
            &std::fs::read(&file).unwrap(),
            &Limits::default(),
            Bilevel::Threshold(128),
        )
        .unwrap_or_else(|e| panic!("tiffcp {args:?}: {e}"));
        assert_same(
            &ours,
            &tiffcp_none(&file).unwrap(),
            &format!("tiffcp {args:?}"),
        );
    }
    // The gray page keeps Pillow's stated 200 dpi.
    let g = tiff_f::read_pages(
        &std::fs::read(&gray).unwrap(),
        &Limits::default(),
        Bilevel::default(),
    )
    .unwrap();
    assert_eq!(
        (g[0].width, g[0].height, g[0].x_dpi, g[0].y_dpi),
        (1654, 2338, 200, 200)
    );
}

#[test]
fn resolution_in_centimetres_becomes_dpi() {
    let Some(shared) = shared() else { return };
    // tiffinfo: "Resolution: 37.79, 37.79 pixels/cm" = 95.99 dpi.
    let p = tiff_f::read_pages(
        &std::fs::read(shared.join("corpus/tiff/hopper_g4.tif")).unwrap(),
        &Limits::default(),
        Bilevel::default(),
    )
    .unwrap();
    assert_eq!(
        (p[0].width, p[0].height, p[0].x_dpi, p[0].y_dpi),
        (128, 128, 96, 96)
    );
}

/// Offset of the value of `tag` in the first IFD of a little-endian TIFF (LONG, count 1).
fn first_ifd_value_offset(b: &[u8], tag: u16) -> usize {
    assert_eq!(&b[..4], b"II*\0");
    let ifd = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes([b[ifd], b[ifd + 1]]) as usize;
    (0..n)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes([b[e], b[e + 1]]) == tag)
        .map(|e| e + 8)
        .expect("tag present")
}

#[test]
fn damaged_rows_are_counted_per_page() {
    if !have_tool("tiffcp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let file = dir.path().join("one.tif");
    // One page, one strip, G4, little-endian.
    run(Command::new("tiffcp")
        .args(["-c", "g4", "-r", "100000", "-B"])
        .arg(format!("{},0", src.display()))
        .arg(&file))
    .unwrap_or_else(|_| {
        run(Command::new("tiffcp")
            .args(["-c", "g4", "-r", "100000"])
            .arg(format!("{},0", src.display()))
            .arg(&file))
        .unwrap()
    });
    let intact = tiffcp_none(&file).unwrap();
    let mut b = std::fs::read(&file).unwrap();
    if &b[..4] != b"II*\0" {
        eprintln!("SKIP: tiffcp wrote big-endian");
        return;
    }
    // Cut the strip to 60 % of its bytes in StripByteCounts.
    let at = first_ifd_value_offset(&b, 279);
    let count = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    b[at..at + 4].copy_from_slice(&(count * 6 / 10).to_le_bytes());
    let pages = tiff_f::read_pages_report(&b, &Limits::default(), Bilevel::default()).unwrap();
    assert_eq!(pages.len(), 1);
    let p = &pages[0];
    let (w, h, want) = &intact[0];
    assert_eq!((p.bitmap.width, p.bitmap.height), (*w, *h));
    assert!(p.damaged_rows > 0 && p.damaged_rows < *h, "{:?}", p.damage);
    assert!(p.damage.is_some());
    // The rows that decoded are libtiff's rows of the intact page.
    let good = (*h - p.damaged_rows) as usize * p.bitmap.stride();
    assert_eq!(p.bitmap.data[..good], want[..good]);
    assert_eq!(p.source_encoding, Some(Encoding::Mmr));
}

#[test]
fn check_reports_profiles_and_reasons() {
    let limits = Limits::default();
    let fax = fixture("fax-3page-g3.tif");
    let s = tiff_f::convert(&[&fax], &WriteOptions::default(), &limits).unwrap();
    let c = tiff_f::check(&s.bytes, &limits).unwrap();
    assert!(c.problems.is_empty(), "{c}");
    assert_eq!(c.profile(), Some("S"));
    assert_eq!(c.pages.len(), 3);
    let mmr = WriteOptions {
        encoding: Encoding::Mmr,
        resolution: Resolution::Superfine,
        ..WriteOptions::default()
    };
    let f = tiff_f::convert(&[&fax], &mmr, &limits).unwrap();
    let c = tiff_f::check(&f.bytes, &limits).unwrap();
    assert_eq!(c.profile(), Some("F"), "{c}");
    // Per page: Compression 4 and YResolution 391 break profile S only.
    let tags: Vec<(Option<usize>, Option<u16>)> =
        c.problems.iter().map(|p| (p.page, p.tag)).collect();
    assert_eq!(tags.len(), 6, "{c}");
    for page in 1..=3 {
        assert!(tags.contains(&(Some(page), Some(259))) && tags.contains(&(Some(page), Some(283))));
    }
    assert!(
        c.to_string()
            .contains("page 1: RFC 3949 §3.2.1: Compression is 4"),
        "{c}"
    );
    // tiffcp's fixture (tiffinfo: no Subfile Type, Rows/Strip 37, Page Number 0-0): no
    // NewSubfileType breaks both profiles, several strips break S.
    let c = tiff_f::check(&fax, &limits).unwrap();
    assert_eq!(c.profile(), None);
    for p in &c.problems {
        assert!(matches!(p.tag, Some(254) | Some(278)), "{p}");
    }
    assert_eq!(c.to_string().lines().count(), 6 + 1, "{c}");
    assert!(tiff_f::check(b"not a tiff", &limits).is_err());
}

#[test]
fn passthrough_keeps_b4_width_and_g4_coding() {
    if !have_tool("tiffcp") || !have_pillow() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("b4.tif");
    // A B4-wide G4 page written by Pillow (libtiff inside Pillow), 204x196 dpi.
    run(Command::new("python3")
        .args([
            "-c",
            "import sys, random; from PIL import Image, ImageDraw\n\
             im = Image.new('1', (2048, 300), 1); d = ImageDraw.Draw(im)\n\
             random.seed(7)\n\
             for _ in range(200):\n    x, y = random.randrange(2000), random.randrange(280); d.rectangle((x, y, x + random.randrange(40), y + random.randrange(15)), fill=0)\n\
             im.save(sys.argv[1], compression='group4', dpi=(204, 196))",
        ])
        .arg(&src))
    .unwrap();
    let input = std::fs::read(&src).unwrap();
    let opts = WriteOptions {
        encoding: Encoding::Passthrough,
        resolution: Resolution::Passthrough,
        ..WriteOptions::default()
    };
    let calls = std::sync::Mutex::new(Vec::new());
    let out = tiff_f::convert_with_progress(&[&input, &input], &opts, &Limits::default(), &|n| {
        calls.lock().unwrap().push(n)
    })
    .unwrap();
    let mut calls = calls.into_inner().unwrap();
    calls.sort();
    assert_eq!(calls, vec![1, 2]);
    let file = dir.path().join("out.tif");
    std::fs::write(&file, &out.bytes).unwrap();
    let theirs = tiffcp_none(&file).unwrap();
    let want = tiffcp_none(&src).unwrap();
    assert_eq!(theirs.len(), 2);
    assert_eq!((theirs[0].0, theirs[0].1), (2048, 300));
    assert_eq!(theirs[0].2, want[0].2, "pixels kept");
    let info = Command::new("tiffinfo").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert_eq!(text.matches("CCITT Group 4").count(), 2, "{text}");
    let c = tiff_f::check(&out.bytes, &Limits::default()).unwrap();
    assert_eq!(c.profile(), Some("F"), "{c}");
    // Without passthrough the page is scaled to 1728.
    let scaled = tiff_f::convert(&[&input], &WriteOptions::default(), &Limits::default()).unwrap();
    assert_eq!(
        tiff_f::check(&scaled.bytes, &Limits::default())
            .unwrap()
            .profile(),
        Some("S")
    );
}

/// The first strip's offset in a little-endian TIFF's first directory (tag 273, one LONG or
/// SHORT value held in the entry itself).
fn first_strip_offset(b: &[u8]) -> usize {
    first_ifd_value(b, 273)
}

/// The value of `tag` in the first IFD of a little-endian TIFF (one SHORT or LONG).
fn first_ifd_value(b: &[u8], tag: u16) -> usize {
    let at = first_ifd_value_offset(b, tag);
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    assert_eq!(u32_at(at - 4), 1, "one value of tag {tag}");
    if u16::from_le_bytes([b[at - 6], b[at - 5]]) == 3 {
        usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
    } else {
        u32_at(at)
    }
}

/// A T.6 strip whose first octets were overwritten with zeros (or that is all zeros) is damage,
/// as libtiff reports it ("Premature EOL at line 0"): T.6 has no fill bits (T.6 §2.2.2), so a
/// run of zero bits is no code word. It used to come out as a clean white page, because the
/// second-chance decoder padded the rows after what it took for an end-of-block.
#[test]
fn zeroed_start_of_a_g4_strip_is_damage_like_libtiff() {
    if !have_tool("tiffcp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let g4 = fixture_by_tiffcp(dir.path(), "g4.tif", &["-c", "g4", "-r", "100000"]);
    let clean = std::fs::read(&g4).unwrap();
    let at = first_strip_offset(&clean);
    for zeros in [64, 4000] {
        let mut b = clean.clone();
        let end = (at + zeros).min(b.len());
        b[at..end].fill(0);
        let file = dir.path().join(format!("zeroed-{zeros}.tif"));
        std::fs::write(&file, &b).unwrap();
        // The oracle: libtiff cannot read the page either.
        assert!(
            tiffcp_none(&file).is_err(),
            "libtiff decodes the strip with {zeros} zero octets"
        );
        let first = match tiff_f::read_pages_report(&b, &Limits::default(), Bilevel::default()) {
            Ok(pages) => pages[0].damaged_rows,
            Err(e) => {
                assert!(e.to_string().contains("page 1"), "{e}");
                u32::MAX
            }
        };
        assert!(first > 0, "{zeros} zero octets read as a clean page");
    }
}

/// A directory with ImageWidth twice (88, then 590: a fuzzer's file in the corpus) counts the
/// first value, as libtiff reads it. TIFF 6.0 §2 allows each tag once; the last value used to win,
/// and the page was decoded 590 pixels wide.
#[test]
fn a_tag_given_twice_keeps_its_first_value_like_libtiff() {
    let Some(shared) = shared() else { return };
    if !have_tool("tiffinfo") {
        return;
    }
    let file = shared.join("corpus/tiff/crash-74d2a78403a5a59db1fb0a2b8735ac068a75f6e3.tif");
    let info = Command::new("tiffinfo").arg(&file).output().unwrap();
    let libtiff_width: u32 = String::from_utf8_lossy(&info.stdout)
        .split("Image Width: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("tiffinfo names the width");
    let pages = tiff_f::read_pages_report(
        &std::fs::read(&file).unwrap(),
        &Limits::default(),
        Bilevel::default(),
    )
    .unwrap();
    assert_eq!(pages[0].bitmap.width, libtiff_width);
}
