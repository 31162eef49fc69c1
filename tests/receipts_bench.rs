//! Benchmark (issue 5 "Performance"): reports parsed and correlated per second over the
//! corpus repeated to 10,000 messages, against a lookup of 10,000 jobs, on one thread.
//! Ignored by default; run with
//! `cargo test --release --test receipts_bench -- --ignored --nocapture`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use t37gw::receipts::{correlate, parse, Correlation, JobLookup};

struct Jobs {
    by_envid: HashMap<String, String>,
    by_message_id: HashMap<String, String>,
}

impl JobLookup for Jobs {
    fn job_by_envid(&self, envid: &str) -> Option<String> {
        self.by_envid.get(envid).cloned()
    }
    fn job_by_message_id(&self, id: &str) -> Option<String> {
        self.by_message_id.get(id).cloned()
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn receipts_throughput() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "corpus missing"
        );
        eprintln!("SKIP: {} not found", corpus.display());
        return;
    }
    let mut messages = Vec::new();
    for sub in ["dsn", "postfix-dsn", "dovecot-reports", "mdn"] {
        let mut paths: Vec<_> = std::fs::read_dir(corpus.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.extension().is_some_and(|e| e == "json" || e == "md"))
            .collect();
        paths.sort();
        messages.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    // 10,000 jobs: the corpus's own identifiers among synthetic ones.
    let mut jobs = Jobs {
        by_envid: HashMap::new(),
        by_message_id: HashMap::new(),
    };
    for i in 0..10_000 {
        let id = format!("FAXJOB-{i:05}");
        jobs.by_message_id
            .insert(format!("<{id}.x1@gw.example.test>"), id.clone());
        jobs.by_envid.insert(id.clone(), id);
    }
    for m in &messages {
        let r = parse(m);
        for id in [&r.returned_message_id, &r.original_message_id]
            .into_iter()
            .flatten()
        {
            jobs.by_message_id
                .entry(id.clone())
                .or_insert_with(|| "CORPUS".into());
        }
    }
    const N: usize = 10_000;
    let bytes: usize = (0..N).map(|i| messages[i % messages.len()].len()).sum();
    let mut rss = Vec::new();
    let (mut matched, mut other) = (0usize, 0usize);
    let start = Instant::now();
    for i in 0..N {
        let report = parse(&messages[i % messages.len()]);
        match correlate(&report, &jobs) {
            Correlation::Job { .. } => matched += 1,
            _ => other += 1,
        }
        if (i + 1) % 2_000 == 0 {
            rss.push(rss_kib().unwrap_or(0));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = N as f64 / secs;
    println!(
        "receipts bench: {N} messages ({} distinct corpus files, {:.1} MiB) in {secs:.3} s = {rate:.0} reports/s; {matched} matched a job, {other} orphan/not a report; RSS KiB every 2,000: {rss:?}",
        messages.len(),
        bytes as f64 / 1048576.0
    );
    assert!(
        rate >= 5_000.0,
        "{rate:.0} reports/s is below the 5,000 target"
    );
    assert!(
        rss.last().unwrap_or(&0) <= &(rss[0] + 4096),
        "memory grows: {rss:?}"
    );
}
