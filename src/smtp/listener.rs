//! The tokio side: accept loop with a session cap, per-connection I/O with timeouts,
//! pipelined reply batching (RFC 2920) and graceful shutdown.

use super::proto::{DataReader, LineEvent, LineReader};
use super::session::{Next, Session};
use super::{Backend, ListenerConfig, Reply};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Octets read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait to get a refusal (`421 4.7.0`) out to a connection over the cap.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accept SMTP sessions on `listener` until `shutdown` turns true; then idle sessions get
/// `421 4.3.2`, a DATA in progress is finished, and the call returns when all have closed.
///
/// - Past `max_sessions` concurrent sessions a new connection gets `421 4.7.0` and is closed
///   (RFC 5321 §3.8 allows 421 in place of the greeting).
/// - Every read waits at most `command_timeout` (between commands) or `data_timeout`
///   (inside DATA), every write at most `command_timeout`; a read timeout sends
///   `421 4.4.2` and closes (RFC 5321 §4.5.3.2).
/// - After shutdown, sessions still open get up to `data_timeout + command_timeout` to end;
///   the rest are aborted.
/// - A dropped `shutdown` sender does not stop the listener; only `true` does.
///
/// Errors: none from sessions (they are logged); accept errors are retried after a pause.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
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
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let config = config.clone();
                        let backend = backend.clone();
                        let shutdown = shutdown.clone();
                        sessions.spawn(async move {
                            run_session(stream, peer, config, backend, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "smtp session limit reached, refusing");
                        let reply = Reply::too_many_sessions(&config.hostname);
                        sessions.spawn(refuse(stream, reply));
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

async fn refuse(mut stream: TcpStream, reply: Reply) {
    let _ = timeout(REFUSAL_WRITE_TIMEOUT, async {
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
    Shutdown,
}

/// One connection: its socket, buffers and the sans-IO session.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    chunk: Box<[u8]>,
    write_timeout: Duration,
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
        match timeout(self.write_timeout, self.stream.write_all(&out)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Read more input, waiting at most `limit`; with `shutdown`, also stop when it turns
    /// true.
    async fn read(
        &mut self,
        limit: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> io::Result<ReadOutcome> {
        let read = timeout(limit, self.stream.read(&mut self.chunk));
        let result = match shutdown {
            Some(rx) => tokio::select! {
                r = read => r,
                _ = wait_for_shutdown(rx) => return Ok(ReadOutcome::Shutdown),
            },
            None => read.await,
        };
        match result {
            Err(_) => Ok(ReadOutcome::TimedOut),
            Ok(Ok(0)) => Ok(ReadOutcome::Eof),
            Ok(Ok(n)) => {
                let got = self.chunk.get(..n).unwrap_or_default();
                self.input.extend_from_slice(got);
                Ok(ReadOutcome::Data)
            }
            Ok(Err(error)) => Err(error),
        }
    }
}

async fn run_session<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ListenerConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "smtp session start");
    let mut conn = Conn {
        stream,
        input: Vec::new(),
        output: Vec::new(),
        chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
        write_timeout: config.command_timeout,
    };
    let mut session = Session::new(config.clone(), peer.to_string());
    match drive(&mut conn, &mut session, &config, backend.as_ref(), shutdown).await {
        Ok(()) => tracing::debug!(%peer, "smtp session end"),
        Err(error) => tracing::debug!(%peer, %error, "smtp session ended by I/O error"),
    }
    let _ = timeout(conn.write_timeout, conn.stream.shutdown()).await;
}

/// The read-evaluate-reply loop of one session.
async fn drive<B: Backend>(
    conn: &mut Conn,
    session: &mut Session,
    config: &ListenerConfig,
    backend: &B,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut lines = LineReader::default();
    conn.queue(&session.greeting());
    loop {
        let output = match lines.next(&mut conn.input) {
            Some(LineEvent::Line(line)) => session.command(&line, backend),
            Some(LineEvent::TooLong) => session.line_too_long(),
            None => {
                conn.flush().await?;
                if *shutdown.borrow() {
                    return close_with(conn, &session.shutdown_reply()).await;
                }
                match conn
                    .read(config.command_timeout, Some(&mut shutdown))
                    .await?
                {
                    ReadOutcome::Data => continue,
                    ReadOutcome::Eof => return Ok(()),
                    ReadOutcome::TimedOut => {
                        return close_with(conn, &session.timeout_reply()).await
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
        match output.next {
            Next::Command => {}
            Next::Close => return conn.flush().await,
            Next::Data => {
                conn.flush().await?;
                let mut reader = DataReader::new(config.max_message_size);
                while !reader.feed(&mut conn.input) {
                    // Inside DATA shutdown waits: the message is read to its end first.
                    match conn.read(config.data_timeout, None).await? {
                        ReadOutcome::Data => {}
                        ReadOutcome::Eof | ReadOutcome::Shutdown => return Ok(()),
                        ReadOutcome::TimedOut => {
                            return close_with(conn, &session.timeout_reply()).await
                        }
                    }
                }
                let oversize = reader.oversize();
                let reply = match session.data_end(oversize) {
                    Ok(envelope) => backend
                        .data(envelope, reader.into_message())
                        .await
                        .normalized(),
                    Err(reply) => reply,
                };
                conn.queue(&reply);
                if *shutdown.borrow() {
                    return close_with(conn, &session.shutdown_reply()).await;
                }
            }
        }
    }
}

async fn close_with(conn: &mut Conn, reply: &Reply) -> io::Result<()> {
    conn.queue(reply);
    conn.flush().await
}
