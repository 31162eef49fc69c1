//! The SMTP session state machine (RFC 5321 §4.1, §4.3.2), without I/O: a command line in,
//! replies and what to do next out. Order and syntax are checked here, before the
//! [`Backend`] is asked anything.

use super::auth::{self, Sasl, Step};
use super::proto::DataFlaws;
use super::reply::Offer;
use super::sink::Body;
use super::{Backend, BareLineEnding, Envelope, ListenerConfig, Notify, Recipient, Reply, Ret};
use smtp_proto::{Error as ParseError, MailFrom, RcptTo, Request};
use std::sync::Arc;

/// RFC 5321 §4.5.3.1.1: a local-part is at most 64 octets.
pub(crate) const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
pub(crate) const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
pub(crate) const MAX_PATH: usize = 256;

/// What the connection does after sending [`Output::replies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next command.
    Command,
    /// 354 was sent: read the DATA block, then call [`Session::data_end`].
    Data,
    /// Read a BDAT chunk of `size` octets (RFC 3030 §2), then call [`Session::chunk_end`].
    Chunk { size: u64, last: bool },
    /// 220 was sent to STARTTLS: drop buffered input, run the TLS handshake, then call
    /// [`Session::tls_started`] (RFC 3207 §4.2).
    StartTls,
    /// Close the connection.
    Close,
}

/// The answer to one command.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) replies: Vec<Reply>,
    pub(crate) next: Next,
}

/// Where the session is in RFC 5321 §4.1.4's command order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No EHLO/HELO yet.
    Connected,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted, no recipient accepted yet.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
}

/// One SMTP session's state.
#[derive(Debug)]
pub(crate) struct Session {
    config: Arc<ListenerConfig>,
    state: State,
    envelope: Envelope,
    errors: usize,
    /// TLS is up (after STARTTLS, or from the start with implicit TLS).
    tls: bool,
    /// An AUTH exchange waiting for the client's next line.
    sasl: Option<Sasl>,
    /// Transactions that reached their final reply.
    messages: usize,
    /// BDAT chunks were accepted in this transaction (DATA is then out of order, RFC 3030 §3).
    chunking: bool,
    /// What the BDAT chunk being read gets: `Ok(last)` to keep it, or the refusal sent after
    /// it.
    chunk: Option<Result<bool, Reply>>,
    /// The octets of this transaction's BDAT chunks, verbatim, at most `max_message_size`:
    /// streamed to the backend's spool file ([`Backend::open_message`]) or kept in memory.
    chunks: Body,
}

/// ESMTP parameters of MAIL we parse but do not offer in EHLO; RFC 5321 §4.1.1.11 → 555.
const MAIL_UNOFFERED: u64 = smtp_proto::MAIL_BODY_BINARYMIME
    | smtp_proto::MAIL_SMTPUTF8
    | smtp_proto::MAIL_REQUIRETLS
    | smtp_proto::MAIL_CONPERM
    | smtp_proto::MAIL_BY_NOTIFY
    | smtp_proto::MAIL_BY_RETURN
    | smtp_proto::MAIL_BY_TRACE;

impl Session {
    /// The transaction's envelope so far (all recipients known once DATA is accepted).
    pub(crate) fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// A new session for the peer `client_addr` (`ip:port`).
    /// `tls`: the connection is already encrypted (implicit TLS).
    pub(crate) fn new(config: Arc<ListenerConfig>, client_addr: String, tls: bool) -> Session {
        Session {
            config,
            state: State::Connected,
            envelope: Envelope {
                client_addr,
                tls,
                ..Envelope::default()
            },
            errors: 0,
            tls,
            sasl: None,
            messages: 0,
            chunking: false,
            chunk: None,
            chunks: Body::default(),
        }
    }

    /// True while an AUTH exchange waits for a response line (longer limit, RFC 4954 §4).
    pub(crate) fn in_sasl(&self) -> bool {
        self.sasl.is_some()
    }

    /// AUTH is offered: enabled, and only over TLS (RFC 4954 §4, §14).
    fn auth_enabled(&self) -> bool {
        self.config.auth || self.config.require_auth
    }

    fn offer(&self) -> Offer {
        Offer {
            max_size: self.config.max_message_size,
            starttls: self.config.tls.is_some() && !self.tls,
            auth: self.auth_enabled() && self.tls,
        }
    }

    /// The 220 greeting (RFC 5321 §4.2, §3.1; no enhanced code, RFC 2034 §3).
    pub(crate) fn greeting(&self) -> Reply {
        Reply::greeting(&self.config.hostname)
    }

    fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// Answer for a command line longer than its limit (RFC 5321 §4.5.3.1.4, §4.2.2 → 500);
    /// inside an AUTH exchange the exchange fails with `500 5.5.6` (RFC 4954 §4).
    pub(crate) fn line_too_long(&mut self) -> Output {
        if self.sasl.take().is_some() {
            return self.finish(Reply::auth_line_too_long(), Next::Command);
        }
        self.finish(Reply::line_too_long(), Next::Command)
    }

    /// Handle one command line (with its line ending).
    pub(crate) fn command<B: Backend>(&mut self, line: &[u8], backend: &B) -> Output {
        let Some(body) = line.strip_suffix(b"\n") else {
            return self.finish(Reply::bad_command_octet(), Next::Command);
        };
        let crlf = body.ends_with(b"\r");
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().any(|&b| b == b'\r' || b == 0) {
            self.sasl = None;
            return self.finish(Reply::bad_command_octet(), Next::Command);
        }
        if !crlf && self.config.command_bare_lf == BareLineEnding::Reject {
            self.sasl = None;
            return self.finish(Reply::bare_lf_command(), Next::Command);
        }
        if let Some(state) = self.sasl.take() {
            let text = String::from_utf8_lossy(body);
            let step = auth::respond(state, &text);
            return self.auth_step(step, backend);
        }
        // smtp-proto wants the CRLF form.
        let mut owned;
        let line = if crlf {
            line
        } else {
            owned = body.to_vec();
            owned.extend_from_slice(b"\r\n");
            &owned[..]
        };
        // smtp-proto has no address literals (RFC 5321 §4.1.3): a sender at one is parsed with
        // a placeholder domain in its place, swapped back after.
        let literal = sender_address_literal(line);
        // Nor the domain-less `RCPT TO:<Postmaster>` that every server must accept (RFC 5321
        // §4.1.1.3, §4.5.1): parsed with a placeholder domain, taken off after.
        let postmaster = bare_postmaster(line);
        let masked;
        let parsed = match (literal, postmaster) {
            (Some((start, end)), _) => {
                masked = [&line[..start], LITERAL_PLACEHOLDER.as_bytes(), &line[end..]].concat();
                Request::parse(&mut masked.iter())
            }
            (None, Some(end)) => {
                let domain = format!("@{LITERAL_PLACEHOLDER}");
                masked = [&line[..end], domain.as_bytes(), &line[end..]].concat();
                Request::parse(&mut masked.iter())
            }
            (None, None) => Request::parse(&mut line.iter()),
        };
        let mut request = match parsed {
            Ok(request) => request,
            Err(error) => return self.finish(parse_error_reply(&error), Next::Command),
        };
        if let (Some(_), Request::Rcpt { to }) = (postmaster, &mut request) {
            match to.address.strip_suffix(&format!("@{LITERAL_PLACEHOLDER}")) {
                Some(local) => to.address = local.to_string().into(),
                None => return self.finish(Reply::bad_recipient_syntax(), Next::Command),
            }
        }
        if let (Some((start, end)), Request::Mail { from }) = (literal, &mut request) {
            let text = String::from_utf8_lossy(&line[start..end]);
            match from.address.strip_suffix(LITERAL_PLACEHOLDER) {
                Some(local) => from.address = format!("{local}{text}").into(),
                None => return self.finish(Reply::bad_sender_syntax(), Next::Command),
            }
        }
        let (reply, next) = match request {
            Request::Ehlo { host } | Request::Helo { host } if !is_printable(&host) => {
                (Reply::syntax("invalid domain"), Next::Command)
            }
            Request::Ehlo { host } => {
                self.greet(&host);
                let r = Reply::ehlo(self.hostname(), &host, &self.offer());
                (r, Next::Command)
            }
            Request::Helo { host } => {
                self.greet(&host);
                (Reply::helo(self.hostname()), Next::Command)
            }
            Request::Mail { .. } if self.messages >= self.config.max_messages_per_session => {
                (Reply::too_many_messages(self.hostname()), Next::Close)
            }
            Request::Mail { from } => (self.mail(from, backend), Next::Command),
            Request::Rcpt { to } => (self.rcpt(to, backend), Next::Command),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(chunk_size as u64, is_last, backend),
            Request::StartTls => self.starttls(line),
            Request::Auth {
                mechanism,
                initial_response,
            } => match self.auth_allowed() {
                Err(reply) => (reply, Next::Command),
                Ok(()) => {
                    return self.auth_step(auth::start(mechanism, &initial_response), backend)
                }
            },
            Request::Rset => {
                self.reset();
                (Reply::ok(), Next::Command)
            }
            Request::Noop { .. } => (Reply::ok(), Next::Command),
            Request::Quit => (Reply::bye(self.hostname()), Next::Close),
            Request::Vrfy { .. } => (Reply::vrfy(), Next::Command),
            Request::Help { .. } => (Reply::help(), Next::Command),
            // LHLO is LMTP (RFC 2033), not a command of this service.
            Request::Lhlo { .. } => (Reply::unknown_command(), Next::Command),
            // EXPN and the extensions we do not offer: recognized, not implemented
            // (RFC 5321 §4.2.4, §3.5.3 → 502).
            Request::Expn { .. }
            | Request::Burl { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. } => (Reply::not_implemented(), Next::Command),
        };
        self.finish(reply, next)
    }

