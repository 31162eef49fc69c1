//! Wires the parts together for `serve` and `demo`: the SMTP listener (offramp and
//! receipts), the offramp worker, the outgoing mail queue, and the incoming-fax watcher.
//! Each long-running task watches one shutdown channel.

use crate::config::Config;
use crate::jobs::JobIndex;
use crate::journal::{Event, Journal};
use crate::mailer::{self, SendOutcome};
use crate::offramp::{self, OfframpBackend};
use crate::onramp::{self, ReceivedFax};
use crate::smtp::{self, ListenerConfig};
use crate::spool::{OutKind, Spool};
use chrono::Utc;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// State shared by every task of a running gateway.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub spool: Spool,
    journal: Journal,
    index: Mutex<JobIndex>,
    /// Journal bytes already folded into the index (other processes, such as
    /// `t37gw onramp submit`, append to the same journal).
    journal_offset: Mutex<u64>,
    /// Offramp messages waiting for a fax retry: id → (first try, attempts, next try).
    retries:
        Mutex<std::collections::HashMap<String, (std::time::Instant, u32, std::time::Instant)>>,
    /// Wakes the offramp worker (a message was spooled).
    pub offramp_wake: Notify,
    /// Wakes the outgoing queue (a message was queued).
    pub outq_wake: Notify,
    /// SMTP sessions open on the gateway's listeners (the offramp worker lets them go first,
    /// [`INGEST_FIRST_MAX_WAIT`]).
    pub smtp_sessions: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Open spool and journal of `config` and replay the journal into the index.
    pub fn open(config: Config) -> std::io::Result<Shared> {
        let with_path = |p: &std::path::Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{p}: {e}"))
        };
        let spool = Spool::open(&config.spool).map_err(with_path(&config.spool))?;
        let journal = Journal::open(&config.journal).map_err(with_path(&config.journal))?;
        let shared = Shared {
            index: Mutex::new(JobIndex::default()),
            journal_offset: Mutex::new(0),
            retries: Mutex::new(Default::default()),
            smtp_sessions: Default::default(),
            config,
            spool,
            journal,
            offramp_wake: Notify::new(),
            outq_wake: Notify::new(),
        };
        shared.sync_index()?;
        Ok(shared)
    }

    /// Fold journal lines appended since the last call (by any process) into the index.
    pub fn sync_index(&self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut offset = self
            .journal_offset
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut f = std::fs::File::open(&self.config.journal)?;
        f.seek(SeekFrom::Start(*offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        // Only complete lines: a line being written by another process is read next time.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let mut idx = self.index();
        for line in buf[..end].split(|&b| b == b'\n') {
            if let Some(ev) = std::str::from_utf8(line).ok().and_then(Event::from_line) {
                idx.record(&ev);
            }
        }
        *offset += end as u64 + 1;
        Ok(())
    }

    /// Append an event (fsynced) and update the index.
    pub fn record(&self, event: Event) -> std::io::Result<()> {
        self.journal.append(&event)?;
        self.index().record(&event);
        let details = serde_json::Value::Object(event.details.clone());
        if event.event.ends_with("_failed") || event.event.ends_with("_deferred") {
            tracing::warn!(job = %event.job, event = %event.event, %details, "journal");
        } else {
            tracing::info!(job = %event.job, event = %event.event, %details, "journal");
        }
        Ok(())
    }

    /// Record, logging instead of failing (for paths where the spool state already holds the truth).
    pub fn record_or_log(&self, event: Event) {
        if let Err(e) = self.record(event) {
            tracing::error!("journal append failed: {e}");
        }
    }

    /// When the offramp first tried `id` (now, for a message not yet retried).
    pub fn retry_started(&self, id: &str) -> std::time::Instant {
        let r = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        r.get(id)
            .map(|e| e.0)
            .unwrap_or_else(std::time::Instant::now)
    }

    /// Schedule the next fax attempt for `id`: 30 s, doubling, at most 10 minutes apart.
    pub fn retry_later(&self, id: &str) {
        let mut r = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let e = r.entry(id.to_string()).or_insert((now, 0, now));
        e.1 += 1;
        let delay = Duration::from_secs(30)
            .saturating_mul(1 << e.1.min(5))
            .min(Duration::from_secs(600));
        e.2 = now + delay / 2;
    }

    /// Forget retry state of a finished message.
    pub fn retry_done(&self, id: &str) {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// True when `id` may be tried now.
    pub fn retry_due(&self, id: &str) -> bool {
        let r = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        r.get(id).is_none_or(|e| e.2 <= std::time::Instant::now())
    }

    /// Lock the index.
    pub fn index(&self) -> std::sync::MutexGuard<'_, JobIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submit a received fax as an onramp job (see [`onramp::submit`]) and wake the queue.
    pub fn submit_fax(&self, fax: &ReceivedFax) -> Result<String, onramp::OnrampError> {
        let job = onramp::submit(&self.config, &self.spool, &|ev| self.record(ev), fax)?;
        self.outq_wake.notify_one();
        Ok(job)
    }
}

/// A running gateway.
pub struct Gateway {
    pub shared: Arc<Shared>,
    /// Where the SMTP listener is bound.
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Start every task. `listener`: an already bound socket (tests and the demo bind port
    /// 0), or `None` to bind `mta-receive.listen`.
    pub async fn start(config: Config, listener: Option<TcpListener>) -> std::io::Result<Gateway> {
        let listener = match listener {
            Some(l) => l,
            None => {
                let addr = config.mta_receive.listen;
                TcpListener::bind(addr).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?
            }
        };
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::open(config)?);
        shared.spool.clean_unfinished();
        // The watched directory for received faxes, so that a new installation shows where
        // they go; a failure only means no faxes are picked up from there.
        let incoming = &shared.config.incoming;
        if let Err(e) = std::fs::create_dir_all(incoming) {
            tracing::warn!("incoming directory {}: {e}", incoming.display());
        }
        // A spool-directory backend's outbox that cannot be made is said now, not only when
        // the first fax for it is deferred.
        for b in &shared.config.backends {
            if let crate::config::BackendKind::SpoolDirectory { path, .. } = &b.kind {
                if let Err(e) = std::fs::create_dir_all(path) {
                    tracing::error!(
                        backend = %b.name,
                        "outbox directory {} cannot be created: {e}; faxes for it wait until it can",
                        path.display()
                    );
                }
            }
        }
        let found = {
            let index = shared.index();
            shared
                .spool
                .recover_offramp(&|id| index.has(id, "offramp_completed"))
                .map_err(|e| std::io::Error::new(e.kind(), format!("offramp spool: {e}")))?
        };
        if found > 0 {
            tracing::info!(
                messages = found,
                "offramp messages in the spool from before"
            );
        }
        let (tx, rx) = watch::channel(false);
        let c = &shared.config;
        let lcfg = Arc::new(ListenerConfig {
            hostname: c.hostname.clone(),
            max_message_size: usize::try_from(c.mta_receive.maximum_message_size)
                .unwrap_or(usize::MAX),
            max_recipients: c.mta_receive.maximum_recipients,
            command_timeout: c.mta_receive.command_timeout,
            data_timeout: c.mta_receive.data_timeout,
            max_sessions: c.mta_receive.maximum_sessions,
            max_sessions_per_client: c.mta_receive.maximum_sessions_per_client,
            max_connections_per_client: c.mta_receive.maximum_connections_per_minute,
            client_rate_window: Duration::from_secs(60),
            data_bare_line_ending: if c.mta_receive.accept_bare_line_endings {
                smtp::BareLineEnding::Accept
            } else {
                smtp::BareLineEnding::Reject
            },
            tls: match (&c.mta_receive.tls_certificate, &c.mta_receive.tls_key) {
                (Some(cert), Some(key)) => Some(smtp::TlsConfig {
                    cert: smtp::PemSource::Path(cert.clone()),
                    key: smtp::PemSource::Path(key.clone()),
                }),
                _ => None,
            },
            require_tls: c.mta_receive.require_tls,
            auth: !c.mta_receive.auth_users.is_empty(),
            require_auth: c.mta_receive.require_auth,
            ..ListenerConfig::default()
        });
        let implicit_tls = match c.mta_receive.implicit_tls_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?),
            None => None,
        };
        let backend = Arc::new(OfframpBackend::new(shared.clone()));
        let mut tasks = Vec::new();
        let (srx, scfg, sbackend) = (rx.clone(), lcfg.clone(), backend.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = smtp::serve(listener, scfg, sbackend, srx).await {
                tracing::error!("SMTP listener stopped: {e}");
            }
        }));
        if let Some(tls_listener) = implicit_tls {
            let cfg = Arc::new(ListenerConfig {
                require_auth: c.mta_receive.implicit_tls_require_auth,
                ..(*lcfg).clone()
            });
            let (backend, srx) = (backend.clone(), rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = smtp::serve_tls(tls_listener, cfg, backend, srx).await {
                    tracing::error!("implicit-TLS listener stopped: {e}");
                }
            }));
        }
        tasks.push(spawn_offramp_worker(shared.clone(), rx.clone())?);
        tasks.push(tokio::spawn(outq_loop(shared.clone(), rx.clone())));
        tasks.push(tokio::spawn(incoming_loop(shared.clone(), rx)));
        tracing::info!(%local_addr, hostname = %shared.config.hostname, "gateway started");
        Ok(Gateway {
            shared,
            local_addr,
            shutdown: tx,
            tasks,
        })
    }

    /// Stop: the listener sends `421 4.3.2` to open sessions; workers finish their current
    /// item. Everything accepted stays in the spool for the next start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        tracing::info!("gateway stopped");
    }
}

