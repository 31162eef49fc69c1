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