    /// Count a negative reply; past `max_errors` add `421 4.7.0` and close. `452 4.5.3` for
    /// recipients past the limit is not an error of the client's: RFC 5321 §4.5.3.1.10 has the
    /// client send those recipients in a later transaction after this one's DATA, so the
    /// session must go on however many of them a client sends.
    fn finish(&mut self, reply: Reply, next: Next) -> Output {
        let mut replies = vec![reply];
        let mut next = next;
        let over_recipient_limit =
            replies[0].code == 452 && replies[0].enhanced.as_deref() == Some("4.5.3");
        if replies[0].is_negative() && !over_recipient_limit {
            self.errors += 1;
            if self.errors >= self.config.max_errors {
                replies.push(Reply::too_many_errors(self.hostname()));
                next = Next::Close;
            }
        }
        Output { replies, next }
    }

    /// STARTTLS (RFC 3207 §4): offered only with a certificate and before TLS is up.
    fn starttls(&self, line: &[u8]) -> (Reply, Next) {
        if self.config.tls.is_none() {
            return (Reply::not_implemented(), Next::Command);
        }
        if self.tls {
            return (Reply::bad_sequence("TLS already active"), Next::Command);
        }
        if matches!(self.state, State::Mail | State::Rcpt) {
            return (
                Reply::bad_sequence("mail transaction in progress"),
                Next::Command,
            );
        }
        let args = line.get(8..).unwrap_or_default();
        if args.iter().any(|b| !b.is_ascii_whitespace()) {
            return (Reply::starttls_syntax(), Next::Command);
        }
        (Reply::starttls_ready(), Next::StartTls)
    }

    /// TLS is up: forget everything learnt before it, EHLO included (RFC 3207 §4.2).
    pub(crate) fn tls_started(&mut self) {
        let client_addr = std::mem::take(&mut self.envelope.client_addr);
        self.envelope = Envelope {
            client_addr,
            tls: true,
            ..Envelope::default()
        };
        self.state = State::Connected;
        self.tls = true;
        self.sasl = None;
        self.chunking = false;
        self.chunk = None;
        self.chunks = Body::default();
    }

    /// Whether AUTH may start now (RFC 4954 §4).
    fn auth_allowed(&self) -> Result<(), Reply> {
        if !self.auth_enabled() {
            return Err(Reply::not_implemented());
        }
        if !self.tls {
            return Err(Reply::encryption_required());
        }
        match self.state {
            State::Connected => Err(Reply::bad_sequence("send EHLO first")),
            State::Mail | State::Rcpt => Err(Reply::bad_sequence("mail transaction in progress")),
            State::Ready if self.envelope.auth_user.is_some() => {
                Err(Reply::bad_sequence("already authenticated"))
            }
            State::Ready => Ok(()),
        }
    }

    fn auth_step<B: Backend>(&mut self, step: Step, backend: &B) -> Output {
        let reply = match step {
            Step::Challenge(reply, state) => {
                self.sasl = Some(state);
                return Output {
                    replies: vec![reply],
                    next: Next::Command,
                };
            }
            Step::Check(user, password) => {
                if backend.authenticate(&user, &password) {
                    self.envelope.auth_user = Some(user);
                    Reply::auth_ok()
                } else {
                    Reply::auth_failed()
                }
            }
            Step::Fail(reply) => reply,
        };
        self.finish(reply, Next::Command)
    }

    /// EHLO/HELO: record the name and reset any transaction (RFC 5321 §4.1.4).
    fn greet(&mut self, host: &str) {
        self.reset();
        self.envelope.helo = host.to_string();
        self.state = State::Ready;
    }

