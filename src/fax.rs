//! Fax-output backends: where the offramp hands a fax for transmission.
//!
//! - Spool directory (outbox): `JOBID.tif` (TIFF-F) plus `JOBID.json` (the job, written
//!   last as the commit marker), both written atomically. A fax sender reading the outbox
//!   writes `JOBID.result` back: `{"status": "sent"|"failed", "reason": "…"}`.
//! - External command (`sendfax`-style): exit status 0 = sent, 75 (`EX_TEMPFAIL`) = retry,
//!   anything else = failed.

use crate::config::{Backend, BackendKind};
use crate::spool::write_durable;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One fax to transmit.
#[derive(Debug, Clone, Serialize)]
pub struct FaxJob {
    /// Fax id (file name stem in the outbox).
    pub job: String,
    /// Offramp job it belongs to.
    pub offramp_job: String,
    /// Number to dial, RFC 3192 form with leading `+`.
    pub number: String,
    /// T.33 sub-address (digits) the sender gave with `/T33S=` (RFC 3192 §3, ITU-T T.33),
    /// to be sent after the call is connected (the SUB frame of T.30); `None` without one.
    pub subaddress: Option<String>,
    /// Pages in the TIFF-F file.
    pub pages: usize,
    /// Envelope sender of the mail (DSN recipient), empty for `<>`.
    pub sender: String,
    /// Message-ID of the mail.
    pub message_id: Option<String>,
    /// Dial peer that chose the backend.
    pub peer: String,
}

/// What a backend reports (INTERFACE.md "Delivery semantics" maps it to a DSN Action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaxOutcome {
    /// The fax was confirmed sent → DSN `delivered`.
    Delivered(String),
    /// Handed to a system that reports nothing → DSN `relayed`.
    Relayed(String),
    /// Transient failure, try again later → DSN `delayed`.
    Retry(String),
    /// Given up or refused → DSN `failed` with the RFC 3463 status.
    Failed { status: String, reason: String },
}

/// A result file written back by a fax sender.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaxResult {
    /// `sent` or `failed`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Hand one fax to `backend`. A `command` backend's file is written in `work_dir` (the spool's
/// [`crate::spool::Spool::fax_work_dir`]) and removed when the command ends.
pub async fn send(backend: &Backend, job: &FaxJob, tiff: &[u8], work_dir: &Path) -> FaxOutcome {
    match &backend.kind {
        BackendKind::SpoolDirectory {
            path,
            simulate_line,
            result_wait,
        } => spool_directory(path, *simulate_line, *result_wait, job, tiff).await,
        BackendKind::Command { argv } => command(argv, job, tiff, work_dir).await,
    }
}

async fn spool_directory(
    dir: &Path,
    simulate: bool,
    wait: Duration,
    job: &FaxJob,
    tiff: &[u8],
) -> FaxOutcome {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_durable(dir, &format!("{}.tif", job.job), tiff)?;
        write_durable(
            dir,
            &format!("{}.json", job.job),
            &serde_json::to_vec_pretty(job)?,
        )?;
        if simulate {
            let result = FaxResult {
                status: "sent".into(),
                reason: Some("simulated fax line".into()),
            };
            write_durable(
                dir,
                &format!("{}.result", job.job),
                &serde_json::to_vec(&result)?,
            )?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        return FaxOutcome::Retry(format!("outbox {} write failed: {e}", dir.display()));
    }
    let result_path = dir.join(format!("{}.result", job.job));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(bytes) = std::fs::read(&result_path) {
            return match serde_json::from_slice::<FaxResult>(&bytes) {
                Ok(r) if r.status == "sent" => FaxOutcome::Delivered(format!(
                    "fax sent to {}, {} pages",
                    job.number, job.pages
                )),
                Ok(r) => FaxOutcome::Failed {
                    status: "5.4.0".into(),
                    reason: r
                        .reason
                        .unwrap_or_else(|| format!("fax sender reported {}", r.status)),
                },
                Err(e) => FaxOutcome::Relayed(format!("unreadable result file: {e}")),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return FaxOutcome::Relayed(format!("queued in outbox for {}", job.number));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Have the fax command stopped (SIGTERM) when the gateway dies, also by SIGKILL (Linux
/// `prctl(PR_SET_PDEATHSIG)`; the signal comes when the thread that started the command ends,
/// here the offramp worker's own thread). A command left running by a dead gateway would
/// send a fax the restarted gateway knows nothing of and sends again.
fn stop_with_gateway(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the closure runs in the child between fork and exec and only makes two
        // async-signal-safe system calls (prctl, getppid); it allocates nothing on success.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The gateway may have died before the prctl: then the child belongs to init.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the gateway is gone"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

async fn command(argv: &[String], job: &FaxJob, tiff: &[u8], dir: &Path) -> FaxOutcome {
    // Absolute, so that a command that changes directory still finds it.
    let file = dir.join(format!("{}.tif", job.job));
    let file = std::path::absolute(&file).unwrap_or(file);
    if let Err(e) = std::fs::write(&file, tiff) {
        return FaxOutcome::Retry(format!("cannot write fax file: {e}"));
    }
    let subst = |a: &String| {
        a.replace("$number$", &job.number)
            .replace("$subaddress$", job.subaddress.as_deref().unwrap_or(""))
            .replace("$file$", &file.display().to_string())
            .replace("$job$", &job.job)
    };
    let args: Vec<String> = argv.iter().map(subst).collect();
    let mut cmd = tokio::process::Command::new(&args[0]);
    cmd.args(&args[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    stop_with_gateway(&mut cmd);
    let out = tokio::time::timeout(Duration::from_secs(3600), cmd.output()).await;
    let _ = std::fs::remove_file(&file);
    match out {
        Err(_) => FaxOutcome::Retry("fax command timed out after 3600 s".into()),
        Ok(Err(e)) => FaxOutcome::Retry(format!("cannot run {}: {e}", args[0])),
        Ok(Ok(o)) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let tail: String = stderr
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            match o.status.code() {
                Some(0) => FaxOutcome::Delivered(format!(
                    "fax sent to {}, {} pages",
                    job.number, job.pages
                )),
                Some(75) => FaxOutcome::Retry(format!("fax command asked to retry: {tail}")),
                code => FaxOutcome::Failed {
                    status: "5.4.0".into(),
                    reason: format!("fax command exited {code:?}: {tail}"),
                },
            }
        }
    }
}
