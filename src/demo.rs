//! `t37gw demo`: the whole T.37 loop on the shipped configuration and the sample faxes in
//! `fixtures/` (embedded in the binary, so it runs from anywhere).
//!
//! Two received faxes (a three-page G3 TIFF and a gray PNG scan) become onramp jobs; their
//! mail goes to the smarthost, which in the shipped config is this gateway's own listener;
//! the offramp faxes each to the simulated line in `WORKDIR/outbox/`, and sends a DSN to the
//! onramp's return address; the receipt tracker correlates it to the onramp job. The demo
//! waits until every onramp job has its DSN (60 s at most), prints the job table and exits
//! 0, or 1 with the reason.

use crate::cli::{format_table, job_rows};
use crate::config::{Config, SHIPPED_CONFIG};
use crate::gateway::Gateway;
use crate::onramp::ReceivedFax;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Sample fax: three pages of text, G3 1-D TIFF written by libtiff (see fixtures/README.md).
pub const SAMPLE_G3_TIFF: &[u8] = include_bytes!("../fixtures/fax-3page-g3.tif");
/// Sample scan: one gray page as PNG.
pub const SAMPLE_SCAN_PNG: &[u8] = include_bytes!("../fixtures/scan-page.png");

/// How long the demo waits for every job's DSN.
pub const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the demo in `workdir`, which keeps its files; without one, in a new temporary
/// directory that is removed when the demo succeeds (kept, and printed, when it fails).
pub async fn run(workdir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (workdir, temp) = match workdir {
        Some(w) => (w, None),
        None => {
            let t = tempfile::Builder::new().prefix("t37gw-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&workdir)?;
    // The shipped config listens on 127.0.0.1:2525 and relays to itself there; the demo binds
    // a free loopback port instead so it never collides with another service, and writes the
    // config it ran.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let text = SHIPPED_CONFIG
        .replace(
            "listen: 127.0.0.1:2525",
            &format!("listen: 127.0.0.1:{port}"),
        )
        .replace("- 127.0.0.1:2525", &format!("- 127.0.0.1:{port}"));
    let config_path = workdir.join("gateway.yaml");
    std::fs::write(&config_path, text)?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "t37gw demo in {} (SMTP on 127.0.0.1:{port})",
        workdir.display()
    );
    let gw = Gateway::start(config, Some(listener)).await?;
    let faxes = [
        (
            "three-page G3 TIFF",
            ReceivedFax {
                dnis: "12025550100".into(),
                ani: "12025550199".into(),
                tsi: Some("t37gw demo".into()),
                pages: vec![SAMPLE_G3_TIFF.to_vec()],
            },
        ),
        (
            "gray PNG scan",
            ReceivedFax {
                dnis: "4930901820".into(),
                ani: "4940123456".into(),
                tsi: None,
                pages: vec![SAMPLE_SCAN_PNG.to_vec()],
            },
        ),
    ];
    let mut jobs = Vec::new();
    for (what, fax) in &faxes {
        let job = gw.shared.submit_fax(fax)?;
        println!(
            "submitted {what} from {} to {} as onramp job {job}",
            fax.ani, fax.dnis
        );
        jobs.push(job);
    }
    let started = Instant::now();
    let mut seen = 0usize;
    let outcome = loop {
        let events = crate::journal::read_events(&gw.shared.config.journal).unwrap_or_default();
        for ev in &events[seen.min(events.len())..] {
            println!(
                "  {}  {:<17} {}",
                ev.time.format("%H:%M:%S%.3f"),
                ev.event,
                ev.job
            );
        }
        seen = events.len();
        let rows = job_rows(&gw.shared);
        let pending: Vec<&String> = jobs
            .iter()
            .filter(|j| {
                !events
                    .iter()
                    .any(|e| &e.job == *j && e.event == "dsn_received")
            })
            .collect();
        if pending.is_empty() {
            let bad: Vec<String> = rows
                .iter()
                .filter(|r| {
                    jobs.contains(&r.id)
                        && !matches!(r.state.as_str(), "delivered" | "relayed" | "expanded")
                })
                .map(|r| format!("{} is {}", r.id, r.state))
                .collect();
            break if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            };
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let list: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
            break Err(format!(
                "no DSN within {} s for {}",
                DEMO_TIMEOUT.as_secs(),
                list.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let the last DSN's own bookkeeping land before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = job_rows(&gw.shared);
    gw.shutdown().await;
    println!();
    print!("{}", format_table(&rows));
    println!();
    // A temporary directory is removed after a demo that succeeded; the caller's --workdir,
    // or a failed demo's files to look at, are kept and named.
    let remove = match temp {
        Some(t) if outcome.is_ok() => Some(t),
        Some(t) => {
            let _ = t.keep();
            None
        }
        None => None,
    };
    if remove.is_none() {
        println!("journal: {}", workdir.join("journal.jsonl").display());
        println!("faxes:   {}", workdir.join("outbox").display());
    }
    match outcome {
        Ok(()) => {
            println!("demo complete: every fax went fax -> mail -> fax and its DSN came back");
            if let Some(t) = remove {
                if let Err(e) = t.close() {
                    eprintln!("t37gw demo: cannot remove {}: {e}", workdir.display());
                }
                println!("(its files are removed; `t37gw demo --workdir DIR` keeps them in DIR)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("t37gw demo: failed: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
