//! The offramp's SMTP listener (RFC 5321) with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES, DSN, STARTTLS, CHUNKING and AUTH PLAIN/LOGIN.
//!
//! - [`reply`]: [`Reply`] and every reply the listener sends (listed in `docs/replies.md`).
//! - `proto`: sans-IO framing of command lines, of the DATA block and of BDAT chunks.
//! - `session`: the sans-IO state machine (command in → replies + next step out).
//! - `auth`: the AUTH PLAIN / LOGIN exchanges (RFC 4954, RFC 4616).
//! - `tls`: the rustls server configuration built from [`TlsConfig`].
//! - `limits`: per-client connection cap and connection rate.
//! - `sink`: [`SpoolFile`], a message streamed to a spool temp file through a bounded buffer.
//! - `listener`: [`serve`] and [`serve_tls`], the tokio accept loop, timeouts and shutdown.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

mod auth;
mod limits;
mod listener;
mod proto;
pub mod reply;
mod session;
mod sink;
mod tls;

pub use listener::{serve, serve_tls};
pub use reply::Reply;
pub use sink::{SpoolFile, WRITE_BUFFER};

/// RET parameter of MAIL FROM (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Ret {
    /// `RET=FULL`: return the whole message in a failure DSN.
    Full,
    /// `RET=HDRS`: return the headers only.
    Hdrs,
}

/// NOTIFY parameter of RCPT TO (RFC 3461 §4.1). All three false means `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Notify {
    /// `SUCCESS`: report delivery.
    pub success: bool,
    /// `FAILURE`: report failure.
    pub failure: bool,
    /// `DELAY`: report a delay.
    pub delay: bool,
}

/// One accepted recipient with its RFC 3461 parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward-path without angle brackets.
    pub address: String,
    /// NOTIFY as given; `None` when absent.
    pub notify: Option<Notify>,
    /// ORCPT as `addr-type;address` with the xtext decoded, e.g. `rfc822;+15550100@gw.example`
    /// (sent as `ORCPT=rfc822;+2B15550100@gw.example`, RFC 3461 §4, §4.2). Only `rfc822` is
    /// accepted; a value that decodes to control or non-ASCII characters gets `501 5.5.4`.
    pub orcpt: Option<String>,
}

/// The envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// EHLO/HELO argument (printable US-ASCII, at most 255 bytes).
    pub helo: String,
    /// Peer address `ip:port`.
    pub client_addr: String,
    /// Reverse-path without angle brackets; empty for `MAIL FROM:<>`.
    pub mail_from: String,
    /// RET of MAIL FROM (RFC 3461 §4.3); `None` when absent.
    pub ret: Option<Ret>,
    /// ENVID, xtext decoded: 1..=100 printable US-ASCII bytes (RFC 3461 §4.4).
    pub envid: Option<String>,
    /// BODY parameter (`7BIT`, `8BITMIME`) when given.
    pub body: Option<String>,
    /// Accepted recipients in RCPT order (refused ones are not here).
    pub rcpts: Vec<Recipient>,
    /// True when the transaction ran over TLS (STARTTLS, RFC 3207, or implicit TLS).
    #[serde(default)]
    pub tls: bool,
    /// The user name that authenticated the session (RFC 4954), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
}

