//! The command line as operators and scripts use it (INTERFACE.md): exit codes, located
//! configuration errors, `onramp submit` into a spool that `serve` later drains, `jobs`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;

fn t37gw(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_t37gw"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SHIPPED: &str = include_str!("../gateway.yaml");

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn config_check_accepts_the_shipped_file() {
    let out = t37gw(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["config", "check", "gateway.yaml"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn config_check_names_file_line_and_key_of_a_misspelt_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = SHIPPED.replacen("maximum-recipients:", "maximum-recipents:", 1);
    std::fs::write(dir.path().join("g.yaml"), &bad).unwrap();
    let out = t37gw(dir.path(), &["config", "check", "g.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = line_of(&bad, "maximum-recipents:");
    assert!(err.starts_with(&format!("g.yaml:{line}:")), "{err}");
    assert!(err.contains(": maximum-recipents: unknown field"), "{err}");
}

#[test]
fn config_check_names_file_line_and_key_of_a_bad_destination_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let bad = SHIPPED.replacen(
        "destination-pattern: \"+1900T\"",
        "destination-pattern: \"+19[00T\"",
        1,
    );
    assert_ne!(bad, SHIPPED);
    std::fs::write(dir.path().join("g.yaml"), &bad).unwrap();
    let out = t37gw(dir.path(), &["config", "check", "g.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = line_of(&bad, "+19[00T");
    assert!(err.starts_with(&format!("g.yaml:{line}:")), "{err}");
    assert!(err.contains(": destination-pattern: "), "{err}");
}

#[test]
fn config_check_of_a_missing_file_fails_with_exit_1_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = t37gw(dir.path(), &["config", "check", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope.yaml"));
    let out = t37gw(dir.path(), &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn onramp_submit_spools_a_job_that_jobs_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    let tif = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let out = t37gw(
        dir.path(),
        &[
            "onramp",
            "submit",
            "--dnis",
            "12025550100",
            "--ani",
            "4940123456",
            tif.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let job = text(&out.stdout).trim().to_string();
    assert!(t37gw::ids::is_job_id(&job), "{job}");
    let out = t37gw(dir.path(), &["jobs"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(&job))
        .expect("job row");
    assert!(
        row.contains("onramp") && row.contains("queued") && row.contains(" 3 "),
        "{row}"
    );
    let out = t37gw(dir.path(), &["jobs", "--json", "--state", "queued"]);
    let v: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["id"], job.as_str());
    assert_eq!(v["recipient"], "FAX=+12025550100@gw.example.test");
    let out = t37gw(dir.path(), &["jobs", "show", &job]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("onramp_submitted"));
    let out = t37gw(dir.path(), &["jobs", "show", "ON-nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    // A page that is no image: exit 1, no job.
    std::fs::write(dir.path().join("junk.tif"), b"II*\0garbage").unwrap();
    let out = t37gw(
        dir.path(),
        &["onramp", "submit", "--dnis", "1", "--ani", "2", "junk.tif"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("image"), "{}", text(&out.stderr));
}

#[test]
fn demo_completes_and_leaves_its_workdir() {
    if !have_tool("tiffinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let out = t37gw(dir.path(), &["demo", "--workdir", w.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        w.join("gateway.yaml").is_file()
            && w.join("journal.jsonl").is_file()
            && w.join("spool").is_dir()
    );
    let tifs: Vec<_> = std::fs::read_dir(w.join("outbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "tif"))
        .collect();
    assert_eq!(tifs.len(), 2);
    for t in tifs {
        let json = t.path().with_extension("json");
        assert!(json.is_file(), "{} has its job file", t.path().display());
        let (ok, out, err) = run("tiffinfo", &["-D", t.path().to_str().unwrap()]);
        assert!(ok && err.trim().is_empty(), "{err}");
        assert!(out.contains("CCITT Group 3"));
    }
}

#[test]
fn tiff_convert_and_check_agree_with_libtiff() {
    if !have_tool("tiffinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let out = dir.path().join("out.tif");
    let o = t37gw(
        dir.path(),
        &[
            "tiff",
            "convert",
            fx.join("fax-3page-g3.tif").to_str().unwrap(),
            fx.join("scan-page.png").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (ok, info, err) = run("tiffinfo", &[out.to_str().unwrap()]);
    assert!(ok && err.trim().is_empty(), "{err}");
    assert_eq!(
        info.matches("TIFF Directory").count(),
        4,
        "three pages plus one"
    );
    assert_eq!(info.matches("Image Width: 1728").count(), 4);
    // Ours is profile S; the libtiff-written fixture (no NewSubfileType, many strips) is not.
    let o = t37gw(dir.path(), &["tiff", "check", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("profile S"));
    let o = t37gw(
        dir.path(),
        &[
            "tiff",
            "check",
            fx.join("fax-3page-g3.tif").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("NewSubfileType"),
        "{}",
        text(&o.stdout)
    );
    let o = t37gw(
        dir.path(),
        &[
            "tiff",
            "convert",
            "nope.png",
            "-o",
            "x.tif",
            "--encoding",
            "jbig",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn receipts_parse_and_ingest_on_the_postfix_corpus() {
    let Some(shared) = shared_dir() else { return };
    let dsn = shared.join("corpus/postfix-dsn/success-envid-xtext-plus-equals.eml");
    let o = t37gw(
        Path::new("."),
        &["receipts", "parse", "--json", dsn.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    // As Postfix wrote them (corpus/postfix-dsn/answers.json).
    assert_eq!(v["envid"], "FAXJOB+0017=x");
    assert_eq!(v["kind"], "dsn");
    assert_eq!(v["recipients"][0]["action"], "delivered");
    assert_eq!(v["recipients"][0]["final_recipient"], "alice@example.test");
    // Ingest twice: the second time every report is already known.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    let folder = shared.join("corpus/postfix-dsn");
    let o = t37gw(
        dir.path(),
        &["receipts", "ingest", folder.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("25 messages: 0 correlated, 25 orphan"),
        "{}",
        text(&o.stdout)
    );
    let o = t37gw(
        dir.path(),
        &["receipts", "ingest", folder.to_str().unwrap()],
    );
    assert!(
        text(&o.stdout).contains("25 already seen"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn onramp_submit_takes_mgetty_raw_g3_pages() {
    let Some(shared) = shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    let g3 = shared.join("corpus/g3/g3test.g3");
    let out = t37gw(
        dir.path(),
        &[
            "onramp",
            "submit",
            "--dnis",
            "1",
            "--ani",
            "2",
            g3.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = t37gw(dir.path(), &["jobs", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["pages"], 1);
    let out = t37gw(
        dir.path(),
        &[
            "onramp",
            "submit",
            "--dnis",
            "1",
            "--ani",
            "2",
            "--g3-resolution",
            "superb",
            g3.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn tiff_convert_names_the_input_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    // A TIFF header whose first IFD offset points past the end of the file.
    std::fs::write(dir.path().join("bad.tif"), b"II*\0\xff\xff\0\0junk").unwrap();
    let o = t37gw(
        dir.path(),
        &[
            "tiff",
            "convert",
            good.to_str().unwrap(),
            "bad.tif",
            "-o",
            "out.tif",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.starts_with("t37gw: bad.tif: "), "{err}");
    assert!(!err.contains("fax-3page-g3.tif"), "{err}");
    assert!(!dir.path().join("out.tif").exists());
}

#[test]
fn receipts_ingest_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    std::fs::write(
        dir.path().join("a.eml"),
        "From: someone@example.test\r\nSubject: hello\r\n\r\nnot a report\r\n",
    )
    .unwrap();
    let o = t37gw(dir.path(), &["receipts", "ingest", "a.eml", "missing.eml"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("t37gw: missing.eml: No such file or directory"),
        "{err}"
    );
    // The readable file was still ingested.
    assert!(
        text(&o.stdout).starts_with("1 messages: 0 correlated, 0 orphan, 1 not a report"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn jobs_without_a_journal_says_which_journal_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    let journal = dir.path().join("journal.jsonl");
    let o = t37gw(dir.path(), &["jobs"]);
    assert_eq!(o.status.code(), Some(0));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("t37gw: note: journal journal.jsonl does not exist"),
        "{err}"
    );
    // Only the table's header: an empty gateway is valid.
    assert_eq!(text(&o.stdout).lines().count(), 1);
    assert!(text(&o.stdout).starts_with("JOB "));
    // The path as the configuration resolves it (beside the configuration file).
    let config = dir.path().join("gateway.yaml");
    let o = t37gw(
        Path::new("/"),
        &[
            "jobs",
            "show",
            "--config",
            config.to_str().unwrap(),
            "ON-nonexistent",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with(&format!(
            "t37gw: note: journal {} does not exist",
            journal.display()
        )),
        "{}",
        text(&o.stderr)
    );
    assert!(!journal.exists(), "reading jobs creates no journal");
    // With a journal, no note.
    std::fs::write(&journal, "").unwrap();
    let o = t37gw(dir.path(), &["jobs"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stderr), "");
}

#[test]
fn demo_without_workdir_removes_its_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_t37gw"))
        .current_dir(tmp.path())
        .env("TMPDIR", tmp.path())
        .arg("demo")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("`t37gw demo --workdir DIR` keeps them"),
        "{}",
        text(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn serve_creates_the_incoming_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), SHIPPED).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_t37gw"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let incoming = dir.path().join("incoming");
    let started = std::time::Instant::now();
    while !incoming.is_dir() && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(incoming.is_dir());
    assert!(dir.path().join("spool").is_dir());
}

/// `tiff convert --dithering`: a uniform gray page (PGM, level 96 of 255) made black and white.
/// By threshold (luma below 128 is black) every pixel is black; by Floyd–Steinberg error
/// diffusion the share of black pixels is the page's darkness, 1 − 96/255 ≈ 0.624 (error
/// diffusion keeps the mean gray level; Floyd and Steinberg, "An adaptive algorithm for spatial
/// greyscale", 1976). Pixels as libtiff decodes them. Floyd–Steinberg is the default, as for a
/// dial peer's `dithering` key.
#[test]
fn tiff_convert_dithering_as_the_dial_peer_key() {
    if !have_tool("tiffcp") || !have_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pgm = dir.path().join("gray.pgm");
    let (w, h) = (1728usize, 400usize);
    let mut bytes = format!("P5\n{w} {h}\n255\n").into_bytes();
    bytes.resize(bytes.len() + w * h, 96);
    std::fs::write(&pgm, &bytes).unwrap();
    let out = dir.path().join("out.tif");
    for (extra, lo, hi) in [
        (&[][..], 0.60, 0.65),
        (&["--dithering", "floyd-steinberg"][..], 0.60, 0.65),
        (&["--dithering", "threshold"][..], 1.0, 1.0),
    ] {
        let mut args = vec![
            "tiff",
            "convert",
            pgm.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = t37gw(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", text(&o.stderr));
        let pages = libtiff_pages(&out);
        let (pw, ph, data) = &pages[0];
        let black: u32 = mask_padding(*pw, *ph, data)
            .iter()
            .map(|b| b.count_ones())
            .sum();
        let share = f64::from(black) / (f64::from(*pw) * f64::from(*ph));
        assert!(
            (lo..=hi).contains(&share),
            "{extra:?}: {share:.3} of the pixels black, expected {lo}..={hi}"
        );
    }
    let o = t37gw(
        dir.path(),
        &[
            "tiff",
            "convert",
            pgm.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--dithering",
            "ordered",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--dithering"),
        "{}",
        text(&o.stderr)
    );
}
