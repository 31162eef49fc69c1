//! The offramp's SMTP listener (RFC 5321) with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES and DSN.
//!
//! STUB: the public API below is the contract; bodies are filled in by the listener work.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// One SMTP reply: basic code, RFC 3463 enhanced code (where RFC 2034 allows one) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// Enhanced status code such as `"2.0.0"` (RFC 3463); `None` for the greeting and EHLO.
    pub enhanced: Option<String>,
    /// Human-readable text; never internal error text.
    pub text: String,
}

impl Reply {
    /// Build a reply; `enhanced` may be empty for none.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: if enhanced.is_empty() {
                None
            } else {
                Some(enhanced.to_string())
            },
            text: text.into(),
        }
    }
    /// True for 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// RET parameter of MAIL FROM (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Ret {
    Full,
    Hdrs,
}

/// NOTIFY parameter of RCPT TO (RFC 3461 §4.1). All three false means `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// One accepted recipient with its RFC 3461 parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward-path without angle brackets.
    pub address: String,
    /// NOTIFY as given; `None` when absent.
    pub notify: Option<Notify>,
    /// ORCPT as `addr-type;address` with the xtext decoded, e.g. `rfc822;+15550100@gw.example`.
    pub orcpt: Option<String>,
}

/// The envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// EHLO/HELO argument.
    pub helo: String,
    /// Peer address `ip:port`.
    pub client_addr: String,
    /// Reverse-path without angle brackets; empty for `MAIL FROM:<>`.
    pub mail_from: String,
    pub ret: Option<Ret>,
    /// ENVID, xtext decoded.
    pub envid: Option<String>,
    /// BODY parameter (`7BIT`, `8BITMIME`) when given.
    pub body: Option<String>,
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
    fn data(&self, envelope: Envelope, message: Vec<u8>) -> impl Future<Output = Reply> + Send;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Host name in the greeting and EHLO reply.
    pub hostname: String,
    /// SIZE limit in bytes (RFC 1870).
    pub max_message_size: usize,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100).
    pub max_recipients: usize,
    /// Wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// Wait for a DATA block (RFC 5321 §4.5.3.2.6: 3 minutes).
    pub data_timeout: Duration,
    /// Concurrent sessions; past it `421 4.7.0`.
    pub max_sessions: usize,
    /// Errors in one session before `421` and close.
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

/// Accept SMTP sessions on `listener` until `shutdown` turns true; then idle sessions get
/// `421 4.3.2`, a DATA in progress is finished, and the call returns when all have closed.
pub async fn serve<B: Backend>(
    _listener: TcpListener,
    _config: Arc<ListenerConfig>,
    _backend: Arc<B>,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    unimplemented!("smtp::serve")
}
