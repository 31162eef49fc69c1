//! Side-by-side page benchmark: our TIFF-F codec against libtiff's `tiffcp` and ImageMagick on
//! the 100-page set of `../shared/bench/gen_pages.py` (issue 3, "Performance").
//!
//! Run (release build; the bench folder is read-only, so copy it first):
//!
//! ```text
//! d=$(mktemp -d); cp -r ../shared/bench "$d"; (cd "$d/bench" && ./gen_pages.py)
//! cargo bench --bench tiff_f -- "$d/bench/data/pages"
//! ```
//!
//! Env: `RUNS` (default 5; medians are reported), `IM_PAGES` (pages given to ImageMagick,
//! default 20: it runs at about one page per second), `PIN=0` to not pin to one core,
//! `ONLY=encode,decode,png` to run only some groups of lines (comma-separated; `png` is both
//! PNG lines; default all). The decode lines need the encode lines' `tiffcp` files, so `decode`
//! also runs the reference side of `encode`.
//! Each encode and decode line is followed by the ratio of CPU times (tiffcp's over ours, all
//! timed runs; ours and tiffcp's runs alternate),
//! which does not move with the time either side waits for a core on a loaded machine, and by
//! the ratio of the best runs of each (interference only adds time).
//! The PNG lines are followed by how many cores ours kept busy (CPU time / wall time, from
//! `/proc/self/stat`) and its CPU time per page, with the load average at start and end: the
//! all-cores line can only scale when the other core is free.
//! Every reference tool runs pinned to CPU 0 with `taskset` (when present) and
//! `MAGICK_THREAD_LIMIT=1`; ours runs on one thread except the "2 cores" line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use t37gw::tiff_f::{self, Bilevel, Encoding, Limits, Resolution, WriteOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds per run (median of `runs`) of `f`, after one warm-up.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// CPU seconds (user + system) this process has used so far, all threads (dead ones included),
/// from `/proc/self/stat` (Linux; 100 ticks per second assumed); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    stat_seconds(11)
}

/// CPU seconds (user + system) of this process's waited-for children (the reference tools).
fn child_cpu_seconds() -> Option<f64> {
    stat_seconds(13)
}

/// Two consecutive tick fields of `/proc/self/stat`, counted after the command name, summed.
fn stat_seconds(at: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(at)?.parse::<f64>().ok()? + f.get(at + 1)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The 1-minute load average (`/proc/loadavg`), as text.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// What [`time_pair`] measured.
struct Pair {
    /// Median seconds per run, ours and theirs.
    ours: f64,
    theirs: f64,
    /// Best (shortest) run of each, in seconds: on a shared machine interference only ever
    /// adds time, so the best runs are the least disturbed.
    ours_best: f64,
    theirs_best: f64,
    /// Their CPU time over ours, all timed runs.
    cpu_ratio: Option<f64>,
}

/// Seconds per run (medians and best of `runs`) of `ours` and `theirs`, after one warm-up each,
/// their runs alternating so that a change in machine load hits both sides alike; and the ratio
/// of their CPU times over all timed runs (theirs / ours: ours in this process, theirs in the
/// child processes), which waiting for a busy core does not change.
fn time_pair(runs: usize, mut ours: impl FnMut(), mut theirs: impl FnMut()) -> Pair {
    ours();
    theirs();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut ca, mut cb) = (0.0, 0.0);
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_seconds());
        ours();
        a.push(t.elapsed().as_secs_f64());
        ca += cpu_seconds().zip(c).map_or(f64::NAN, |(x, y)| x - y);
        let (t, c) = (Instant::now(), child_cpu_seconds());
        theirs();
        b.push(t.elapsed().as_secs_f64());
        cb += child_cpu_seconds().zip(c).map_or(f64::NAN, |(x, y)| x - y);
    }
    let cpu_ratio = (ca > 0.0 && cb.is_finite()).then(|| cb / ca);
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Pair {
        ours_best: best(&a),
        theirs_best: best(&b),
        ours: median(a),
        theirs: median(b),
        cpu_ratio,
    }
}

/// The two lines under an encode or decode line: the ratio of CPU times and of the best runs.
fn pair_details(p: &Pair) {
    if let Some(r) = p.cpu_ratio {
        println!("{:<34} {:>29.2}x", "  same, by CPU time", r);
    }
    println!(
        "{:<34} {:>29.2}x",
        "  same, best runs",
        p.theirs_best / p.ours_best
    );
}