/// What the session asks of the gateway; called only after order and syntax were checked.
pub trait Backend: Send + Sync + 'static {
    /// Check the reverse-path. Default: accept.
    fn mail(&self, _envelope: &Envelope) -> Result<(), Reply> {
        Ok(())
    }
    /// A session was admitted (called before its greeting); every call is matched by one
    /// [`Backend::session_closed`], also when the session fails or is aborted. For a backend
    /// that schedules other work around mail intake. Default: nothing.
    fn session_opened(&self) {}
    /// A session opened with [`Backend::session_opened`] ended. Default: nothing.
    fn session_closed(&self) {}
    /// Accept or refuse one recipient (`550 5.1.1`, `550 5.7.1`, …).
    fn rcpt(&self, envelope: &Envelope, rcpt: &Recipient) -> Result<(), Reply>;
    /// Store the message durably and return the reply to the final dot: `250` only once the
    /// message and envelope are fsynced, else `451 4.3.0` / `452 4.3.1`.
    ///
    /// `message` is dot-unstuffed, ends with the CRLF before the final dot (RFC 5321
    /// §4.5.2) and is at most `max_message_size` bytes. The reply is sent as is, except that a
    /// code outside 200..=599 becomes `451 4.3.0` and a missing or wrong-class enhanced code
    /// becomes `X.0.0` ([`Reply::normalized`]). Its text must hold no internal error detail.
    fn data(&self, envelope: Envelope, message: Vec<u8>) -> impl Future<Output = Reply> + Send;
    /// Where the message of `envelope` is streamed while it is received, asked once its DATA
    /// (RFC 5321 §4.1.1.4) or first BDAT chunk (RFC 3030 §2) starts, with every recipient
    /// known. `Some(Ok(file))`: the octets go to `file` through its bounded buffer
    /// ([`WRITE_BUFFER`] octets), never whole in memory, and [`Backend::data_file`] gets it.
    /// `Some(Err(_))`: the message is still read to its end, then answered `452 4.3.1` (disk
    /// full) or `451 4.3.0` ([`Reply::storage_error`]). Default `None`: the message is
    /// collected in memory and handed to [`Backend::data`].
    fn open_message(&self, _envelope: &Envelope) -> Option<std::io::Result<SpoolFile>> {
        None
    }
    /// Store the message streamed into `message` (opened by [`Backend::open_message`],
    /// completely written, not yet fsynced) durably and return the reply to the final dot or
    /// `BDAT LAST`: `250` only once message and envelope are fsynced (file and directory),
    /// else `451 4.3.0` / `452 4.3.1`. The message octets are as for [`Backend::data`].
    /// Default: read the file back and call [`Backend::data`] (the temp file is removed).
    fn data_file(
        &self,
        envelope: Envelope,
        message: SpoolFile,
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let mut message = message;
            match message.read_message() {
                Ok(bytes) => {
                    drop(message);
                    self.data(envelope, bytes).await
                }
                Err(error) => Reply::storage_error(&error),
            }
        }
    }
    /// Check AUTH PLAIN / LOGIN credentials (RFC 4954; asked only over TLS and only when
    /// [`ListenerConfig::auth`] or [`ListenerConfig::require_auth`] is set). `true` →
    /// `235 2.7.0`, `false` → `535 5.7.8`. Default: refuse everyone.
    fn authenticate(&self, _user: &str, _password: &str) -> bool {
        false
    }
}

/// What to do with a line ending that is not CRLF (RFC 5321 §2.3.8: lines end in CRLF only;
/// a bare CR or LF is how SMTP smuggling hides a second end of data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareLineEnding {
    /// Refuse: in DATA the message gets `554 5.6.0` after its final dot; a command line
    /// ending in bare LF gets `500 5.5.2`.
    #[default]
    Reject,
    /// Accept: in DATA a bare CR or LF is kept as an ordinary data octet (it never ends a
    /// line, so it can never end the message); a command line ending in bare LF is read as
    /// if it ended in CRLF.
    Accept,
}

/// Where a PEM item (certificate chain or private key) comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// The PEM text itself.
    Pem(Vec<u8>),
    /// A file holding it, read once when the listener starts.
    Path(PathBuf),
}

impl std::fmt::Debug for PemSource {
    /// Never prints key material: only the length or the path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemSource::Pem(bytes) => write!(f, "Pem({} bytes)", bytes.len()),
            PemSource::Path(path) => write!(f, "Path({})", path.display()),
        }
    }
}

