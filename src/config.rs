//! `gateway.yaml`: the raw serde mirror of the file, validated into [`Config`].
//!
//! Keys are kebab-case and follow Cisco's dial-peer and `mta` vocabulary (INTERFACE.md).
//! Relative paths in the file are relative to the file's own directory. Every key is
//! documented, with unit and default, in the shipped `gateway.yaml` and in `docs/config.md`.
//! Errors name file, line, column and key (`FILE:LINE:COL: KEY: message`).

pub mod dial_peer;

use crate::tiff_f::{Bilevel, Encoding, Resolution};
use dial_peer::DestinationPattern;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shipped `gateway.yaml`, embedded so that `t37gw demo` runs from anywhere.
pub const SHIPPED_CONFIG: &str = include_str!("../gateway.yaml");

// ---------------------------------------------------------------- raw (serde mirror)

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    gateway: RawGateway,
    mta_receive: Option<RawMtaReceive>,
    mta_send: RawMtaSend,
    #[serde(default)]
    onramp_dial_peers: Vec<RawOnrampPeer>,
    #[serde(default)]
    offramp_dial_peers: Vec<RawOfframpPeer>,
    #[serde(default)]
    fax_backends: Vec<RawBackend>,
    paths: Option<RawPaths>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGateway {
    hostname: S<String>,
    domain: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMtaReceive {
    listen: Option<S<String>>,
    maximum_message_size: Option<u64>,
    maximum_recipients: Option<S<usize>>,
    #[serde(default)]
    aliases: Vec<S<String>>,
    command_timeout: Option<u64>,
    data_timeout: Option<u64>,
    maximum_sessions: Option<usize>,
    maximum_sessions_per_client: Option<usize>,
    maximum_connections_per_minute: Option<usize>,
    bare_line_endings: Option<S<String>>,
    tls_certificate: Option<S<String>>,
    tls_key: Option<S<String>>,
    implicit_tls_listen: Option<S<String>>,
    require_tls: Option<S<bool>>,
    auth_users_file: Option<S<String>>,
    require_auth: Option<S<bool>>,
    implicit_tls_require_auth: Option<S<bool>>,
    #[serde(default)]
    allowed_senders: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMtaSend {
    server: Vec<S<String>>,
    mail_from: S<String>,
    return_receipt_to: Option<S<String>>,
    subject: Option<String>,
    retry_initial: Option<S<u64>>,
    retry_maximum: Option<u64>,
    give_up_after: Option<u64>,
    connect_timeout: Option<u64>,
    report_deadline: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOnrampPeer {
    name: String,
    destination_pattern: S<String>,
    session_target: S<String>,
    #[serde(default)]
    preference: u32,
    dsn: Option<Vec<S<String>>>,
    #[serde(default)]
    mdn: bool,
    message_type: Option<S<String>>,
    image_encoding: Option<S<String>>,
    image_resolution: Option<S<String>>,
    dithering: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOfframpPeer {
    name: String,
    destination_pattern: S<String>,
    session_target: S<String>,
    #[serde(default)]
    preference: u32,
    image_encoding: Option<S<String>>,
    image_resolution: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBackend {
    name: String,
    #[serde(rename = "type")]
    kind: S<String>,
    path: Option<S<String>>,
    command: Option<Vec<String>>,
    #[serde(default)]
    simulate_line: bool,
    result_wait: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPaths {
    spool: Option<String>,
    journal: Option<String>,
    incoming: Option<String>,
}

// ---------------------------------------------------------------- validated

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from (for messages); `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// FQDN used in the SMTP greeting, Message-IDs and `Reporting-MTA`.
    pub hostname: String,
    /// Mail domain of this gateway's addresses (`FAX=+number@domain`, the return address).
    pub domain: String,
    pub mta_receive: MtaReceive,
    pub mta_send: MtaSend,
    pub onramp_peers: Vec<OnrampPeer>,
    pub offramp_peers: Vec<OfframpPeer>,
    pub backends: Vec<Backend>,
    /// Spool directory (offramp messages, outgoing mail queue).
    pub spool: PathBuf,
    /// Journal file (JSON lines).
    pub journal: PathBuf,
    /// Watched directory where a fax-receive hook drops received faxes (`*.job` + pages).
    pub incoming: PathBuf,
}

/// `mta-receive`: the offramp's SMTP listener.
#[derive(Debug, Clone)]
pub struct MtaReceive {
    /// Listen address; default `127.0.0.1:2525`.
    pub listen: SocketAddr,
    /// SIZE limit in bytes; default 10 MiB.
    pub maximum_message_size: u64,
    /// Recipients per transaction; default 100 (RFC 5321 §4.5.3.1.8 minimum).
    pub maximum_recipients: usize,
    /// Further domains accepted as the gateway's own (Cisco `mta receive aliases`).
    pub aliases: Vec<String>,
    /// Command timeout; default 300 s (RFC 5321 §4.5.3.2.7).
    pub command_timeout: Duration,
    /// DATA block timeout; default 180 s (RFC 5321 §4.5.3.2.6).
    pub data_timeout: Duration,
    /// Concurrent sessions; default 100.
    pub maximum_sessions: usize,
    /// Concurrent sessions from one client (IPv4 address or IPv6 /64); default 10.
    pub maximum_sessions_per_client: usize,
    /// Connections one client may open per minute; default 60.
    pub maximum_connections_per_minute: usize,
    /// Keep bare CR/LF inside DATA as data instead of refusing the message; default false
    /// (refuse: SMTP smuggling, RFC 5321 §2.3.8).
    pub accept_bare_line_endings: bool,
    /// PEM certificate chain and key for STARTTLS (RFC 3207); default none (no STARTTLS).
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Second listener with implicit TLS (RFC 8314); needs the certificate; default none.
    pub implicit_tls_listen: Option<SocketAddr>,
    /// Refuse mail until STARTTLS (`530 5.7.0`); default false.
    pub require_tls: bool,
    /// AUTH PLAIN / LOGIN users (RFC 4954), from `auth-users-file`: user name → SHA-crypt
    /// hash (`$6$…` SHA-512 or `$5$…` SHA-256, as `openssl passwd -6` or `mkpasswd` make
    /// them). Empty = no AUTH. AUTH is offered only over TLS.
    pub auth_users: std::collections::BTreeMap<String, String>,
    /// Refuse mail on the `listen` port until AUTH succeeded (`530 5.7.0`); default false.
    pub require_auth: bool,
    /// The same for the implicit-TLS port; default: `require-auth`.
    pub implicit_tls_require_auth: bool,
    /// Senders allowed to send faxes: `user@domain`, `@domain` or `*@domain` (ASCII
    /// case-insensitive); empty = anyone. The null sender `<>` (reports) is always allowed.
    pub allowed_senders: Vec<String>,
}

/// `mta-send`: outgoing mail (onramp mail and DSNs) to the smarthost(s).
#[derive(Debug, Clone)]
pub struct MtaSend {
    /// Smarthosts tried in order, `host:port`.
    pub servers: Vec<String>,
    /// Envelope sender of onramp mail: the gateway's return address for DSNs.
    pub mail_from: String,
    /// `Disposition-Notification-To` address for peers with `mdn: true`; default `mail_from`.
    pub return_receipt_to: String,
    /// Subject template; `$d$` = DNIS, `$s$` = ANI, `$t$` = TSI.
    pub subject: String,
    /// First retry delay; default 5 s, doubled per attempt.
    pub retry_initial: Duration,
    /// Largest retry delay; default 600 s.
    pub retry_maximum: Duration,
    /// Give up (job failed) after this long; default 5 days (RFC 5321 §4.5.4.1: 4–5 days).
    pub give_up_after: Duration,
    /// Connect and command timeout; default 30 s.
    pub connect_timeout: Duration,
    /// A sent onramp mail with no DSN for a recipient after this long is journalled
    /// `report_overdue` and shows as `no-report`; default 172800 s (2 days); 0 = never.
    pub report_deadline: Duration,
}

/// Outer MIME type of onramp mail (RFC 3965 §3 vs. plain `multipart/mixed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `multipart/fax-message` (RFC 3965 full mode / Cisco default).
    FaxMessage,
    /// `multipart/mixed`.
    Mixed,
}

/// Which DSNs an onramp peer asks for (RFC 3461 §4.1 NOTIFY); all false = `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsnRequest {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// An onramp dial peer: DNIS pattern → mail recipient.
#[derive(Debug, Clone)]
pub struct OnrampPeer {
    pub name: String,
    /// Matched against the DNIS (called number).
    pub destination_pattern: DestinationPattern,
    /// `mailto:` template with `$d$` (DNIS) and `$s$` (ANI), without the `mailto:`.
    pub mailto: String,
    pub preference: u32,
    pub dsn: DsnRequest,
    pub mdn: bool,
    pub message_type: MessageType,
    pub encoding: Encoding,
    pub resolution: Resolution,
    pub bilevel: Bilevel,
}

/// An offramp dial peer: fax number pattern → fax backend.
#[derive(Debug, Clone)]
pub struct OfframpPeer {
    pub name: String,
    /// Matched against the RFC 3192 number (with its leading `+`).
    pub destination_pattern: DestinationPattern,
    /// Backend name, or `reject` to refuse the number (`550 5.7.1`).
    pub target: OfframpTarget,
    pub preference: u32,
    pub encoding: Encoding,
    pub resolution: Resolution,
}

/// Where an offramp peer sends its faxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfframpTarget {
    /// A configured fax backend, by name.
    Backend(String),
    /// Refuse the number at RCPT (blocked premium or international patterns).
    Reject,
}

/// A fax-output backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub kind: BackendKind,
}

/// The kinds of fax-output backend.
#[derive(Debug, Clone)]
pub enum BackendKind {
    /// Outbox directory: `JOBID.tif` + `JOBID.json`, result files `JOBID.result` written back.
    SpoolDirectory {
        path: PathBuf,
        /// Act as the fax line ourselves and confirm each fax (the demo's simulated line).
        simulate_line: bool,
        /// How long to wait for a result file before reporting `relayed`; 0 = do not wait.
        result_wait: Duration,
    },
    /// External command (`sendfax`-style); `$number$`, `$subaddress$` (T.33, empty without
    /// one), `$file$`, `$job$` are substituted.
    /// Exit 0 = sent, 75 (EX_TEMPFAIL) = retry later, other = failed.
    Command { argv: Vec<String> },
}

/// One configuration error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: the file as a whole (it cannot be read), no place in it to name.
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

/// All errors found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Read and validate a file. Errors: unreadable file (line 0), YAML syntax, unknown or
    /// misspelt keys, wrong types, bad patterns/addresses/templates, dangling backend names.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                key: "-".into(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse(&text, &name, &base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validate YAML text; `file` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = serde_saphyr::from_str(text)
            .map_err(|e| ConfigErrors(vec![yaml_error(&e, text, file)]))?;
        let mut v = Validator {
            file,
            errors: Vec::new(),
        };
        let config = v.config(raw, base);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    /// The onramp peer for a DNIS (most specific pattern, then preference).
    pub fn onramp_peer(&self, dnis: &str) -> Option<&OnrampPeer> {
        dial_peer::select(&self.onramp_peers, dnis, |p| {
            (&p.destination_pattern, p.preference)
        })
    }

    /// True when `sender` (a reverse-path, empty for `<>`) may send faxes here.
    pub fn sender_allowed(&self, sender: &str) -> bool {
        let list = &self.mta_receive.allowed_senders;
        if sender.is_empty() || list.is_empty() {
            return true;
        }
        let s = sender.to_ascii_lowercase();
        list.iter().any(|a| {
            if a.starts_with('@') {
                s.ends_with(a.as_str())
            } else {
                &s == a
            }
        })
    }

    /// The offramp peer for an RFC 3192 number such as `+12025551234`.
    pub fn offramp_peer(&self, number: &str) -> Option<&OfframpPeer> {
        dial_peer::select(&self.offramp_peers, number, |p| {
            (&p.destination_pattern, p.preference)
        })
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// True when `domain` is this gateway's domain or one of its aliases (ASCII case-insensitive).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain)
            || self
                .mta_receive
                .aliases
                .iter()
                .any(|a| a.eq_ignore_ascii_case(domain))
    }
}

/// Turn a serde-saphyr error into a located error; the key is the one the error names, or
/// the mapping key on the error's line.
fn yaml_error(e: &serde_saphyr::Error, text: &str, file: &str) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let plain = e.without_snippet().to_string();
    let message = plain.lines().next().unwrap_or("invalid YAML").to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    // Drop hints addressed to the library's programmers.
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(&message)
        .to_string();
    // The parser's Rust type names, in the words of the file: "invalid u64" → a whole number.
    let message = if let Some(ty) = message.strip_prefix("invalid ") {
        match ty.trim() {
            "u8" | "u16" | "u32" | "u64" | "usize" => {
                "expected a whole number, 0 or more".to_string()
            }
            "i8" | "i16" | "i32" | "i64" | "isize" => "expected a whole number".to_string(),
            "f32" | "f64" => "expected a number".to_string(),
            "bool" => "expected true or false".to_string(),
            _ => message,
        }
    } else {
        message
    };
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    let message = if blank {
        "the file is empty: it needs at least gateway and mta-send".to_string()
    } else {
        message
    };
    let key = match e {
        serde_saphyr::Error::SerdeUnknownField { field, .. } => field.clone(),
        serde_saphyr::Error::SerdeMissingField { field, .. } => field.to_string(),
        _ => key_on_line(text, line).unwrap_or_else(|| "-".into()),
    };
    if let Some((open_line, open_column, bracket)) = unclosed_flow(text, line) {
        // An unclosed `[` or `{` (YAML 1.2 §7.4 flow collection): the parser only stops at
        // a later line; name the line that opened it.
        return ConfigError {
            file: file.to_string(),
            line: open_line,
            column: open_column,
            key: key_on_line(text, open_line).unwrap_or_else(|| "-".into()),
            message: format!(
                "this `{bracket}` is never closed (the parser stopped at line {line}: {message})"
            ),
        };
    }
    if let Some(misplaced) = misindented_key(&message, text, line) {
        return ConfigError {
            file: file.to_string(),
            ..misplaced
        };
    }
    ConfigError {
        file: file.to_string(),
        line,
        column,
        key,
        message,
    }
}

/// The last `[` or `{` still open at the end of the lines before 1-based `line` (outside
/// quotes and comments), as (line, column, bracket), both 1-based, when the file as a whole
/// opens more flow collections than it closes; `None` otherwise (a flow collection that goes on
/// over several lines and is closed later is no error of its own).
fn unclosed_flow(text: &str, line: u64) -> Option<(u64, u64, char)> {
    let mut open: Vec<(u64, u64, char)> = Vec::new();
    let mut at_error: Option<(u64, u64, char)> = None;
    let mut balance = 0i64;
    for (n, l) in text.lines().enumerate() {
        let n = n as u64 + 1;
        if n == line {
            at_error = open.last().copied();
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (c_at, c) in l.chars().enumerate() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') if prev == ' ' || prev == '\t' => break,
                (None, '[' | '{') => {
                    balance += 1;
                    open.push((n, c_at as u64 + 1, c));
                }
                (None, ']' | '}') => {
                    balance -= 1;
                    open.pop();
                }
                _ => {}
            }
            prev = c;
        }
    }
    if balance > 0 {
        at_error
    } else {
        None
    }
}

