//! The offramp's SMTP listener (RFC 5321) with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES and DSN.
//!
//! - [`reply`]: [`Reply`] and every reply the listener sends.
//! - `proto`: sans-IO framing of command lines and of the DATA block.
//! - `session`: the sans-IO state machine (command in → replies + next step out).
//! - `listener`: [`serve`], the tokio accept loop, timeouts and shutdown.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

mod listener;
mod proto;
pub mod reply;
mod session;

pub use listener::serve;
pub use reply::Reply;

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
}

/// What the session asks of the gateway; called only after order and syntax were checked.
pub trait Backend: Send + Sync + 'static {
    /// Check the reverse-path. Default: accept.
    fn mail(&self, _envelope: &Envelope) -> Result<(), Reply> {
        Ok(())
    }
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
        }
    }
}