    /// Drop the transaction, keep helo, client address, TLS and AUTH (RSET, RFC 5321
    /// §4.1.1.5).
    fn reset(&mut self) {
        let helo = std::mem::take(&mut self.envelope.helo);
        let client_addr = std::mem::take(&mut self.envelope.client_addr);
        let auth_user = self.envelope.auth_user.take();
        self.envelope = Envelope {
            helo,
            client_addr,
            auth_user,
            tls: self.tls,
            ..Envelope::default()
        };
        self.chunking = false;
        self.chunks = Body::default();
        if self.state != State::Connected {
            self.state = State::Ready;
        }
    }

    fn mail<B: Backend>(
        &mut self,
        from: MailFrom<std::borrow::Cow<'_, str>>,
        backend: &B,
    ) -> Reply {
        match self.state {
            State::Connected => return Reply::bad_sequence("send EHLO or HELO first"),
            State::Mail | State::Rcpt => return Reply::bad_sequence("sender already given"),
            State::Ready => {}
        }
        if self.config.require_tls && !self.tls {
            return Reply::must_starttls();
        }
        if self.config.require_auth && self.envelope.auth_user.is_none() {
            return if self.tls {
                Reply::auth_required()
            } else {
                Reply::must_starttls()
            };
        }
        if !from.address.is_ascii() {
            return Reply::non_ascii_address();
        }
        if !path_fits(&from.address) {
            return Reply::sender_too_long();
        }
        if from.flags & MAIL_UNOFFERED != 0
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0
            || from.trans_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
        {
            return Reply::unsupported_parameter();
        }
        // RFC 1870 §6.3: a declared size over the fixed maximum is refused at once.
        if from.size > self.config.max_message_size {
            return Reply::too_big();
        }
        let ret = match (
            from.flags & smtp_proto::MAIL_RET_FULL != 0,
            from.flags & smtp_proto::MAIL_RET_HDRS != 0,
        ) {
            (false, false) => None,
            (true, false) => Some(Ret::Full),
            (false, true) => Some(Ret::Hdrs),
            (true, true) => return Reply::syntax("RET given twice"),
        };
        let body = match (
            from.flags & smtp_proto::MAIL_BODY_7BIT != 0,
            from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
        ) {
            (false, false) => None,
            (true, false) => Some("7BIT".to_string()),
            (false, true) => Some("8BITMIME".to_string()),
            (true, true) => return Reply::syntax("BODY given twice"),
        };
        // RFC 3461 §4.4: ENVID is printable (graphic) US-ASCII once xtext-decoded.
        if let Some(envid) = &from.env_id {
            if !envid.chars().all(|c| c.is_ascii_graphic()) {
                return Reply::syntax("invalid ENVID");
            }
        }
        self.envelope.mail_from = from.address.into_owned();
        self.envelope.ret = ret;
        self.envelope.envid = from.env_id.map(|e| e.into_owned());
        self.envelope.body = body;
        match backend.mail(&self.envelope) {
            Ok(()) => {
                self.state = State::Mail;
                Reply::sender_ok()
            }
            Err(reply) => {
                self.reset();
                reply.normalized()
            }
        }
    }

    fn rcpt<B: Backend>(&mut self, to: RcptTo<std::borrow::Cow<'_, str>>, backend: &B) -> Reply {
        match self.state {
            State::Connected | State::Ready => return Reply::bad_sequence("send MAIL first"),
            State::Mail | State::Rcpt => {}
        }
        if to.address.is_empty() {
            return Reply::bad_recipient_syntax();
        }
        if !to.address.is_ascii() {
            return Reply::non_ascii_address();
        }
        if !path_fits(&to.address) {
            return Reply::recipient_too_long();
        }
        if to.flags & (smtp_proto::RCPT_CONNEG | smtp_proto::RCPT_RRVS_REJECT) != 0
            || to.flags & smtp_proto::RCPT_RRVS_CONTINUE != 0
            || to.rrvs != 0
        {
            return Reply::unsupported_parameter();
        }
        let notify = match notify_from_flags(to.flags) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        // RFC 3461 §4.2: ORCPT is `addr-type ";" xtext`; smtp-proto accepts only `rfc822`
        // and hands back the decoded address without its type. A decoded control or
        // non-ASCII character is no rfc822 address.
        let orcpt = match &to.orcpt {
            Some(addr) if addr.chars().all(|c| (' '..='~').contains(&c)) => {
                Some(format!("rfc822;{addr}"))
            }
            Some(_) => return Reply::syntax("invalid ORCPT"),
            None => None,
        };
        // RFC 5321 §4.5.3.1.10: 452 for recipients past our limit.
        if self.envelope.rcpts.len() >= self.config.max_recipients {
            return Reply::too_many_recipients();
        }
        let recipient = Recipient {
            address: to.address.into_owned(),
            notify,
            orcpt,
        };
        match backend.rcpt(&self.envelope, &recipient) {
            Ok(()) => {
                self.envelope.rcpts.push(recipient);
                self.state = State::Rcpt;
                Reply::recipient_ok()
            }
            Err(reply) => reply.normalized(),
        }
    }