/// For "missing field `X`" at 1-based `line`: a key `X` written elsewhere at an indentation
/// other than that of the key on `line` — a key that drifted out of its mapping (YAML 1.2
/// §6.1: the keys of one block mapping start in the same column). The error then names that
/// line and key. `None` when the field is not in the text or is not the only such key.
fn misindented_key(message: &str, text: &str, line: u64) -> Option<ConfigError> {
    let field = message.strip_prefix("missing field `")?.split('`').next()?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let at = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let expected = indent(at);
    let mut found = text.lines().enumerate().filter(|(_, l)| {
        l.trim_start()
            .strip_prefix(field)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
            && indent(l) != expected
    });
    let (n, l) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(ConfigError {
        file: String::new(),
        line: n as u64 + 1,
        column: indent(l) as u64 + 1,
        key: field.to_string(),
        message: format!(
            "not inside its mapping: it starts in column {}, the mapping's keys in column {} \
             (line {line}); keys of one mapping must start in the same column",
            indent(l) + 1,
            expected + 1
        ),
    })
}

/// The mapping key written on 1-based `line`, if any (`  - name: x` → `name`).
fn key_on_line(text: &str, line: u64) -> Option<String> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let l = l.trim_start().trim_start_matches("- ");
    let (k, _) = l.split_once(':')?;
    let k = k.trim();
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
}