fn pinned() -> bool {
    std::env::var("PIN").map_or(true, |v| v != "0")
        && Command::new("taskset").arg("-V").output().is_ok()
}

/// Run a shell command (pinned to CPU 0 when possible); panic on failure.
fn sh(cmd: &str) {
    let full = if pinned() {
        format!("taskset -c 0 sh -c '{}'", cmd.replace('\'', "'\\''"))
    } else {
        cmd.to_string()
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(&full)
        .env("MAGICK_THREAD_LIMIT", "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pin this process to CPU 0 (the single-core figures), when `taskset` is there.
fn pin_self() {
    if pinned() {
        let _ = Command::new("taskset")
            .args(["-p", "-c", "0", &std::process::id().to_string()])
            .output();
    }
}

fn unpin_self() {
    if pinned() {
        let _ = Command::new("taskset")
            .args(["-p", "-c", "0-1023", &std::process::id().to_string()])
            .output();
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("pages dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn im_mogrify() -> Option<String> {
    for c in ["magick mogrify", "mogrify-im6.q16", "mogrify"] {
        let bin = c.split(' ').next().unwrap_or(c);
        if Command::new(bin).arg("-version").output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ImageMagick")
        }) {
            return Some(c.to_string());
        }
    }
    None
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/bench/data/pages"));
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let im_pages: usize = std::env::var("IM_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let only = std::env::var("ONLY").unwrap_or_default();
    let want = |g: &str| only.is_empty() || only.split(',').any(|o| o.trim() == g);
    let tifs = files(&dir, "tif");
    let pngs = files(&dir, "png");
    if tifs.is_empty() || pngs.is_empty() {
        eprintln!(
            "no p*.tif / p*.png in {}: run gen_pages.py in a copy of ../shared/bench first",
            dir.display()
        );
        std::process::exit(1);
    }
    let n = tifs.len() as f64;
    let out = tempfile::tempdir().expect("tempdir");
    let o = out.path();
    let list = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let tif_list = list(&tifs);
    let limits = Limits::default();
    let tif_bytes: Vec<Vec<u8>> = tifs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let png_bytes: Vec<Vec<u8>> = pngs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    println!(
        "{} pages from {}; {runs} runs, medians (and best runs); single core = pinned to CPU 0{}",
        tifs.len(),
        dir.display(),
        if pinned() {
            ""
        } else {
            " (taskset missing: NOT pinned)"
        }
    );
    println!("load average (1 min) at start: {}", load());
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "what", "ours p/s", "ref p/s", "ratio"
    );
    let row = |what: &str, ours: f64, theirs: f64| {
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>7.2}x",
            what,
            ours,
            theirs,
            ours / theirs
        );
    };

    pin_self();
    // Encode: uncompressed 1-bit TIFF pages -> one multi-page coded TIFF file, like `tiffcp -c`.
    for (enc, c) in [
        (Encoding::Mh, "g3:1d"),
        (Encoding::Mr, "g3:2d"),
        (Encoding::Mmr, "g4"),
    ] {
        let opts = WriteOptions {
            encoding: enc,
            ..WriteOptions::default()
        };
        if !want("encode") && !want("decode") {
            break;
        }
        let dst = o.join("ours.tif");
        // Page by page through one buffer, each page compressed as it is read, as tiffcp does.
        let mut ours_f = || {
            let mut out = tiff_f::TiffFWriter::new(&opts);
            let mut buf = Vec::new();
            for b in &tif_bytes {
                let reader = tiff_f::PageReader::new(b, &limits, Bilevel::default()).unwrap();
                for i in 0..reader.len() {
                    let p = reader.page_into(i, buf).unwrap();
                    assert_eq!(p.damaged_rows, 0);
                    out.push(&p.bitmap).unwrap();
                    buf = p.bitmap.data;
                }
            }
            std::fs::write(&dst, out.finish().unwrap().bytes).unwrap();
        };
        let theirs_f = || {
            sh(&format!(
                "tiffcp -c {c} {tif_list} {}/ref_{c}.tif",
                o.display()
            ))
        };
        if !want("encode") {
            theirs_f(); // the decode lines read this file
            continue;
        }
        let p = time_pair(runs, &mut ours_f, theirs_f);
        row(
            &format!("encode {enc:?} (tiffcp -c {c})"),
            n / p.ours,
            n / p.theirs,
        );
        pair_details(&p);
    }
    // Decode: tiffcp's G3/G4 file -> uncompressed pages.
    for c in ["g3:1d", "g3:2d", "g4"] {
        if !want("decode") {
            break;
        }
        let src = o.join(format!("ref_{c}.tif"));
        let coded = std::fs::read(&src).unwrap();
        let dst = o.join("ours_none.raw");
        // Page by page through one buffer, as tiffcp goes strip by strip through one.
        let ours_f = || {
            let reader = tiff_f::PageReader::new(&coded, &limits, Bilevel::default()).unwrap();
            assert_eq!(reader.len(), tifs.len());
            let mut f = std::fs::File::create(&dst).unwrap();
            let mut buf = Vec::new();
            for i in 0..reader.len() {
                let p = reader.page_into(i, buf).unwrap();
                assert_eq!(p.damaged_rows, 0);
                f.write_all(&p.bitmap.data).unwrap();
                buf = p.bitmap.data;
            }
        };
        let theirs_f = || {
            sh(&format!(
                "tiffcp -c none {} {}/ref_none.tif",
                src.display(),
                o.display()
            ))
        };
        let p = time_pair(runs, ours_f, theirs_f);
        row(
            &format!("decode {c} (tiffcp -c none)"),
            n / p.ours,
            n / p.theirs,
        );
        pair_details(&p);
    }
    if !want("png") {
        return;
    }
    // Gray PNG -> dithered MH TIFF-F, one output file per page like mogrify.
    let opts = WriteOptions {
        encoding: Encoding::Mh,
        resolution: Resolution::Fine,
        bilevel: Bilevel::FloydSteinberg,
        ..WriteOptions::default()
    };
    let (cpu1, wall1) = (cpu_seconds(), Instant::now());
    let ours = time(runs, || {
        for (i, b) in png_bytes.iter().enumerate() {
            let f = tiff_f::convert(&[b.as_slice()], &opts, &limits).unwrap();
            std::fs::write(o.join(format!("ours_png_{i}.tif")), f.bytes).unwrap();
        }
    });
    let one_core = cpu_seconds()
        .zip(cpu1)
        .map(|(c1, c0)| (c1 - c0, wall1.elapsed().as_secs_f64()));
    let theirs = match im_mogrify() {
        Some(m) => {
            let some = list(&pngs[..im_pages.min(pngs.len())]);
            let imdir = o.join("im");
            std::fs::create_dir_all(&imdir).unwrap();
            let t = time(1, || {
                sh(&format!(
                    "{m} -path {} -format tif -resize 1728x -monochrome -compress Fax \
                     -density 204x196 -units PixelsPerInch {some}",
                    imdir.display()
                ))
            });
            Some(im_pages.min(pngs.len()) as f64 / t)
        }
        None => {
            println!("ImageMagick not installed (apt-get install imagemagick): no reference");
            None
        }
    };
    if let Some(t) = theirs {
        row("PNG -> dithered MH (ImageMagick)", n / ours, t);
    }
    if let Some((c, wall)) = one_core {
        println!(
            "one core: {:.2} cores busy, {:.1} ms CPU per page",
            c / wall,
            1000.0 * c / (n * (runs + 1) as f64)
        );
    }
    // Both cores: one multi-page job (convert parallelises decode and encode).
    unpin_self();
    let inputs: Vec<&[u8]> = png_bytes.iter().map(|b| b.as_slice()).collect();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let ours2 = time(runs, || {
        let f = tiff_f::convert(&inputs, &opts, &limits).unwrap();
        std::fs::write(o.join("ours_png_all.tif"), f.bytes).unwrap();
    });
    let cpu = cpu_seconds().zip(cpu0).map(|(c1, c0)| c1 - c0);
    if let Some(t) = theirs {
        row("PNG -> dithered MH, all cores", n / ours2, t);
    }
    // Whether the all-cores line had both cores: CPU time over wall time of its runs (2.0 =
    // both cores busy all along; less = waiting, for a serial part or for another process).
    if let Some(c) = cpu {
        println!(
            "all cores: {:.2} cores busy on average ({} available), {:.1} ms CPU per page; \
             load average at end {}",
            c / wall0.elapsed().as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            1000.0 * c / (n * (runs + 1) as f64),
            load()
        );
    }
}