async fn tick(shutdown: &mut watch::Receiver<bool>, wake: &Notify, period: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => {}
        _ = wake.notified() => {}
        _ = tokio::time::sleep(period) => {}
    }
    !*shutdown.borrow()
}

/// Nice value of the offramp worker's thread (and of the threads it starts to convert pages):
/// accepting mail comes first, so the listener's replies do not wait on TIFF conversion.
/// The fax line is the slow part of the offramp in any case.
pub const OFFRAMP_WORKER_NICE: i32 = 10;

/// Start the offramp worker ([`offramp_loop`]) on its own thread with a single-threaded
/// runtime, at [`OFFRAMP_WORKER_NICE`]: decoding and re-encoding TIFF is CPU work that
/// must not hold the listener's runtime threads. The returned task ends when the worker does.
///
/// Errors: the thread or its runtime cannot be created.
fn spawn_offramp_worker(
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("offramp-worker".into())
        .spawn(move || {
            lower_thread_priority(OFFRAMP_WORKER_NICE);
            runtime.block_on(offramp_loop(shared, shutdown));
            let _ = done_tx.send(());
        })?;
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}

/// Raise the calling thread's nice value by `nice` (Linux: `setpriority(2)` on the thread id
/// sets one thread's priority; threads it starts inherit it). Best effort: failure is logged.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, now.saturating_add(nice))
        };
        if rc != 0 {
            tracing::debug!(
                "cannot lower the offramp worker's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

async fn offramp_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match shared.spool.list_offramp() {
            Ok(ids) => {
                for id in ids {
                    if *shutdown.borrow() {
                        return;
                    }
                    if shared.retry_due(&id) {
                        if !ingest_first(&shared, &mut shutdown).await {
                            return;
                        }
                        offramp::process(&shared, &id).await;
                    }
                }
            }
            Err(e) => tracing::error!("offramp spool unreadable: {e}"),
        }
        if !tick(&mut shutdown, &shared.offramp_wake, Duration::from_secs(1)).await {
            return;
        }
    }
}