struct Validator<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: at.line(),
            column: at.column(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig, base: &Path) -> Config {
        let domain = raw.gateway.domain.value.trim().to_ascii_lowercase();
        if domain.is_empty() || domain.contains('@') || domain.contains(' ') {
            self.err(
                &raw.gateway.domain.referenced,
                "domain",
                "must be a mail domain such as gw.example.com",
            );
        }
        let hostname = raw.gateway.hostname.value.trim().to_string();
        if hostname.is_empty() || hostname.contains(' ') {
            self.err(
                &raw.gateway.hostname.referenced,
                "hostname",
                "must be a host name",
            );
        }
        let mta_receive = self.mta_receive(raw.mta_receive, base);
        let mta_send = self.mta_send(raw.mta_send);
        let names = |v: Vec<(String, Location)>| v;
        let backend_names = names(
            raw.fax_backends
                .iter()
                .map(|b| (b.name.clone(), b.kind.referenced))
                .collect(),
        );
        let onramp_names = names(
            raw.onramp_dial_peers
                .iter()
                .map(|p| (p.name.clone(), p.destination_pattern.referenced))
                .collect(),
        );
        let offramp_names = names(
            raw.offramp_dial_peers
                .iter()
                .map(|p| (p.name.clone(), p.destination_pattern.referenced))
                .collect(),
        );
        self.unique_names("onramp-dial-peers", &onramp_names);
        self.unique_names("offramp-dial-peers", &offramp_names);
        self.unique_names("fax-backends", &backend_names);
        let backends: Vec<Backend> = raw
            .fax_backends
            .into_iter()
            .filter_map(|b| self.backend(b, base))
            .collect();
        let onramp_peers = raw
            .onramp_dial_peers
            .into_iter()
            .filter_map(|p| self.onramp_peer(p))
            .collect();
        let offramp_peers: Vec<OfframpPeer> = raw
            .offramp_dial_peers
            .into_iter()
            .filter_map(|p| self.offramp_peer(p, &backends))
            .collect();
        let paths = raw.paths.unwrap_or(RawPaths {
            spool: None,
            journal: None,
            incoming: None,
        });
        let resolve =
            |p: Option<String>, default: &str| base.join(p.unwrap_or_else(|| default.to_string()));
        Config {
            source: None,
            hostname,
            domain,
            mta_receive,
            mta_send,
            onramp_peers,
            offramp_peers,
            backends,
            spool: resolve(paths.spool, "spool"),
            journal: resolve(paths.journal, "journal.jsonl"),
            incoming: resolve(paths.incoming, "incoming"),
        }
    }

    fn unique_names(&mut self, section: &str, names: &[(String, Location)]) {
        for (i, (name, at)) in names.iter().enumerate() {
            if names[..i].iter().any(|(n, _)| n == name) {
                self.err(at, "name", format!("`{name}` is used twice in {section}"));
            }
        }
    }

    fn mta_receive(&mut self, raw: Option<RawMtaReceive>, base: &Path) -> MtaReceive {
        let mut r = MtaReceive {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            maximum_message_size: 10 * 1024 * 1024,
            maximum_recipients: 100,
            aliases: Vec::new(),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            maximum_sessions: 100,
            maximum_sessions_per_client: 10,
            maximum_connections_per_minute: 60,
            accept_bare_line_endings: false,
            tls_certificate: None,
            tls_key: None,
            implicit_tls_listen: None,
            require_tls: false,
            auth_users: Default::default(),
            require_auth: false,
            implicit_tls_require_auth: false,
            allowed_senders: Vec::new(),
        };
        let Some(raw) = raw else { return r };
        if let Some(listen) = raw.listen {
            match listen.value.parse() {
                Ok(a) => r.listen = a,
                Err(_) => self.err(
                    &listen.referenced,
                    "listen",
                    "must be IP:PORT, e.g. 127.0.0.1:2525",
                ),
            }
        }
        r.maximum_message_size = raw.maximum_message_size.unwrap_or(r.maximum_message_size);
        if let Some(m) = raw.maximum_recipients {
            if m.value == 0 {
                self.err(
                    &m.referenced,
                    "maximum-recipients",
                    "must be at least 1 (RFC 5321 §4.5.3.1.8 asks for 100)",
                );
            }
            r.maximum_recipients = m.value.max(1);
        }
        r.aliases = raw
            .aliases
            .into_iter()
            .map(|a| a.value.to_ascii_lowercase())
            .collect();
        r.command_timeout = raw
            .command_timeout
            .map(Duration::from_secs)
            .unwrap_or(r.command_timeout);
        r.data_timeout = raw
            .data_timeout
            .map(Duration::from_secs)
            .unwrap_or(r.data_timeout);
        r.maximum_sessions = raw.maximum_sessions.unwrap_or(r.maximum_sessions);
        for s in &raw.allowed_senders {
            let v = s.value.trim().to_ascii_lowercase();
            if !v.contains('@') || v.contains(' ') {
                self.err(
                    &s.referenced,
                    "allowed-senders",
                    format!("`{}`: expected user@domain, @domain or *@domain", s.value),
                );
            }
            r.allowed_senders
                .push(v.trim_start_matches('*').to_string());
        }
        r.maximum_sessions_per_client = raw
            .maximum_sessions_per_client
            .unwrap_or(r.maximum_sessions_per_client);
        r.maximum_connections_per_minute = raw
            .maximum_connections_per_minute
            .unwrap_or(r.maximum_connections_per_minute);
        if let Some(b) = raw.bare_line_endings {
            match b.value.as_str() {
                "reject" => {}
                "accept" => r.accept_bare_line_endings = true,
                other => self.err(
                    &b.referenced,
                    "bare-line-endings",
                    format!("`{other}`: expected reject or accept"),
                ),
            }
        }
        r.require_tls = raw.require_tls.as_ref().is_some_and(|b| b.value);
        match (raw.tls_certificate, raw.tls_key) {
            (Some(c), Some(k)) => {
                for (p, key) in [(&c, "tls-certificate"), (&k, "tls-key")] {
                    if std::fs::metadata(base.join(&p.value)).is_err() {
                        self.err(&p.referenced, key, format!("`{}`: no such file", p.value));
                    }
                }
                r.tls_certificate = Some(base.join(c.value));
                r.tls_key = Some(base.join(k.value));
            }
            (Some(one), None) | (None, Some(one)) => {
                self.err(
                    &one.referenced,
                    "tls-certificate",
                    "tls-certificate and tls-key go together",
                );
            }
            (None, None) => {}
        }
        if let Some(l) = raw.implicit_tls_listen {
            match l.value.parse() {
                Ok(a) if r.tls_certificate.is_some() => r.implicit_tls_listen = Some(a),
                Ok(_) => self.err(
                    &l.referenced,
                    "implicit-tls-listen",
                    "needs tls-certificate and tls-key",
                ),
                Err(_) => self.err(
                    &l.referenced,
                    "implicit-tls-listen",
                    "must be IP:PORT, e.g. 127.0.0.1:4650",
                ),
            }
        }
        if let Some(req) = raw
            .require_tls
            .filter(|b| b.value && r.tls_certificate.is_none())
        {
            self.err(
                &req.referenced,
                "require-tls",
                "needs tls-certificate and tls-key",
            );
        }
        if let Some(f) = &raw.auth_users_file {
            if r.tls_certificate.is_none() {
                self.err(
                    &f.referenced,
                    "auth-users-file",
                    "needs tls-certificate and tls-key (RFC 4954 §4: no passwords in clear text)",
                );
            }
            r.auth_users = self.auth_users(&base.join(&f.value), &f.referenced);
        }
        r.require_auth = raw.require_auth.as_ref().is_some_and(|b| b.value);
        r.implicit_tls_require_auth = raw
            .implicit_tls_require_auth
            .as_ref()
            .map_or(r.require_auth, |b| b.value);
        for (flag, key) in [
            (&raw.require_auth, "require-auth"),
            (&raw.implicit_tls_require_auth, "implicit-tls-require-auth"),
        ] {
            if let Some(b) = flag
                .as_ref()
                .filter(|b| b.value && raw.auth_users_file.is_none())
            {
                self.err(&b.referenced, key, "needs auth-users-file");
            }
        }
        r
    }

    /// Read an AUTH users file: one `user:hash` per line (further `:` fields ignored, as in
    /// `/etc/shadow` or Dovecot's passwd-file), `#` comments and blank lines skipped. The hash
    /// is SHA-crypt, `$6$` (SHA-512) or `$5$` (SHA-256), with or without `rounds=N$`. Errors
    /// name the users file and line (the password is never repeated).
    fn auth_users(
        &mut self,
        path: &Path,
        at: &Location,
    ) -> std::collections::BTreeMap<String, String> {
        let mut users = std::collections::BTreeMap::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.err(at, "auth-users-file", format!("`{}`: {e}", path.display()));
                return users;
            }
        };
        let file = path.display().to_string();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split(':');
            let user = fields.next().unwrap_or_default();
            let hash = fields.next().unwrap_or_default();
            let problem = if user.is_empty() {
                Some("expected user:hash".to_string())
            } else if !(hash.starts_with("$6$") || hash.starts_with("$5$")) {
                Some(format!(
                    "user `{user}`: the hash must be SHA-crypt ($6$ or $5$, e.g. from `openssl passwd -6`)"
                ))
            } else if users.contains_key(user) {
                Some(format!("user `{user}` is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => self.errors.push(ConfigError {
                    file: file.clone(),
                    line: i as u64 + 1,
                    column: 1,
                    key: "auth-users-file".into(),
                    message,
                }),
                None => {
                    users.insert(user.to_string(), hash.to_string());
                }
            }
        }
        if users.is_empty() && !self.errors.iter().any(|e| e.file == file) {
            self.err(
                at,
                "auth-users-file",
                format!("`{}`: no users", path.display()),
            );
        }
        users
    }

    fn mta_send(&mut self, raw: RawMtaSend) -> MtaSend {
        if raw.server.is_empty() {
            self.err(
                &raw.mail_from.referenced,
                "server",
                "at least one smarthost is needed",
            );
        }
        let mut servers = Vec::new();
        for s in raw.server {
            let v = s.value.trim().to_string();
            if v.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                self.err(
                    &s.referenced,
                    "server",
                    "must be HOST:PORT, e.g. 127.0.0.1:25",
                );
            }
            servers.push(v);
        }
        let mail_from = raw.mail_from.value.trim().to_string();
        if !is_addr(&mail_from) {
            self.err(
                &raw.mail_from.referenced,
                "mail-from",
                "must be an address local@domain",
            );
        }
        let return_receipt_to = match raw.return_receipt_to {
            Some(r) => {
                if !is_addr(r.value.trim()) {
                    self.err(
                        &r.referenced,
                        "return-receipt-to",
                        "must be an address local@domain",
                    );
                }
                r.value.trim().to_string()
            }
            None => mail_from.clone(),
        };
        let initial = raw.retry_initial.as_ref().map(|r| r.value).unwrap_or(5);
        let maximum = raw.retry_maximum.unwrap_or(600);
        let initial_at = raw
            .retry_initial
            .as_ref()
            .map(|r| r.referenced)
            .unwrap_or(raw.mail_from.referenced);
        if initial == 0 || initial > maximum {
            self.err(
                &initial_at,
                "retry-initial",
                format!("must be between 1 and retry-maximum ({maximum}) seconds"),
            );
        }
        MtaSend {
            servers,
            mail_from,
            return_receipt_to,
            subject: raw
                .subject
                .unwrap_or_else(|| "Incoming Fax[DNIS=$d$][ANI=$s$]".into()),
            retry_initial: Duration::from_secs(initial),
            retry_maximum: Duration::from_secs(raw.retry_maximum.unwrap_or(600)),
            give_up_after: Duration::from_secs(raw.give_up_after.unwrap_or(5 * 86400)),
            connect_timeout: Duration::from_secs(raw.connect_timeout.unwrap_or(30)),
            report_deadline: Duration::from_secs(raw.report_deadline.unwrap_or(172_800)),
        }
    }

    fn pattern(&mut self, raw: &S<String>) -> Option<DestinationPattern> {
        match DestinationPattern::parse(raw.value.trim()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(
                    &raw.referenced,
                    "destination-pattern",
                    format!("`{}`: {e}", raw.value),
                );
                None
            }
        }
    }

    fn encoding(&mut self, raw: Option<S<String>>) -> Encoding {
        let Some(raw) = raw else { return Encoding::Mh };
        match raw.value.as_str() {
            "mh" => Encoding::Mh,
            "mr" => Encoding::Mr,
            "mmr" => Encoding::Mmr,
            "passthrough" => Encoding::Passthrough,
            other => {
                self.err(
                    &raw.referenced,
                    "image-encoding",
                    format!("`{other}`: expected mh, mr, mmr or passthrough"),
                );
                Encoding::Mh
            }
        }
    }

    fn resolution(&mut self, raw: Option<S<String>>) -> Resolution {
        let Some(raw) = raw else {
            return Resolution::Fine;
        };
        match raw.value.as_str() {
            "standard" => Resolution::Standard,
            "fine" => Resolution::Fine,
            "superfine" => Resolution::Superfine,
            "passthrough" => Resolution::Passthrough,
            other => {
                self.err(
                    &raw.referenced,
                    "image-resolution",
                    format!("`{other}`: expected standard, fine, superfine or passthrough"),
                );
                Resolution::Fine
            }
        }
    }

    fn onramp_peer(&mut self, raw: RawOnrampPeer) -> Option<OnrampPeer> {
        let pattern = self.pattern(&raw.destination_pattern);
        let target = raw.session_target.value.trim();
        let unknown_token = target
            .split('$')
            .skip(1)
            .step_by(2)
            .find(|tok| !matches!(*tok, "d" | "s" | "t"))
            .map(str::to_string);
        if let Some(tok) = &unknown_token {
            self.err(
                &raw.session_target.referenced,
                "session-target",
                format!("unknown template token `${tok}$`: use $d$ (DNIS), $s$ (ANI) or $t$ (TSI)"),
            );
        }
        let mailto = match target.strip_prefix("mailto:") {
            Some(t) if t.contains('@') => Some(t.to_string()),
            _ => {
                self.err(
                    &raw.session_target.referenced,
                    "session-target",
                    format!("`{target}`: expected mailto:LOCAL@DOMAIN (with $d$ for the DNIS)"),
                );
                None
            }
        };
        let mut dsn = DsnRequest {
            success: true,
            failure: true,
            delay: true,
        };
        if let Some(list) = raw.dsn {
            dsn = DsnRequest::default();
            if list.len() > 1 {
                if let Some(never) = list.iter().find(|i| i.value.eq_ignore_ascii_case("never")) {
                    self.err(
                        &never.referenced,
                        "dsn",
                        "`never` cannot be combined with other values (RFC 3461 §4.1)",
                    );
                }
            }
            for item in list {
                match item.value.to_ascii_lowercase().as_str() {
                    "success" => dsn.success = true,
                    "failure" => dsn.failure = true,
                    "delay" => dsn.delay = true,
                    "never" => {}
                    other => self.err(
                        &item.referenced,
                        "dsn",
                        format!("`{other}`: expected success, failure, delay or never"),
                    ),
                }
            }
        }
        let message_type = match raw.message_type {
            None => MessageType::FaxMessage,
            Some(m) => match m.value.as_str() {
                "fax-message" => MessageType::FaxMessage,
                "mixed" => MessageType::Mixed,
                other => {
                    self.err(
                        &m.referenced,
                        "message-type",
                        format!("`{other}`: expected fax-message or mixed"),
                    );
                    MessageType::FaxMessage
                }
            },
        };
        let bilevel = match raw.dithering {
            None => Bilevel::FloydSteinberg,
            Some(d) => match d.value.as_str() {
                "floyd-steinberg" => Bilevel::FloydSteinberg,
                "threshold" => Bilevel::Threshold(128),
                other => {
                    self.err(
                        &d.referenced,
                        "dithering",
                        format!("`{other}`: expected floyd-steinberg or threshold"),
                    );
                    Bilevel::FloydSteinberg
                }
            },
        };
        let encoding = self.encoding(raw.image_encoding);
        let resolution = self.resolution(raw.image_resolution);
        Some(OnrampPeer {
            name: raw.name,
            destination_pattern: pattern?,
            mailto: mailto?,
            preference: raw.preference,
            dsn,
            mdn: raw.mdn,
            message_type,
            encoding,
            resolution,
            bilevel,
        })
    }

    fn offramp_peer(&mut self, raw: RawOfframpPeer, backends: &[Backend]) -> Option<OfframpPeer> {
        let pattern = self.pattern(&raw.destination_pattern);
        let t = raw.session_target.value.trim();
        let target = if t == "reject" {
            Some(OfframpTarget::Reject)
        } else if backends.iter().any(|b| b.name == t) {
            Some(OfframpTarget::Backend(t.to_string()))
        } else {
            self.err(
                &raw.session_target.referenced,
                "session-target",
                format!("`{t}`: no fax backend of that name (or `reject`)"),
            );
            None
        };
        let encoding = self.encoding(raw.image_encoding);
        let resolution = self.resolution(raw.image_resolution);
        Some(OfframpPeer {
            name: raw.name,
            destination_pattern: pattern?,
            target: target?,
            preference: raw.preference,
            encoding,
            resolution,
        })
    }

    fn backend(&mut self, raw: RawBackend, base: &Path) -> Option<Backend> {
        let kind = match raw.kind.value.as_str() {
            "spool-directory" => match raw.path {
                Some(p) => BackendKind::SpoolDirectory {
                    path: base.join(p.value),
                    simulate_line: raw.simulate_line,
                    result_wait: Duration::from_secs(raw.result_wait.unwrap_or(0)),
                },
                None => {
                    self.err(
                        &raw.kind.referenced,
                        "path",
                        "a spool-directory backend needs `path`",
                    );
                    return None;
                }
            },
            "command" => match raw.command {
                Some(argv) if !argv.is_empty() => BackendKind::Command { argv },
                _ => {
                    self.err(
                        &raw.kind.referenced,
                        "command",
                        "a command backend needs `command: [program, args...]`",
                    );
                    return None;
                }
            },
            other => {
                self.err(
                    &raw.kind.referenced,
                    "type",
                    format!("`{other}`: expected spool-directory or command"),
                );
                return None;
            }
        };
        Some(Backend {
            name: raw.name,
            kind,
        })
    }
}