    fn data(&mut self) -> (Reply, Next) {
        match self.state {
            // RFC 3030 §3: DATA after BDAT in one transaction is out of order.
            State::Rcpt if self.chunking => (
                Reply::bad_sequence("BDAT in progress, DATA not allowed"),
                Next::Command,
            ),
            State::Rcpt => (Reply::start_data(), Next::Data),
            State::Connected | State::Ready => (
                Reply::bad_sequence("send MAIL and RCPT first"),
                Next::Command,
            ),
            // RFC 2920 §3.1 / RFC 5321 §3.3: no accepted recipient, no DATA.
            State::Mail => (Reply::bad_sequence("no valid recipients"), Next::Command),
        }
    }

    /// The DATA block ended with these `flaws`. Either way the transaction is over (RFC 5321
    /// §4.1.1.4); `Ok` carries the envelope to hand to [`Backend::data`] with the message,
    /// `Err` the refusal: oversize `552 5.3.4` (RFC 1870 §6.4), then a line over 1000 octets,
    /// a bare CR or LF (unless kept as data) or a NUL: `554 5.6.0`.
    pub(crate) fn data_end(&mut self, flaws: DataFlaws) -> Result<Envelope, Reply> {
        let envelope = self.envelope.clone();
        self.reset();
        self.messages += 1;
        let bare =
            flaws.bare_line_ending && self.config.data_bare_line_ending == BareLineEnding::Reject;
        if flaws.oversize {
            Err(Reply::too_big())
        } else if flaws.long_line {
            Err(Reply::data_line_too_long())
        } else if bare {
            Err(Reply::data_bare_line_ending())
        } else if flaws.nul {
            Err(Reply::data_nul())
        } else {
            Ok(envelope)
        }
    }

    /// BDAT (RFC 3030 §2): the chunk is always read (a refused one too); the reply comes
    /// after it from [`Session::chunk_end`].
    fn bdat<B: Backend>(&mut self, size: u64, last: bool, backend: &B) -> Output {
        let verdict = match self.state {
            State::Rcpt => Ok(last),
            State::Connected | State::Ready => Err(Reply::bad_sequence("send MAIL and RCPT first")),
            State::Mail => Err(Reply::bad_sequence("no valid recipients")),
        };
        if verdict.is_ok() {
            if !self.chunking {
                // The first chunk: the recipients are known, the message goes to the backend's
                // spool file from here on.
                self.chunks = Body::open(backend, &self.envelope);
            }
            self.chunking = true;
        }
        self.chunk = Some(verdict);
        Output {
            replies: Vec::new(),
            next: Next::Chunk { size, last },
        }
    }

    /// Octets of the chunk being read that may be kept: none for a refused chunk, else what
    /// is left of `max_message_size`.
    pub(crate) fn chunk_room(&self) -> usize {
        match self.chunk {
            Some(Ok(_)) => self
                .config
                .max_message_size
                .saturating_sub(self.chunks.len()),
            _ => 0,
        }
    }

    /// Where the chunk's kept octets go.
    pub(crate) fn chunk_buffer(&mut self) -> &mut Body {
        &mut self.chunks
    }

    /// The chunk of `size` octets was read; `overflow`: it did not fit in
    /// [`Session::chunk_room`]. `Ok`: the last chunk, hand envelope and message to
    /// [`Backend::data`]. `Err`: the replies: `250 2.0.0` for a chunk that is not the last,
    /// `552 5.3.4` past the size limit, `503 5.5.1` out of order. A failed chunk ends the
    /// transaction (RFC 3030 §2), so chunks pipelined behind it get `503 5.5.1`.
    pub(crate) fn chunk_end(
        &mut self,
        size: u64,
        overflow: bool,
    ) -> Result<(Envelope, Body), Output> {
        let last = match self.chunk.take() {
            Some(Ok(last)) => last,
            Some(Err(reply)) => return Err(self.finish(reply, Next::Command)),
            None => return Err(self.finish(Reply::local_error(), Next::Command)),
        };
        if overflow {
            self.reset();
            self.messages += 1;
            return Err(self.finish(Reply::too_big(), Next::Command));
        }
        if !last {
            return Err(self.finish(Reply::chunk_ok(size), Next::Command));
        }
        let envelope = self.envelope.clone();
        let message = std::mem::take(&mut self.chunks);
        self.reset();
        self.messages += 1;
        Ok((envelope, message))
    }