/// Longest the offramp worker waits for messages being received before it converts the next
/// job anyway (seconds): under a steady stream of mail it still starts at least one job per
/// second, which is more than a fax line sends.
pub const INGEST_FIRST_MAX_WAIT: Duration = Duration::from_secs(1);

/// Before each offramp job: wait while SMTP sessions are open ([`Shared::smtp_sessions`]),
/// polling every 10 ms, at most [`INGEST_FIRST_MAX_WAIT`]. Accepting mail comes first: a
/// client waits for its `250` while the CPU and disk are busy converting TIFF and fsyncing the
/// journal, and a fax line sends one page in several seconds anyway. Counting open sessions
/// rather than messages in DATA: sessions that all wait for the same group commit leave no
/// message in DATA for a moment, and a job started then competes with their next messages.
/// `false` when the gateway is stopping.
async fn ingest_first(shared: &Shared, shutdown: &mut watch::Receiver<bool>) -> bool {
    let started = std::time::Instant::now();
    while shared
        .smtp_sessions
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
        && started.elapsed() < INGEST_FIRST_MAX_WAIT
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = shutdown.changed() => return !*shutdown.borrow(),
        }
    }
    !*shutdown.borrow()
}

async fn outq_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = shared.sync_index() {
            tracing::error!("journal unreadable: {e}");
        }
        match shared.spool.list_out() {
            Ok(ids) => {
                for id in ids {
                    if *shutdown.borrow() {
                        return;
                    }
                    send_one(&shared, &id).await;
                }
            }
            Err(e) => tracing::error!("outgoing queue unreadable: {e}"),
        }
        if !tick(&mut shutdown, &shared.outq_wake, Duration::from_millis(500)).await {
            return;
        }
    }
}

