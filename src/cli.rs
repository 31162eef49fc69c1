//! The command line of INTERFACE.md. Exit codes: 0 success, 1 failure (with the reason on
//! stderr), 2 usage errors (clap's, and nothing else).

use crate::config::Config;
use crate::gateway::{Gateway, Shared};
use crate::jobs::{self, JobRow};
use crate::journal::{self, Event};
use crate::onramp::ReceivedFax;
use crate::spool::Spool;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// t37gw: a T.37 store-and-forward fax gateway (onramp fax→mail, offramp mail→fax, DSN/MDN tracking).
#[derive(Debug, Parser)]
#[command(name = "t37gw", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run onramp, offramp and receipt tracker until SIGINT/SIGTERM.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Listen address (overrides mta-receive.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Spool directory (overrides paths.spool).
        #[arg(long)]
        spool: Option<PathBuf>,
    },
    /// Run the whole loop on the shipped configuration and the sample faxes; print the job table.
    Demo {
        /// Directory for the demo's config, spool, journal and outbox (default: a new temporary one).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// Onramp commands.
    Onramp {
        #[command(subcommand)]
        command: OnrampCommand,
    },
    /// The job table derived from the journal.
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
        /// Configuration file (names the journal).
        #[arg(long, default_value = "gateway.yaml", global = true)]
        config: PathBuf,
        /// One JSON object per job, per line.
        #[arg(long)]
        json: bool,
        /// Only jobs in this state (queued, sent, delivered, failed, faxed, …).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with an event in this past duration (e.g. 30m, 1h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// Only jobs of this dial peer.
        #[arg(long)]
        peer: Option<String>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Fax image files (TIFF-F, RFC 3949).
    Tiff {
        #[command(subcommand)]
        command: TiffCommand,
    },
    /// DSN and MDN reports.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TiffCommand {
    /// Which RFC 3949 profile each file meets, or which tag or strip breaks it and why.
    Check {
        /// TIFF files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Several inputs (TIFF, PNG, JPEG, PBM/PGM) make one multi-page TIFF-F.
    Convert {
        /// Input files, in page order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// mh (profile S), mr or mmr (profile F), passthrough (keep each page's coding).
        #[arg(long, default_value = "mh")]
        encoding: String,
        /// standard (204×98), fine (204×196), superfine (204×391), passthrough.
        #[arg(long, default_value = "fine")]
        resolution: String,
        /// Gray and colour inputs to black and white: floyd-steinberg (error diffusion, for
        /// photos) or threshold (luma below 128 is black), as the dial-peer key `dithering`.
        #[arg(long, default_value = "floyd-steinberg")]
        dithering: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReceiptsCommand {
    /// Read reports from .eml files, mbox files and Maildir folders; correlate them into the
    /// journal; print a summary.
    Ingest {
        /// Configuration file (names the journal).
        #[arg(long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// .eml files, mbox files, Maildir folders or directories of .eml files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Parse report messages (.eml) without touching any job: one line per file.
    Parse {
        /// One JSON object per file and line (schema: docs/receipts.md).
        #[arg(long)]
        json: bool,
        /// Report messages (.eml files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OnrampCommand {
    /// Turn one received fax (page files) into an onramp job; prints the job id.
    Submit {
        /// Configuration file (dial peers, spool and journal).
        #[arg(long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Called number (selects the onramp dial peer).
        #[arg(long)]
        dnis: String,
        /// Calling number.
        #[arg(long)]
        ani: String,
        /// Transmitting subscriber identification reported by the fax modem.
        #[arg(long)]
        tsi: Option<String>,
        /// Vertical resolution of raw `.g3` page files (mgetty's), which carry none:
        /// standard (98 lpi) or fine (196 lpi). Default: from mgetty's file name (`ff…` fine,
        /// `fn…` standard), else fine.
        #[arg(long)]
        g3_resolution: Option<String>,
        /// Page files: multi-page G3/G4 TIFF, PNG, PBM, JPEG, raw `.g3` (1728 px lines).
        #[arg(required = true)]
        pages: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// One job's timeline.
    Show {
        /// Job id, as the job table's JOB column shows it.
        id: String,
        /// The job's journal events as they are stored, one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors as FILE:LINE:COL: KEY: message.
    Check {
        /// Configuration file.
        #[arg(default_value = "gateway.yaml")]
        file: PathBuf,
    },
}

/// `println!` for command output: a closed pipe (`t37gw jobs | head`) ends the program
/// quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal, and never with NO_COLOR set (no-color.org): logs sent to a
    // file or a journal stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("t37gw: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Run one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            spool,
        } => {
            let mut cfg = load_config(&config)?;
            if let Some(l) = listen {
                cfg.mta_receive.listen = l;
            }
            if let Some(s) = spool {
                cfg.spool = s;
            }
            runtime()?.block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { workdir } => runtime()?.block_on(crate::demo::run(workdir)),
        Command::Onramp {
            command:
                OnrampCommand::Submit {
                    config,
                    dnis,
                    ani,
                    tsi,
                    g3_resolution,
                    pages,
                },
        } => {
            let cfg = load_config(&config)?;
            let mut bytes = Vec::new();
            for p in &pages {
                let b = std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                let raw_g3 = p.extension().is_some_and(|x| x.eq_ignore_ascii_case("g3"));
                bytes.push(if raw_g3 {
                    raw_g3_to_tiff(p, &b, g3_resolution.as_deref())?
                } else {
                    b
                });
            }
            let spool = Spool::open(&cfg.spool)?;
            let journal = journal::Journal::open(&cfg.journal)?;
            let fax = ReceivedFax {
                dnis,
                ani,
                tsi,
                pages: bytes,
            };
            let job =
                match crate::onramp::submit(&cfg, &spool, &|ev: Event| journal.append(&ev), &fax) {
                    Ok(job) => job,
                    Err(crate::onramp::OnrampError::Page { index, source }) => {
                        let name = pages
                            .get(index - 1)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        anyhow::bail!("{name}: {source}");
                    }
                    Err(e) => return Err(e.into()),
                };
            out!("{job}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs {
            command: Some(JobsCommand::Show { id, json }),
            config,
            ..
        } => {
            let cfg = load_config(&config)?;
            show_job(&read_journal(&cfg)?, &id, json)
        }
        Command::Jobs {
            command: None,
            config,
            json,
            state,
            since,
            peer,
        } => {
            let cfg = load_config(&config)?;
            let events = read_journal(&cfg)?;
            if let Some(s) = &state {
                if !jobs::STATES.contains(&s.as_str()) {
                    anyhow::bail!(
                        "unknown state {s:?}; states are: {}",
                        jobs::STATES.join(", ")
                    );
                }
            }
            let cutoff = match since {
                Some(s) => Some(
                    Utc::now()
                        .checked_sub_signed(parse_duration(&s)?)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                ),
                None => None,
            };
            let rows: Vec<JobRow> = jobs::table(&events)
                .into_iter()
                .filter(|r| state.as_ref().is_none_or(|s| &r.state == s))
                .filter(|r| peer.as_ref().is_none_or(|p| r.peer.as_ref() == Some(p)))
                .filter(|r| cutoff.is_none_or(|c| r.last_time >= c))
                .collect();
            if json {
                for r in &rows {
                    out!("{}", serde_json::to_string(r)?);
                }
            } else {
                out!("{}", format_table(&rows).trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Receipts {
            command: ReceiptsCommand::Parse { json, files },
        } => parse_reports(&files, json),
        Command::Tiff {
            command: TiffCommand::Check { files },
        } => tiff_check(&files),
        Command::Tiff {
            command:
                TiffCommand::Convert {
                    inputs,
                    output,
                    encoding,
                    resolution,
                    dithering,
                },
        } => tiff_convert(&inputs, &output, &encoding, &resolution, &dithering),
        Command::Receipts {
            command: ReceiptsCommand::Ingest { config, paths },
        } => ingest_reports(load_config(&config)?, &paths),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok(c) => {
                out!(
                    "{}: valid ({} onramp and {} offramp dial peers, {} fax backends)",
                    file.display(),
                    c.onramp_peers.len(),
                    c.offramp_peers.len(),
                    c.backends.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// The journal's events; damaged lines are reported on stderr and skipped. A journal that
/// does not exist (a gateway that has not run yet, or the wrong `--config`) is no error, but
/// a note on stderr names the path looked at.
fn read_journal(cfg: &Config) -> anyhow::Result<Vec<Event>> {
    if std::fs::metadata(&cfg.journal).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        eprintln!(
            "t37gw: note: journal {} does not exist (no jobs yet, or another --config?)",
            cfg.journal.display()
        );
    }
    let (events, bad) = journal::read_events_checked(&cfg.journal)
        .map_err(|e| anyhow::anyhow!("journal {}: {e}", cfg.journal.display()))?;
    if let Some(first) = bad.first() {
        eprintln!(
            "t37gw: warning: {}: {} damaged line(s) skipped (first at line {first})",
            cfg.journal.display(),
            bad.len()
        );
    }
    Ok(events)
}

/// A raw G3 page file (no header: mgetty's `.g3`) as a TIFF-F the onramp can read. Its line
/// width is the fax standard 1728 px; its vertical resolution comes from `resolution`, or from
/// mgetty's file name (`ff…` fine, `fn…` normal), else fine.
fn raw_g3_to_tiff(path: &Path, bytes: &[u8], resolution: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let y_dpi = match resolution {
        Some("standard") => 98,
        Some("fine") => 196,
        Some(other) => anyhow::bail!("--g3-resolution {other:?}: expected standard or fine"),
        None if name.starts_with("fn") => 98,
        None => 196,
    };
    let limits = crate::tiff_f::Limits::default();
    let pages = crate::tiff_f::read_raw_g3(bytes, crate::tiff_f::FAX_WIDTH, y_dpi, &limits)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let opts = crate::tiff_f::WriteOptions {
        resolution: crate::tiff_f::Resolution::Passthrough,
        ..Default::default()
    };
    Ok(crate::tiff_f::write_tiff_f(&pages, &opts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .bytes)
}

/// `tiff check`: exit 1 unless every file meets profile S or F.
fn tiff_check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for f in files {
        let result = std::fs::read(f)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|b| {
                crate::tiff_f::check(&b, &crate::tiff_f::Limits::default())
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(c) => {
                ok &= c.profile().is_some();
                out!("{}:", f.display());
                for line in c.to_string().lines() {
                    out!("  {line}");
                }
            }
            Err(e) => {
                ok = false;
                out!("{}: {e}", f.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `tiff convert`, with a page counter on a terminal.
fn tiff_convert(
    inputs: &[PathBuf],
    output: &Path,
    encoding: &str,
    resolution: &str,
    dithering: &str,
) -> anyhow::Result<ExitCode> {
    use crate::tiff_f::{Bilevel, Encoding, Resolution};
    use std::io::IsTerminal;
    let encoding = match encoding {
        "mh" => Encoding::Mh,
        "mr" => Encoding::Mr,
        "mmr" => Encoding::Mmr,
        "passthrough" => Encoding::Passthrough,
        other => anyhow::bail!("--encoding {other:?}: expected mh, mr, mmr or passthrough"),
    };
    let resolution = match resolution {
        "standard" => Resolution::Standard,
        "fine" => Resolution::Fine,
        "superfine" => Resolution::Superfine,
        "passthrough" => Resolution::Passthrough,
        other => anyhow::bail!(
            "--resolution {other:?}: expected standard, fine, superfine or passthrough"
        ),
    };
    let bilevel = match dithering {
        "floyd-steinberg" => Bilevel::FloydSteinberg,
        "threshold" => Bilevel::Threshold(128),
        other => anyhow::bail!("--dithering {other:?}: expected floyd-steinberg or threshold"),
    };
    let mut bytes = Vec::new();
    for p in inputs {
        bytes.push(std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
    }
    let opts = crate::tiff_f::WriteOptions {
        encoding,
        resolution,
        bilevel,
        ..Default::default()
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {pos} pages converted")
        {
            b.set_style(style);
        }
        b.set_message("pages converted");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let tiff = crate::tiff_f::convert_inputs_with_progress(
        &slices,
        &opts,
        &crate::tiff_f::Limits::default(),
        &|n| bar.set_position(n as u64),
    );
    bar.finish_and_clear();
    let tiff = tiff.map_err(|e| match e.input.and_then(|i| inputs.get(i)) {
        Some(p) => anyhow::anyhow!("{}: {}", p.display(), e.error),
        None => anyhow::anyhow!("{}", e.error),
    })?;
    std::fs::write(output, &tiff.bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    out!(
        "{}: {} pages, {} bytes",
        output.display(),
        tiff.pages,
        tiff.bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `receipts ingest`: every message of every path through the receipt tracker, with a
/// progress bar on a terminal; exit 1 when a path cannot be read.
fn ingest_reports(cfg: Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use crate::offramp::IngestOutcome;
    use std::io::IsTerminal;
    let shared = Shared::open(cfg)?;
    let mut items = Vec::new();
    let mut failed = false;
    // A plain directory (no cur/ or new/: not a Maildir) is taken as a folder of messages.
    let mut expanded = Vec::new();
    for p in paths {
        let maildir = p.join("cur").is_dir() || p.join("new").is_dir();
        match std::fs::read_dir(p) {
            Ok(entries) if !maildir => {
                let mut files: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| {
                        // Messages only: .eml, .msg, .txt or no extension (not README.md, *.json).
                        f.is_file()
                            && f.extension()
                                .is_none_or(|x| matches!(x.to_str(), Some("eml" | "msg" | "txt")))
                    })
                    .collect();
                files.sort();
                expanded.extend(files);
            }
            _ => expanded.push(p.clone()),
        }
    }
    for p in &expanded {
        match crate::receipts::mailbox_items(p) {
            Ok(it) => items.push(it),
            Err(e) => {
                eprintln!("t37gw: {e}");
                failed = true;
            }
        }
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message("ingesting reports");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut correlated, mut orphan, mut not_report, mut unparseable, mut duplicate) =
        (0, 0, 0, 0, 0);
    for item in items.into_iter().flatten() {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                eprintln!("t37gw: {e}");
                failed = true;
                continue;
            }
        };
        let id = crate::ids::new_job_id("RPT");
        shared.record(Event::new(&id, "report_ingested").with("source", item.source.clone()))?;
        match crate::offramp::ingest_report(&shared, &id, &item.bytes) {
            IngestOutcome::Correlated(_) => correlated += 1,
            IngestOutcome::Orphan => orphan += 1,
            IngestOutcome::NotAReport => not_report += 1,
            IngestOutcome::Unparseable => unparseable += 1,
            IngestOutcome::Duplicate => duplicate += 1,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out!(
        "{} messages: {correlated} correlated, {orphan} orphan, {not_report} not a report, {unparseable} unparseable, {duplicate} already seen",
        correlated + orphan + not_report + unparseable + duplicate
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `receipts parse`: exit 1 when a file cannot be read or is not a readable message.
fn parse_reports(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for f in files {
        let mut report = match std::fs::read(f) {
            Ok(bytes) => crate::receipts::parse(&bytes),
            Err(e) => {
                let mut r =
                    crate::receipts::Report::empty(crate::receipts::ReportKind::Unparseable);
                r.error = Some(format!("cannot read: {e}"));
                r
            }
        };
        report.file = Some(f.display().to_string());
        ok &= report.kind != crate::receipts::ReportKind::Unparseable;
        if json {
            out!("{}", serde_json::to_string(&report)?);
        } else {
            let recipients: Vec<String> = report
                .recipients
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {}",
                        r.original_recipient
                            .as_deref()
                            .or(r.final_recipient.as_deref())
                            .unwrap_or("-"),
                        r.action.as_deref().unwrap_or("-"),
                        r.status.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            let kind = serde_json::to_value(report.kind)?;
            if let Some(e) = &report.error {
                out!("{}: {} ({e})", f.display(), kind.as_str().unwrap_or("-"));
                continue;
            }
            out!(
                "{}: {} envid={} message-id={} {}",
                f.display(),
                kind.as_str().unwrap_or("-"),
                report.envid.as_deref().unwrap_or("-"),
                report
                    .original_message_id
                    .as_deref()
                    .or(report.returned_message_id.as_deref())
                    .unwrap_or("-"),
                recipients.join("; ")
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `30s`, `15m`, `1h`, `2d`, `1w`.
fn parse_duration(s: &str) -> anyhow::Result<chrono::Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n: &i64| *n <= 1_000_000_000)
        .ok_or_else(|| anyhow::anyhow!("bad duration {s:?}: expected e.g. 30m, 1h, 2d"))?;
    let secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => anyhow::bail!("bad duration unit in {s:?}: use s, m, h, d or w"),
    };
    Ok(chrono::Duration::seconds(n.saturating_mul(secs)))
}

/// The job table as text: one row per job.
pub fn format_table(rows: &[JobRow]) -> String {
    let mut lines = vec![[
        "JOB".to_string(),
        "DIR".into(),
        "PEER".into(),
        "PAGES".into(),
        "RECIPIENT".into(),
        "STATE".into(),
        "LAST EVENT".into(),
        "TIME (UTC)".into(),
    ]];
    for r in rows {
        let state = match &r.disposition {
            Some(d) => format!("{} ({d})", r.state),
            None => r.state.clone(),
        };
        lines.push([
            r.id.clone(),
            r.direction.clone(),
            r.peer.clone().unwrap_or_else(|| "-".into()),
            r.pages.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.recipient.clone().unwrap_or_else(|| "-".into()),
            state,
            r.last_event.clone(),
            r.last_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `jobs show`: the job's summary, each recipient's state, then the timeline; reports say
/// where they came from (the SMTP client, or the file `receipts ingest` read).
fn show_job(events: &[Event], id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mine: Vec<&Event> = events.iter().filter(|e| e.job == id).collect();
    if mine.is_empty() {
        eprintln!("t37gw: no job {id} in the journal");
        return Ok(ExitCode::FAILURE);
    }
    if json {
        for ev in mine {
            out!("{}", ev.to_line());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let source_of = |report: &str| {
        events
            .iter()
            .find(|e| e.job == report)
            .and_then(|e| match e.event.as_str() {
                "report_ingested" => e.str("source").map(|s| format!("file {s}")),
                "offramp_received" => e.str("client").map(|c| format!("SMTP from {c}")),
                _ => None,
            })
    };
    if let Some(row) = jobs::table(events).into_iter().find(|r| r.id == id) {
        out!(
            "{}  {}  peer {}  pages {}  state {}{}",
            row.id,
            row.direction,
            row.peer.as_deref().unwrap_or("-"),
            row.pages
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            row.state,
            row.disposition
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
        for (rcpt, st) in &row.recipients {
            out!(
                "  recipient {}: {}{}{}",
                if rcpt.is_empty() { "-" } else { rcpt },
                st.state,
                st.status
                    .as_ref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default(),
                st.disposition
                    .as_ref()
                    .map(|d| format!(", {d}"))
                    .unwrap_or_default()
            );
        }
        out!("");
    }
    for ev in mine {
        let mut details: Vec<String> = ev
            .details
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect();
        if let Some(src) = ev.str("report").and_then(source_of) {
            details.push(format!("source={src}"));
        }
        out!(
            "{}  {:<18} {}",
            fmt_time(ev.time),
            ev.event,
            details.join("  ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let gw = Gateway::start(cfg, None).await?;
    eprintln!(
        "t37gw: listening on {} (SIGINT/SIGTERM to stop)",
        gw.local_addr
    );
    wait_for_signal().await;
    gw.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Used by the demo: the shared state of a running gateway.
pub fn job_rows(shared: &Shared) -> Vec<JobRow> {
    jobs::table(&journal::read_events(&shared.config.journal).unwrap_or_default())
}