    /// `421 4.4.2` when the session ran past `max_session_time`.
    pub(crate) fn session_time_reply(&self) -> Reply {
        Reply::session_too_long(self.hostname())
    }

    /// `421 4.4.2` for a read that timed out (RFC 5321 §4.5.3.2, RFC 3463 X.4.2).
    pub(crate) fn timeout_reply(&self) -> Reply {
        Reply::timeout(self.hostname())
    }

    /// `421 4.3.2` when the service stops (RFC 5321 §3.8, RFC 3463 X.3.2).
    pub(crate) fn shutdown_reply(&self) -> Reply {
        Reply::shutting_down(self.hostname())
    }
}

/// RFC 5321 §4.5.3.1.1-3: local-part ≤ 64, domain ≤ 255, path (with `<>`) ≤ 256 octets.
fn path_fits(address: &str) -> bool {
    if address.len() + 2 > MAX_PATH {
        return false;
    }
    match address.rsplit_once('@') {
        Some((local, domain)) => local.len() <= MAX_LOCAL_PART && domain.len() <= MAX_DOMAIN,
        None => address.len() <= MAX_LOCAL_PART,
    }
}

/// Stands in for an address literal while smtp-proto parses the line (`.invalid`, RFC 2606, so
/// it is never anyone's domain; no address literal can contain it).
const LITERAL_PLACEHOLDER: &str = "address-literal.invalid";

/// Where the address literal of a `MAIL FROM:<local@[literal]>` line is (the octets from `[`
/// to `]`), when the line is a MAIL command whose reverse-path ends in an IPv4 or IPv6 address
/// literal of RFC 5321 §4.1.3 (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, addresses `std::net`
/// parses). `None` for anything else, which smtp-proto then parses (and refuses) as it is; that
/// includes General-address-literals (`[tag:content]`: no tag but IPv6 is registered, and
/// delivery status notifications could not be addressed to one).
fn sender_address_literal(line: &[u8]) -> Option<(usize, usize)> {
    let head = line.get(..10)?;
    if !head.eq_ignore_ascii_case(b"MAIL FROM:") {
        return None;
    }
    let open = line.iter().position(|&b| b == b'<')?;
    let close = open + line[open..].iter().position(|&b| b == b'>')?;
    let path = &line[open + 1..close];
    let at = path.iter().rposition(|&b| b == b'@')?;
    let lit = &path[at + 1..];
    let inner = lit.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let inner = std::str::from_utf8(inner).ok()?;
    let valid = match inner.split_once(':') {
        None => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        Some((tag, rest)) if tag.eq_ignore_ascii_case("IPv6") => {
            rest.parse::<std::net::Ipv6Addr>().is_ok()
        }
        Some(_) => false,
    };
    let start = open + 1 + at + 1;
    valid.then_some((start, start + lit.len()))
}

/// Where the local part of a `RCPT TO:<Postmaster>` line ends (the offset of its `>`), when the
/// forward-path is the bare, domain-less `Postmaster` (any case) of RFC 5321 §4.1.1.3; `None`
/// for anything else.
fn bare_postmaster(line: &[u8]) -> Option<usize> {
    let head = line.get(..8)?;
    if !head.eq_ignore_ascii_case(b"RCPT TO:") {
        return None;
    }
    let open = 8 + line[8..].iter().position(|&b| b != b' ')?;
    let path = line.get(open..open + 12)?;
    path.eq_ignore_ascii_case(b"<postmaster>")
        .then_some(open + 11)
}

/// RFC 5321 §4.1.1.1 / §4.1.3: a domain or address literal is printable US-ASCII.
fn is_printable(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_graphic())
}

/// NOTIFY flags → [`Notify`]; `NEVER` with anything else is a syntax error (RFC 3461 §4.1).
fn notify_from_flags(flags: u64) -> Result<Option<Notify>, Reply> {
    let never = flags & smtp_proto::RCPT_NOTIFY_NEVER != 0;
    let notify = Notify {
        success: flags & smtp_proto::RCPT_NOTIFY_SUCCESS != 0,
        failure: flags & smtp_proto::RCPT_NOTIFY_FAILURE != 0,
        delay: flags & smtp_proto::RCPT_NOTIFY_DELAY != 0,
    };
    let any = notify.success || notify.failure || notify.delay;
    match (never, any) {
        (true, true) => Err(Reply::syntax("NOTIFY=NEVER cannot be combined")),
        (true, false) | (false, true) => Ok(Some(notify)),
        (false, false) => Ok(None),
    }
}

