//! The tokio side: accept loop with a session cap and per-client limits, per-connection I/O
//! with timeouts, STARTTLS and implicit TLS, pipelined reply batching (RFC 2920) and graceful
//! shutdown.

use super::limits::{ClientLimits, ClientPermit};
use super::proto::{ChunkReader, DataReader, LineEvent, LineReader};
use super::session::{Next, Session};
use super::sink::Body;
use super::{tls, Backend, ListenerConfig, Reply};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// Room made in the input buffer before each read: a read takes at least this many octets
/// when they are there (straight into the input buffer, no copy).
const READ_CHUNK: usize = 16 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait to get a refusal (`421 4.7.0`) out to a connection over a cap.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream a session runs on: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accept SMTP sessions on `listener` until `shutdown` turns true; then idle sessions get
/// `421 4.3.2`, a DATA in progress is finished, and the call returns when all have closed.
///
/// - Past `max_sessions` concurrent sessions, or past a client's
///   `max_sessions_per_client` / `max_connections_per_client` per `client_rate_window`, a new
///   connection gets `421 4.7.0` and is closed (RFC 5321 §3.8 allows 421 in place of the
///   greeting).
/// - Every read waits at most `command_timeout` (between commands) or `data_timeout`
///   (inside DATA and BDAT), every write at most `command_timeout`; a read timeout sends
///   `421 4.4.2` and closes (RFC 5321 §4.5.3.2). A session longer than `max_session_time`
///   gets `421 4.4.2` too.
/// - With [`ListenerConfig::tls`] set, STARTTLS is offered (RFC 3207); the handshake gets
///   `command_timeout`.
/// - After shutdown, sessions still open get up to `data_timeout + command_timeout` to end;
///   the rest are aborted.
/// - A dropped `shutdown` sender does not stop the listener; only `true` does.
///
/// Errors: `InvalidInput` when [`ListenerConfig::tls`] holds no usable certificate and key
/// (checked before accepting anything); none from sessions (they are logged); accept errors
/// are retried after a pause.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    run(listener, config, backend, shutdown, false).await
}

/// Like [`serve`], but every connection starts with a TLS handshake (implicit TLS, RFC 8314
/// §3.3, the "submissions" style on a second port) and STARTTLS is not offered.
///
/// Errors: `InvalidInput` when [`ListenerConfig::tls`] is `None` or unusable.
pub async fn serve_tls<B: Backend>(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    if config.tls.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "serve_tls needs ListenerConfig::tls",
        ));
    }
    run(listener, config, backend, shutdown, true).await
}

/// Calls [`Backend::session_opened`] when made and [`Backend::session_closed`] when dropped,
/// which happens also when the session's task is aborted at shutdown.
struct OpenSession<B: Backend>(Arc<B>);

impl<B: Backend> OpenSession<B> {
    fn new(backend: Arc<B>) -> Self {
        backend.session_opened();
        OpenSession(backend)
    }
}

impl<B: Backend> Drop for OpenSession<B> {
    fn drop(&mut self) {
        self.0.session_closed();
    }
}

/// Everything one session needs from the listener.
struct Ctx<B> {
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    acceptor: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
}

async fn run<B: Backend>(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
    implicit_tls: bool,
) -> io::Result<()> {
    let acceptor = match &config.tls {
        Some(tls_config) => Some(tls::acceptor(tls_config)?),
        None => None,
    };
    let clients = Arc::new(ClientLimits::new(
        config.max_sessions_per_client,
        config.max_connections_per_client,
        config.client_rate_window,
    ));
    let permits = Arc::new(Semaphore::new(config.max_sessions));
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = wait_for_shutdown(&mut stop) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "smtp accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Some(client) = clients.admit(peer.ip(), Instant::now()) else {
                    tracing::warn!(%peer, "smtp per-client limit reached, refusing");
                    let reply = Reply::client_limited(&config.hostname);
                    sessions.spawn(refuse(stream, reply, acceptor.clone().filter(|_| implicit_tls)));
                    continue;
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let ctx = Ctx {
                            config: config.clone(),
                            backend: backend.clone(),
                            acceptor: acceptor.clone(),
                            shutdown: shutdown.clone(),
                        };
                        let open = OpenSession::new(backend.clone());
                        sessions.spawn(async move {
                            run_session(stream, peer, ctx, implicit_tls, client).await;
                            drop(permit);
                            drop(open);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "smtp session limit reached, refusing");
                        drop(client);
                        let reply = Reply::too_many_sessions(&config.hostname);
                        sessions.spawn(refuse(stream, reply, acceptor.clone().filter(|_| implicit_tls)));
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    let grace = config.data_timeout.saturating_add(config.command_timeout);
    let drained = timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "smtp sessions still open after grace, aborting"
        );
        sessions.shutdown().await;
    }
    Ok(())
}

