//! SMTP client to the configured smarthost(s), with RFC 3461 DSN parameters: `RET`/`ENVID`
//! on MAIL, `NOTIFY`/`ORCPT` on each RCPT. Built on lettre's low-level
//! `AsyncSmtpConnection`, because its high-level transports send no DSN parameters.
//! Values are passed raw: lettre xtext-encodes them (RFC 3461 §4).

use crate::config::MtaSend;
use crate::smtp::{Notify, Ret};
use crate::spool::OutItem;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, MailParameter, RcptParameter};
use lettre::Address;
use std::time::Duration;

/// Result of one delivery attempt of one queue item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The transaction completed (`250` after DATA) for `accepted`; the others were refused
    /// at RCPT, permanently (5xx) or transiently (4xx), with the server's reply.
    Sent {
        accepted: Vec<String>,
        permanent: Vec<(String, String)>,
        transient: Vec<(String, String)>,
        /// The server's reply to the final dot.
        reply: String,
    },
    /// Try again later: no smarthost reachable, or a 4xx to MAIL/DATA. The reason.
    Transient(String),
    /// A 5xx to MAIL or DATA, or every recipient refused permanently. The server's reply.
    Permanent(String),
}

/// RFC 3461 §4.1 NOTIFY value.
pub fn notify_value(n: &Notify) -> String {
    let mut v = Vec::new();
    if n.success {
        v.push("SUCCESS");
    }
    if n.failure {
        v.push("FAILURE");
    }
    if n.delay {
        v.push("DELAY");
    }
    if v.is_empty() {
        "NEVER".into()
    } else {
        v.join(",")
    }
}

fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    e.to_string()
}

/// Send `message` for `item` through the first smarthost that answers. `hostname` is our
/// EHLO name. DSN parameters are sent only when the server's EHLO reply offers `DSN`
/// (RFC 3461 §4: a client must not send them otherwise).
pub async fn send(cfg: &MtaSend, hostname: &str, item: &OutItem, message: &[u8]) -> SendOutcome {
    let client_id = ClientId::Domain(hostname.to_string());
    let mut last_error = String::from("no smarthost configured");
    for server in &cfg.servers {
        let connect = AsyncSmtpConnection::connect_tokio1(
            server.as_str(),
            Some(cfg.connect_timeout),
            &client_id,
            None,
            None,
        );
        match tokio::time::timeout(cfg.connect_timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(mut conn)) => {
                let outcome =
                    transaction(&mut conn, &client_id, item, message, cfg.connect_timeout).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
                return outcome;
            }
            Ok(Err(e)) => last_error = format!("{server}: {e}"),
            Err(_) => last_error = format!("{server}: connect timed out"),
        }
    }
    SendOutcome::Transient(last_error)
}

async fn transaction(
    conn: &mut AsyncSmtpConnection,
    client_id: &ClientId,
    item: &OutItem,
    message: &[u8],
    timeout: Duration,
) -> SendOutcome {
    macro_rules! step {
        ($fut:expr) => {
            match tokio::time::timeout(timeout, $fut).await {
                Ok(r) => r,
                Err(_) => return SendOutcome::Transient("smarthost timed out".into()),
            }
        };
    }
    // lettre's ServerInfo drops the DSN keyword: read our own EHLO reply.
    let dsn = match step!(conn.command(Ehlo::new(client_id.clone()))) {
        Ok(r) => r.message().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("DSN"))
        }),
        Err(e) => return classify(&e),
    };
    let from = if item.mail_from.is_empty() {
        None
    } else {
        match item.mail_from.parse::<Address>() {
            Ok(a) => Some(a),
            Err(e) => {
                return SendOutcome::Permanent(format!("bad reverse-path {}: {e}", item.mail_from))
            }
        }
    };
    let mut params = Vec::new();
    if dsn {
        if let Some(ret) = item.ret {
            let v = match ret {
                Ret::Full => "FULL",
                Ret::Hdrs => "HDRS",
            };
            params.push(MailParameter::Other {
                keyword: "RET".into(),
                value: Some(v.into()),
            });
        }
        if let Some(envid) = &item.envid {
            params.push(MailParameter::Other {
                keyword: "ENVID".into(),
                value: Some(envid.clone()),
            });
        }
    }
    if let Err(e) = step!(conn.command(Mail::new(from, params))) {
        return classify(&e);
    }
    let (mut accepted, mut permanent, mut transient) = (Vec::new(), Vec::new(), Vec::new());
    for rcpt in &item.rcpts {
        let to = match rcpt.address.parse::<Address>() {
            Ok(a) => a,
            Err(e) => {
                permanent.push((rcpt.address.clone(), format!("bad address: {e}")));
                continue;
            }
        };
        let mut rp = Vec::new();
        if dsn {
            if let Some(n) = &rcpt.notify {
                rp.push(RcptParameter::Other {
                    keyword: "NOTIFY".into(),
                    value: Some(notify_value(n)),
                });
            }
            if let Some(o) = &rcpt.orcpt {
                rp.push(RcptParameter::Other {
                    keyword: "ORCPT".into(),
                    value: Some(o.clone()),
                });
            }
        }
        match step!(conn.command(Rcpt::new(to, rp))) {
            Ok(_) => accepted.push(rcpt.address.clone()),
            Err(e) if e.is_permanent() => permanent.push((rcpt.address.clone(), reply_text(&e))),
            Err(e) => transient.push((rcpt.address.clone(), reply_text(&e))),
        }
    }
    if accepted.is_empty() {
        let _ = step!(conn.command(lettre::transport::smtp::commands::Rset));
        if transient.is_empty() {
            return SendOutcome::Permanent(
                permanent
                    .first()
                    .map(|p| p.1.clone())
                    .unwrap_or_else(|| "no recipients".into()),
            );
        }
        return SendOutcome::Sent {
            accepted,
            permanent,
            transient,
            reply: String::new(),
        };
    }
    if let Err(e) = step!(conn.command(Data)) {
        return classify(&e);
    }
    match step!(conn.message(message)) {
        Ok(r) => SendOutcome::Sent {
            accepted,
            permanent,
            transient,
            reply: format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" ")),
        },
        Err(e) => classify(&e),
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    if e.is_permanent() {
        SendOutcome::Permanent(reply_text(e))
    } else {
        SendOutcome::Transient(reply_text(e))
    }
}