/// smtp-proto's parse errors → replies; its own texts are never sent.
fn parse_error_reply(error: &ParseError) -> Reply {
    match error {
        ParseError::UnknownCommand => Reply::unknown_command(),
        ParseError::InvalidSenderAddress => Reply::bad_sender_syntax(),
        ParseError::InvalidRecipientAddress => Reply::bad_recipient_syntax(),
        // RFC 5321 §4.1.1.11: parameters not recognized or not implemented.
        ParseError::UnsupportedParameter { .. } => Reply::unsupported_parameter(),
        ParseError::InvalidParameter { param } => Reply::syntax(&format!("invalid {param}")),
        ParseError::SyntaxError { syntax } => Reply::syntax(&format!("use {syntax}")),
        ParseError::NeedsMoreData { .. }
        | ParseError::ResponseTooLong
        | ParseError::InvalidResponse { .. } => Reply::syntax("malformed command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Accept;
    impl Backend for Accept {
        fn rcpt(&self, _: &Envelope, r: &Recipient) -> Result<(), Reply> {
            if r.address.ends_with("@gw.example.test") {
                Ok(())
            } else {
                Err(Reply::new(550, "5.7.1", "Relaying denied"))
            }
        }
        async fn data(&self, _: Envelope, _: Vec<u8>) -> Reply {
            Reply::new(250, "2.0.0", "queued")
        }
    }

    fn session() -> Session {
        let config = ListenerConfig {
            hostname: "gw.example.test".into(),
            max_message_size: 1000,
            max_recipients: 2,
            max_errors: 5,
            ..ListenerConfig::default()
        };
        Session::new(Arc::new(config), "127.0.0.1:1".into(), false)
    }

    fn say(s: &mut Session, line: &str) -> (u16, Option<String>, Next) {
        let out = s.command(format!("{line}\r\n").as_bytes(), &Accept);
        let r = &out.replies[0];
        (r.code, r.enhanced.clone(), out.next)
    }

    fn code(s: &mut Session, line: &str) -> String {
        let (c, e, _) = say(s, line);
        format!("{c} {}", e.unwrap_or_default())
    }

    #[test]
    fn order_is_enforced() {
        let mut s = session();
        assert_eq!(code(&mut s, "MAIL FROM:<a@b.example>"), "503 5.5.1");
        assert_eq!(code(&mut s, "RCPT TO:<x@gw.example.test>"), "503 5.5.1");
        assert_eq!(code(&mut s, "DATA"), "503 5.5.1");
        assert_eq!(code(&mut s, "EHLO c\x01.example"), "501 5.5.4");
        assert_eq!(code(&mut s, "EHLO c.example"), "250 ");
        assert_eq!(code(&mut s, "DATA"), "503 5.5.1");
        assert_eq!(code(&mut s, "MAIL FROM:<>"), "250 2.1.0");
        assert_eq!(code(&mut s, "MAIL FROM:<>"), "503 5.5.1");
        assert_eq!(code(&mut s, "DATA"), "503 5.5.1");
        assert_eq!(code(&mut s, "RCPT TO:<x@gw.example.test>"), "250 2.1.5");
        assert_eq!(say(&mut s, "DATA").2, Next::Data);
    }

    #[test]
    fn parameters_are_recorded() {
        let mut s = session();
        code(&mut s, "EHLO c.example");
        assert_eq!(
            code(
                &mut s,
                "MAIL FROM:<a@b.example> RET=HDRS ENVID=JOB+2B1 BODY=8BITMIME SIZE=10"
            ),
            "250 2.1.0"
        );
        assert_eq!(
            code(
                &mut s,
                "RCPT TO:<x@gw.example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;+2B1555@gw.example.test"
            ),
            "250 2.1.5"
        );
        let env = s.data_end(DataFlaws::default()).unwrap();
        assert_eq!(env.ret, Some(Ret::Hdrs));
        assert_eq!(env.envid.as_deref(), Some("JOB+1"));
        assert_eq!(env.body.as_deref(), Some("8BITMIME"));
        assert_eq!(env.helo, "c.example");
        let r = &env.rcpts[0];
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;+1555@gw.example.test"));
        assert_eq!(
            r.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
    }

    /// RFC 5321 §4.1.3 address literals in the reverse-path (`Mailbox = Local-part "@"
    /// ( Domain / address-literal )`, §4.1.2); smtp-proto alone refuses them.
    #[test]
    fn sender_at_an_address_literal() {
        for (from, want) in [
            ("a@[127.0.0.1]", "250 2.1.0"),
            ("scanner@[IPv6:2001:db8::1]", "250 2.1.0"),
            ("a@[x-tag:some.thing]", "501 5.1.7"),
            ("a@[999.1.1.1]", "501 5.1.7"),
            ("a@[IPv6:not-an-address]", "501 5.1.7"),
            ("a@[1.2.3.4", "501 5.1.7"),
            ("a@[]", "501 5.1.7"),
            ("@[127.0.0.1]", "501 5.1.7"),
        ] {
            let mut s = session();
            code(&mut s, "EHLO c.example");
            assert_eq!(
                code(&mut s, &format!("MAIL FROM:<{from}> RET=FULL")),
                want,
                "{from}"
            );
            if want.starts_with("250") {
                assert_eq!(s.envelope().mail_from, from);
                assert_eq!(s.envelope().ret, Some(Ret::Full));
            }
        }
        // A recipient at an address literal is still nobody this gateway serves.
        let mut s = session();
        code(&mut s, "EHLO c.example");
        code(&mut s, "MAIL FROM:<a@[127.0.0.1]>");
        assert!(code(&mut s, "RCPT TO:<FAX=+12025551234@[127.0.0.1]>").starts_with('5'));
    }

    #[test]
    fn bad_parameters() {
        let mut s = session();
        code(&mut s, "EHLO c.example");
        assert_eq!(
            code(&mut s, "MAIL FROM:<a@b.example> SIZE=1001"),
            "552 5.3.4"
        );
        assert_eq!(code(&mut s, "MAIL FROM:<a@b.example> FOO=1"), "555 5.5.4");
        assert_eq!(
            code(&mut s, "MAIL FROM:<a@b.example> SMTPUTF8"),
            "555 5.5.4"
        );
        assert_eq!(
            code(&mut s, "MAIL FROM:<a@b.example> RET=FULL RET=HDRS"),
            "501 5.5.4"
        );
        assert_eq!(code(&mut s, "MAIL FROM:<a@b.example>"), "250 2.1.0");
        assert_eq!(
            code(&mut s, "RCPT TO:<x@gw.example.test> NOTIFY=NEVER,SUCCESS"),
            "501 5.5.4"
        );
        // `+15` is the xtext of the octet 0x15 (RFC 3461 §4): no address.
        assert_eq!(
            code(
                &mut s,
                "RCPT TO:<x@gw.example.test> ORCPT=rfc822;+15550100@gw.example.test"
            ),
            "501 5.5.4"
        );
    }

    #[test]
    fn recipient_limit_and_errors_limit() {
        let mut s = session();
        code(&mut s, "HELO c.example");
        code(&mut s, "MAIL FROM:<a@b.example>");
        assert_eq!(code(&mut s, "RCPT TO:<u@other.example>"), "550 5.7.1");
        assert_eq!(code(&mut s, "RCPT TO:<1@gw.example.test>"), "250 2.1.5");
        assert_eq!(code(&mut s, "RCPT TO:<2@gw.example.test>"), "250 2.1.5");
        assert_eq!(code(&mut s, "RCPT TO:<3@gw.example.test>"), "452 4.5.3");
        assert_eq!(code(&mut s, "FOO"), "500 5.5.2");
        assert_eq!(code(&mut s, "BAR"), "500 5.5.2");
        assert_eq!(code(&mut s, "QUX"), "500 5.5.2");
        let out = s.command(b"BAZ\r\n", &Accept);
        assert_eq!(out.replies.len(), 2);
        assert_eq!(out.replies[1].code, 421);
        assert_eq!(out.replies[1].enhanced.as_deref(), Some("4.7.0"));
        assert_eq!(out.next, Next::Close);
    }

    /// RFC 5321 §4.5.3.1.10: recipients past the limit get `452 4.5.3` and the transaction
    /// goes on with the ones accepted (the client sends the rest later), however many.
    #[test]
    fn recipients_past_the_limit_never_end_the_session() {
        let mut s = session();
        code(&mut s, "HELO c.example");
        code(&mut s, "MAIL FROM:<a@b.example>");
        assert_eq!(code(&mut s, "RCPT TO:<1@gw.example.test>"), "250 2.1.5");
        assert_eq!(code(&mut s, "RCPT TO:<2@gw.example.test>"), "250 2.1.5");
        for i in 3..60 {
            let line = format!("RCPT TO:<{i}@gw.example.test>");
            assert_eq!(code(&mut s, &line), "452 4.5.3");
        }
        assert!(code(&mut s, "DATA").starts_with("354"));
    }
}
