//! Shared test helpers: start a gateway on 127.0.0.1:0 in a temporary workdir, wait for
//! journal events, find external tools and the shared corpus (skip with a reason locally,
//! fail under CI=true).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use t37gw::config::{Config, SHIPPED_CONFIG};
use t37gw::gateway::Gateway;
use t37gw::journal::{read_events, Event};

/// True when running under CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip (return false, printing why) or, under CI, panic.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// True when `tool` is an executable on PATH; else skip/fail. (Running it with `-h` is no
/// test: some tools page their help and wait for a terminal.)
pub fn have_tool(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    found
        || skip(&format!(
            "{tool} is not installed (scripts/test.sh installs it)"
        ))
}

/// `../shared` beside the project, or skip/fail.
pub fn shared_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.join("corpus").is_dir() {
        Some(p)
    } else {
        skip("../shared (the test corpus) is absent");
        None
    }
}

/// A test gateway's workdir and config text.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write the shipped config with the listener and smarthost on `port`, then `edit` it.
    pub fn config(&self, port: u16, edit: impl Fn(String) -> String) -> Config {
        let text = SHIPPED_CONFIG
            .replace(
                "listen: 127.0.0.1:2525",
                &format!("listen: 127.0.0.1:{port}"),
            )
            .replace("- 127.0.0.1:2525", &format!("- 127.0.0.1:{port}"))
            .replace("retry-initial: 5", "retry-initial: 1");
        let path = self.path().join("gateway.yaml");
        std::fs::write(&path, edit(text)).unwrap();
        Config::load(&path).unwrap()
    }

    pub fn events(&self) -> Vec<Event> {
        read_events(&self.path().join("journal.jsonl")).unwrap()
    }

    /// Wait until an event matches, at most `secs` seconds; panics with the journal otherwise.
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let lines: Vec<String> = self.events().iter().map(|e| e.to_line()).collect();
                panic!(
                    "timed out waiting for {what}; journal:\n{}",
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `.tif` files in the outbox.
    pub fn outbox_tiffs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path().join("outbox"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|x| x == "tif"));
        v.sort();
        v
    }
}

/// Start a gateway on a fresh 127.0.0.1 port with the shipped config (edited by `edit`).
pub async fn start(work: &Workdir, edit: impl Fn(String) -> String) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = work.config(port, edit);
    Gateway::start(cfg, Some(listener)).await.unwrap()
}

/// The fixture files.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

/// Run a command, returning (status success, stdout, stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Decode a TIFF with libtiff (`tiffcp -c none`) and return each page's packed rows
/// (1 = black) as libtiff sees them: (width, height, rows).
pub fn libtiff_pages(path: &Path) -> Vec<(u32, u32, Vec<u8>)> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let (ok, _, err) = run(
        "tiffcp",
        &[
            "-c",
            "none",
            path.to_str().unwrap(),
            out.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "tiffcp -c none failed: {err}");
    let py = r#"
import sys
from PIL import Image, ImageSequence
im = Image.open(sys.argv[1])
for page in ImageSequence.Iterator(im):
    p = page.convert('1')
    w, h = p.size
    # Pillow mode 1: 0 = black; emit packed rows with 1 = black
    raw = bytes(b ^ 0xFF for b in p.tobytes())
    sys.stdout.write(f"{w} {h} {raw.hex()}\n")
"#;
    let (ok, stdout, err) = run("python3", &["-c", py, out.path().to_str().unwrap()]);
    assert!(ok, "Pillow could not read libtiff's output: {err}");
    stdout
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            let w: u32 = it.next().unwrap().parse().unwrap();
            let h: u32 = it.next().unwrap().parse().unwrap();
            let hex = it.next().unwrap_or("");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (w, h, bytes)
        })
        .collect()
}

/// Packed rows with the padding bits past `width` cleared.
pub fn mask_padding(width: u32, height: u32, data: &[u8]) -> Vec<u8> {
    let stride = width.div_ceil(8) as usize;
    let mut v = data.to_vec();
    let spare = (stride * 8) as u32 - width;
    if spare > 0 {
        let mask = 0xFFu8 << spare;
        for row in 0..height as usize {
            if let Some(b) = v.get_mut(row * stride + stride - 1) {
                *b &= mask;
            }
        }
    }
    v
}