fn is_addr(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && !d.is_empty() && !s.contains(' ') && !s.contains('<'),
        None => false,
    }
}

/// Expand a Cisco `mailto:` template: `$d$` = DNIS, `$s$` = ANI.
pub fn expand_template(template: &str, dnis: &str, ani: &str, tsi: &str) -> String {
    template
        .replace("$d$", dnis)
        .replace("$s$", ani)
        .replace("$t$", tsi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid() {
        let c = Config::parse(SHIPPED_CONFIG, "gateway.yaml", Path::new("")).unwrap();
        assert_eq!(c.mta_receive.listen.to_string(), "127.0.0.1:2525");
        let peer = c.onramp_peer("12025551234").unwrap();
        assert!(peer.mailto.starts_with("FAX=+$d$@"));
        assert!(c.offramp_peer("+12025551234").is_some());
    }

    #[test]
    fn auth_users_file_needs_tls_and_sha_crypt_hashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
        std::fs::write(dir.path().join("key.pem"), "x").unwrap();
        // Hashes from `openssl passwd -6 -salt saltsalt secret` and `openssl passwd -5 ...`.
        std::fs::write(
            dir.path().join("users"),
            "# fax senders\n\
             fax:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1:19000::\n\
             ops:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA\n",
        )
        .unwrap();
        let with = |extra: &str| {
            SHIPPED_CONFIG.replace(
                "  allowed-senders: []\n",
                &format!("  allowed-senders: []\n{extra}"),
            )
        };
        let tls = "  tls-certificate: cert.pem\n  tls-key: key.pem\n";
        let ok = with(&format!(
            "{tls}  auth-users-file: users\n  require-auth: true\n"
        ));
        let c = Config::parse(&ok, "g.yaml", dir.path()).unwrap();
        let users: Vec<_> = c.mta_receive.auth_users.keys().cloned().collect();
        assert_eq!(users, ["fax", "ops"]);
        assert!(c.mta_receive.require_auth && c.mta_receive.implicit_tls_require_auth);

        let no_tls = with("  auth-users-file: users\n");
        let errs = Config::parse(&no_tls, "g.yaml", dir.path()).unwrap_err();
        assert_eq!(errs.0[0].key, "auth-users-file");
        assert!(errs.0[0].message.contains("tls-certificate"), "{errs}");

        let no_users = with(&format!("{tls}  require-auth: true\n"));
        let errs = Config::parse(&no_users, "g.yaml", dir.path()).unwrap_err();
        assert_eq!(
            (errs.0[0].key.as_str(), errs.0[0].message.as_str()),
            ("require-auth", "needs auth-users-file")
        );

        std::fs::write(
            dir.path().join("users"),
            "fax:$1$md5salt$notsupported\nfax2:secret\n",
        )
        .unwrap();
        let errs = Config::parse(&ok, "g.yaml", dir.path()).unwrap_err();
        let lines: Vec<_> = errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            lines,
            [(1, "auth-users-file"), (2, "auth-users-file")],
            "{errs}"
        );
        assert!(errs.0[0].file.ends_with("users"), "{errs}");
        assert!(!errs.to_string().contains("secret"), "{errs}");
    }

    #[test]
    fn misspelt_key_names_line_and_key() {
        let bad = SHIPPED_CONFIG.replacen("destination-pattern:", "destination-patern:", 1);
        let errs = Config::parse(&bad, "g.yaml", Path::new("")).unwrap_err();
        let e = &errs.0[0];
        assert_eq!(e.key, "destination-patern");
        let line = bad
            .lines()
            .position(|l| l.contains("destination-patern"))
            .unwrap() as u64
            + 1;
        assert_eq!(e.line, line, "{e}");
    }

    /// An unclosed `[`: the error names the line that opened it, not the later line where the
    /// parser stopped.
    #[test]
    fn unclosed_flow_sequence_names_its_line() {
        let bad = SHIPPED_CONFIG.replacen("aliases: []", "aliases: [a.example, b.example", 1);
        assert_ne!(bad, SHIPPED_CONFIG);
        let errs = Config::parse(&bad, "g.yaml", Path::new("")).unwrap_err();
        let e = &errs.0[0];
        let want = bad.lines().position(|l| l.contains("aliases: [a")).unwrap() as u64 + 1;
        assert_eq!((e.key.as_str(), e.line), ("aliases", want), "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        // A flow sequence over several lines, closed later, is not taken for one.
        let ok = SHIPPED_CONFIG.replacen("aliases: []", "aliases: [\n    a.example,\n  ]", 1);
        assert!(Config::parse(&ok, "g.yaml", Path::new("")).is_ok());
    }

    /// A value of the wrong type is named in the file's words, not the parser's type names.
    #[test]
    fn wrong_number_type_is_said_in_plain_words() {
        let key = "maximum-recipients:";
        let at = SHIPPED_CONFIG
            .find(key)
            .expect("shipped config has the key");
        let end = at + SHIPPED_CONFIG[at..].find('\n').unwrap();
        let bad = format!(
            "{}{key} lots{}",
            &SHIPPED_CONFIG[..at],
            &SHIPPED_CONFIG[end..]
        );
        let errs = Config::parse(&bad, "g.yaml", Path::new("")).unwrap_err();
        let e = &errs.0[0];
        assert_eq!(e.key, "maximum-recipients", "{e}");
        assert_eq!(e.message, "expected a whole number, 0 or more", "{e}");
    }

    /// A key indented one column less than the key before it: the error names that key and
    /// its line, not the field the parser then misses.
    #[test]
    fn misindented_key_is_named() {
        let bad = SHIPPED_CONFIG.replacen("  hostname:", "   hostname:", 1);
        assert_ne!(bad, SHIPPED_CONFIG);
        let errs = Config::parse(&bad, "g.yaml", Path::new("")).unwrap_err();
        let e = &errs.0[0];
        let want = bad
            .lines()
            .position(|l| l.starts_with("  domain:"))
            .unwrap() as u64
            + 1;
        assert_eq!(
            (e.key.as_str(), e.line, e.column),
            ("domain", want, 3),
            "{e}"
        );
        assert!(e.message.contains("column 4"), "{e}");
    }

    #[test]
    fn bad_pattern_names_line_and_key() {
        let bad = SHIPPED_CONFIG.replacen(
            "destination-pattern: \"T\"",
            "destination-pattern: \"55[12\"",
            1,
        );
        assert_ne!(bad, SHIPPED_CONFIG);
        let errs = Config::parse(&bad, "g.yaml", Path::new("")).unwrap_err();
        let e = &errs.0[0];
        assert_eq!(e.key, "destination-pattern");
        let line = bad.lines().position(|l| l.contains("55[12")).unwrap() as u64 + 1;
        assert_eq!(e.line, line, "{e}");
    }
}