/// Resolves when the flag is true; never when the sender is gone without setting it.
async fn wait_for_shutdown(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Send `reply` and close; over implicit TLS the handshake comes first (a client that cannot
/// read a plain-text 421 on a TLS port would only see garbage).
async fn refuse(stream: TcpStream, reply: Reply, acceptor: Option<TlsAcceptor>) {
    let _ = timeout(REFUSAL_WRITE_TIMEOUT, async {
        let mut stream: Box<dyn Io> = match acceptor {
            Some(acceptor) => Box::new(acceptor.accept(stream).await?),
            None => Box::new(stream),
        };
        stream.write_all(&reply.to_wire()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Why a session's read loop stopped reading.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    /// `max_session_time` is over.
    SessionOver,
    Shutdown,
}

/// One connection: its stream, buffers and deadlines.
struct Conn {
    stream: Box<dyn Io>,
    input: Vec<u8>,
    output: Vec<u8>,
    write_timeout: Duration,
    /// End of `max_session_time`.
    deadline: Instant,
}

impl Conn {
    fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.output);
    }

    /// Send everything queued (RFC 2920 §3.2: before the server waits for input).
    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Read more input, waiting at most `limit` (and never past the session deadline); with
    /// `shutdown`, also stop when it turns true.
    async fn read(
        &mut self,
        limit: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> io::Result<ReadOutcome> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ReadOutcome::SessionOver);
        }
        let session_bound = left < limit;
        self.input.reserve(READ_CHUNK);
        let read = timeout(limit.min(left), self.stream.read_buf(&mut self.input));
        let result = match shutdown {
            Some(rx) => tokio::select! {
                r = read => r,
                _ = wait_for_shutdown(rx) => return Ok(ReadOutcome::Shutdown),
            },
            None => read.await,
        };
        match result {
            Err(_) if session_bound => Ok(ReadOutcome::SessionOver),
            Err(_) => Ok(ReadOutcome::TimedOut),
            Ok(Ok(0)) => Ok(ReadOutcome::Eof),
            Ok(Ok(_)) => Ok(ReadOutcome::Data),
            Ok(Err(error)) => Err(error),
        }
    }

    /// Replace the stream by TLS over it (RFC 3207 §4.2); buffered plain-text input is
    /// dropped, never executed.
    async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        if !self.input.is_empty() {
            tracing::debug!(
                octets = self.input.len(),
                "discarding input pipelined behind STARTTLS"
            );
            self.input.clear();
        }
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::empty()));
        let left = self.deadline.saturating_duration_since(Instant::now());
        match timeout(self.write_timeout.min(left), acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.stream = Box::new(tls);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

async fn run_session<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    mut ctx: Ctx<B>,
    implicit_tls: bool,
    _client: ClientPermit,
) {
    tracing::debug!(%peer, "smtp session start");
    let config = ctx.config.clone();
    let mut conn = Conn {
        stream: Box::new(stream),
        input: Vec::new(),
        output: Vec::new(),
        write_timeout: config.command_timeout,
        deadline: Instant::now() + config.max_session_time,
    };
    if implicit_tls {
        let Some(acceptor) = ctx.acceptor.clone() else {
            return;
        };
        if let Err(error) = conn.start_tls(&acceptor).await {
            tracing::debug!(%peer, %error, "implicit TLS handshake failed");
            return;
        }
    }
    let mut session = Session::new(config.clone(), peer.to_string(), implicit_tls);
    match drive(&mut conn, &mut session, &mut ctx).await {
        Ok(()) => tracing::debug!(%peer, "smtp session end"),
        Err(error) => tracing::debug!(%peer, %error, "smtp session ended by I/O error"),
    }
    let _ = timeout(conn.write_timeout, conn.stream.shutdown()).await;
}