/// The listener's TLS identity (RFC 3207 STARTTLS and implicit TLS, RFC 8314 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, leaf first, PEM. It must be an end-entity certificate: rustls
    /// refuses a certificate marked as a CA.
    pub cert: PemSource,
    /// The leaf's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PemSource,
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Host name in the greeting, EHLO/HELO and 221/421 replies.
    pub hostname: String,
    /// SIZE limit in bytes (RFC 1870): offered in EHLO, `SIZE=` above it gets `552 5.3.4`
    /// (§6.3), and a longer DATA block is read to its end and refused `552 5.3.4` (§6.4).
    pub max_message_size: usize,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100); past it
    /// `452 4.5.3` (§4.5.3.1.10).
    pub max_recipients: usize,
    /// Longest wait for input between commands, and for each reply write (RFC 5321
    /// §4.5.3.2.7: 5 minutes); past it `421 4.4.2` and close.
    pub command_timeout: Duration,
    /// Longest wait for each read inside a DATA block (RFC 5321 §4.5.3.2.6: 3 minutes); past
    /// it `421 4.4.2` and close.
    pub data_timeout: Duration,
    /// Concurrent sessions; a connection past it gets `421 4.7.0` and is closed.
    pub max_sessions: usize,
    /// Negative (4xx/5xx) replies to commands in one session; the one that reaches this count
    /// is followed by `421 4.7.0` and close.
    pub max_errors: usize,
    /// Longest whole session, in seconds of wall time from accept (a client that trickles one
    /// octet per read never meets the per-read timeouts); past it `421 4.4.2` and close, after
    /// the reply to a message already ended.
    pub max_session_time: Duration,
    /// Messages (DATA or BDAT LAST transactions answered) per session; the next MAIL gets
    /// `421 4.7.0` and close.
    pub max_messages_per_session: usize,
    /// Bare CR or LF inside a DATA block (RFC 5321 §2.3.8, §4.1.1.4). Default: reject.
    pub data_bare_line_ending: BareLineEnding,
    /// A command line ending in a bare LF (RFC 5321 §2.3.8). Default: accept (scripts and
    /// printers send them; a command line cannot end a DATA block, so this is no smuggling
    /// path). `Reject` answers such a line `500 5.5.2`.
    pub command_bare_lf: BareLineEnding,
    /// Certificate and key for STARTTLS (offered in EHLO only when set) and for
    /// [`serve_tls`]. Default: none.
    pub tls: Option<TlsConfig>,
    /// Refuse MAIL with `530 5.7.0` until STARTTLS succeeded (RFC 3207 §4). Default: false.
    pub require_tls: bool,
    /// Offer AUTH PLAIN and LOGIN once TLS is up (RFC 4954; never in clear text), checked by
    /// [`Backend::authenticate`]. Default: false.
    pub auth: bool,
    /// Refuse MAIL with `530 5.7.0` until AUTH succeeded (RFC 4954 §6); implies [`auth`]
    /// (so also TLS). Default: false.
    ///
    /// [`auth`]: ListenerConfig::auth
    pub require_auth: bool,
    /// Concurrent sessions from one client (one IPv4 address, or one IPv6 /64); past it
    /// `421 4.7.0` and close. Default: 10.
    pub max_sessions_per_client: usize,
    /// New connections from one client (IPv4 address or IPv6 /64) per
    /// [`client_rate_window`](ListenerConfig::client_rate_window); past it `421 4.7.0` and
    /// close. Default: 60.
    pub max_connections_per_client: usize,
    /// The window of [`max_connections_per_client`](ListenerConfig::max_connections_per_client),
    /// in seconds. Default: 60 s.
    pub client_rate_window: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            hostname: "localhost".into(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_sessions: 100,
            max_errors: 10,
            max_session_time: Duration::from_secs(3600),
            max_messages_per_session: 1000,
            data_bare_line_ending: BareLineEnding::Reject,
            command_bare_lf: BareLineEnding::Accept,
            tls: None,
            require_tls: false,
            auth: false,
            require_auth: false,
            max_sessions_per_client: 10,
            max_connections_per_client: 60,
            client_rate_window: Duration::from_secs(60),
        }
    }
}