/// One delivery attempt of one outgoing item. Recipients that already got `250` (journal)
/// are never sent again, even after a crash between the reply and the spool update.
async fn send_one(shared: &Shared, id: &str) {
    let (mut item, message) = match shared.spool.load_out(id) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(id, "outgoing item unreadable: {e}");
            return;
        }
    };
    if item.next_attempt > Utc::now() {
        return;
    }
    {
        let idx = shared.index();
        item.rcpts.retain(|r| !idx.was_sent(&item.job, &r.address));
    }
    if item.rcpts.is_empty() {
        let _ = shared.spool.remove_out(id);
        return;
    }
    let cfg = &shared.config;
    let (sent_ev, failed_ev, deferred_ev) = match item.kind {
        OutKind::Onramp => ("mail_sent", "mail_failed", "mail_deferred"),
        OutKind::Dsn => ("dsn_sent", "dsn_failed", "dsn_deferred"),
    };
    let outcome = mailer::send(&cfg.mta_send, &cfg.hostname, &item, &message).await;
    let mut retry_reason = None;
    match outcome {
        SendOutcome::Sent {
            accepted,
            permanent,
            transient,
            reply,
        } => {
            for r in accepted {
                // `mail_sent` carries the recipient the index uses to never send again.
                shared.record_or_log(
                    Event::new(&item.job, sent_ev)
                        .with("recipient", r)
                        .with("reply", reply.clone())
                        .with("message_id", item.message_id.clone()),
                );
            }
            for (r, why) in &permanent {
                shared.record_or_log(
                    Event::new(&item.job, failed_ev)
                        .with("recipient", r.clone())
                        .with("reason", why.clone()),
                );
            }
            let keep: Vec<String> = transient.iter().map(|(r, _)| r.clone()).collect();
            item.rcpts.retain(|r| keep.contains(&r.address));
            if let Some((_, why)) = transient.first() {
                retry_reason = Some(why.clone());
            }
        }
        SendOutcome::Permanent(why) => {
            for r in &item.rcpts {
                shared.record_or_log(
                    Event::new(&item.job, failed_ev)
                        .with("recipient", r.address.clone())
                        .with("reason", why.clone()),
                );
            }
            item.rcpts.clear();
        }
        SendOutcome::Transient(why) => retry_reason = Some(why),
    }
    if item.rcpts.is_empty() {
        if let Err(e) = shared.spool.remove_out(id) {
            tracing::error!(id, "cannot remove sent item: {e}");
        }
        return;
    }
    let why = retry_reason.unwrap_or_else(|| "deferred".into());
    item.attempts += 1;
    let age = Utc::now() - item.created;
    if age.to_std().unwrap_or_default() > cfg.mta_send.give_up_after {
        for r in &item.rcpts {
            shared.record_or_log(
                Event::new(&item.job, failed_ev)
                    .with("recipient", r.address.clone())
                    .with(
                        "reason",
                        format!("gave up after {} attempts: {why}", item.attempts),
                    ),
            );
        }
        let _ = shared.spool.remove_out(id);
        return;
    }
    let delay = cfg
        .mta_send
        .retry_initial
        .saturating_mul(2u32.saturating_pow(item.attempts.saturating_sub(1).min(16)))
        .min(cfg.mta_send.retry_maximum);
    item.next_attempt = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    if let Err(e) = shared.spool.update_out(&item) {
        tracing::error!(id, "cannot update queue item: {e}");
    }
    shared.record_or_log(
        Event::new(&item.job, deferred_ev)
            .with("reason", why)
            .with("attempts", item.attempts)
            .with("next_attempt", item.next_attempt.to_rfc3339()),
    );
}

/// Journal `report_overdue` for sent onramp mail that got no DSN within `report-deadline`.
fn mark_overdue(shared: &Shared) {
    let deadline = shared.config.mta_send.report_deadline;
    if deadline.is_zero() {
        return;
    }
    let cutoff = Utc::now() - chrono::Duration::from_std(deadline).unwrap_or_default();
    let overdue = shared.index().overdue(cutoff);
    for (job, recipient) in overdue {
        shared.record_or_log(
            Event::new(&job, "report_overdue")
                .with("recipient", recipient)
                .with("deadline_seconds", deadline.as_secs()),
        );
    }
}

async fn incoming_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let never = Notify::new();
    loop {
        crate::onramp::scan_incoming(&shared);
        mark_overdue(&shared);
        if !tick(&mut shutdown, &never, Duration::from_secs(1)).await {
            return;
        }
    }
}