/// The read-evaluate-reply loop of one session.
async fn drive<B: Backend>(
    conn: &mut Conn,
    session: &mut Session,
    ctx: &mut Ctx<B>,
) -> io::Result<()> {
    let config = ctx.config.clone();
    let backend = ctx.backend.as_ref();
    let mut lines = LineReader::default();
    conn.queue(&session.greeting());
    loop {
        lines.sasl_response = session.in_sasl();
        let output = match lines.next(&mut conn.input) {
            Some(LineEvent::Line(line)) => session.command(&line, backend),
            Some(LineEvent::TooLong) => session.line_too_long(),
            None => {
                conn.flush().await?;
                if *ctx.shutdown.borrow() {
                    return close_with(conn, &session.shutdown_reply()).await;
                }
                let outcome = conn
                    .read(config.command_timeout, Some(&mut ctx.shutdown))
                    .await?;
                match outcome {
                    ReadOutcome::Data => continue,
                    ReadOutcome::Eof => return Ok(()),
                    ReadOutcome::TimedOut => {
                        return close_with(conn, &session.timeout_reply()).await
                    }
                    ReadOutcome::SessionOver => {
                        return close_with(conn, &session.session_time_reply()).await
                    }
                    ReadOutcome::Shutdown => {
                        return close_with(conn, &session.shutdown_reply()).await
                    }
                }
            }
        };
        for reply in &output.replies {
            conn.queue(reply);
        }
        let reply = match output.next {
            Next::Command => continue,
            Next::Close => return conn.flush().await,
            Next::StartTls => {
                conn.flush().await?;
                let Some(acceptor) = ctx.acceptor.clone() else {
                    return Ok(());
                };
                conn.start_tls(&acceptor).await?;
                lines = LineReader::default();
                session.tls_started();
                continue;
            }
            Next::Data => {
                conn.flush().await?;
                // Streamed to the backend's spool file as it arrives (or kept in memory for a
                // backend without one); dropped unfinished, the temp file goes away.
                let mut body = Body::open(backend, session.envelope());
                let mut reader = DataReader::new(config.max_message_size);
                loop {
                    if reader.feed(&mut conn.input, &mut body) {
                        break;
                    }
                    // Inside DATA shutdown waits: the message is read to its end first.
                    match read_inside_message(conn, session, &config).await? {
                        Some(()) => {}
                        None => return Ok(()),
                    }
                }
                match session.data_end(reader.flaws()) {
                    Ok(envelope) => body.deliver(backend, envelope).await,
                    Err(reply) => reply,
                }
            }
            Next::Chunk { size, .. } => {
                let mut reader = ChunkReader::new(size, session.chunk_room());
                while !reader.feed(&mut conn.input, session.chunk_buffer()) {
                    match read_inside_message(conn, session, &config).await? {
                        Some(()) => {}
                        None => return Ok(()),
                    }
                }
                match session.chunk_end(size, reader.overflow()) {
                    Ok((envelope, body)) => body.deliver(backend, envelope).await,
                    Err(output) => {
                        for reply in &output.replies {
                            conn.queue(reply);
                        }
                        if output.next == Next::Close {
                            return conn.flush().await;
                        }
                        continue;
                    }
                }
            }
        };
        conn.queue(&reply);
        if *ctx.shutdown.borrow() {
            return close_with(conn, &session.shutdown_reply()).await;
        }
    }
}

/// One read inside a DATA block or BDAT chunk (shutdown waits for its end). `None`: the
/// session is over (EOF, or a timeout that was answered).
async fn read_inside_message(
    conn: &mut Conn,
    session: &Session,
    config: &ListenerConfig,
) -> io::Result<Option<()>> {
    match conn.read(config.data_timeout, None).await? {
        ReadOutcome::Data => Ok(Some(())),
        ReadOutcome::Eof | ReadOutcome::Shutdown => Ok(None),
        ReadOutcome::TimedOut => {
            close_with(conn, &session.timeout_reply()).await?;
            Ok(None)
        }
        ReadOutcome::SessionOver => {
            close_with(conn, &session.session_time_reply()).await?;
            Ok(None)
        }
    }
}

async fn close_with(conn: &mut Conn, reply: &Reply) -> io::Result<()> {
    conn.queue(reply);
    conn.flush().await
}
