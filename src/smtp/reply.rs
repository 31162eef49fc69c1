//! [`Reply`]: one SMTP reply, and every reply the listener itself sends.
//!
//! Wire form (RFC 5321 §4.2): `code SP text CRLF`, multi-line replies as `code-text CRLF` lines
//! ending with one `code SP text CRLF`. With ENHANCEDSTATUSCODES (RFC 2034 §4) the enhanced code
//! follows the basic code on every line, except on the greeting, EHLO/HELO replies and 354
//! (RFC 3463 §2 defines classes 2, 4 and 5 only, so an intermediate reply has none).

/// One SMTP reply: basic code, RFC 3463 enhanced code (where RFC 2034 allows one) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// Enhanced status code such as `"2.0.0"` (RFC 3463); `None` for the greeting and EHLO.
    pub enhanced: Option<String>,
    /// Human-readable text; never internal error text. A `\n` splits it into the lines of a
    /// multi-line reply (RFC 5321 §4.2.1).
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

    /// True for 4xx and 5xx (RFC 5321 §4.2.1).
    pub fn is_negative(&self) -> bool {
        (400..600).contains(&self.code)
    }

    /// This reply made safe to send with ENHANCEDSTATUSCODES in effect (used on replies that
    /// come from a [`Backend`](super::Backend)): a code outside 200..=599 becomes
    /// `451 4.3.0`; a 2xx/4xx/5xx reply whose enhanced code is missing, malformed or of another
    /// class than the basic code gets `X.0.0` of its class (RFC 3463 §2, RFC 2034 §4).
    pub fn normalized(self) -> Reply {
        if !(200..600).contains(&self.code) {
            return Reply::local_error();
        }
        let class = (self.code / 100) as u8;
        if class == 3 {
            return Reply {
                enhanced: None,
                ..self
            };
        }
        let valid = self
            .enhanced
            .as_deref()
            .is_some_and(|e| enhanced_is_valid(e, class));
        if valid {
            self
        } else {
            Reply {
                enhanced: Some(format!("{class}.0.0")),
                ..self
            }
        }
    }

    /// Append the wire form to `out`. Control characters in the text (a CR, a NUL) become
    /// spaces, so a reply can never inject a line of its own; an empty text line is sent as
    /// the code alone.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        let lines: Vec<&str> = self.text.split('\n').collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(code.to_string().as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(enhanced) = &self.enhanced {
                out.extend_from_slice(enhanced.as_bytes());
                out.push(b' ');
            }
            out.extend(
                line.bytes()
                    .map(|b| if b.is_ascii_control() { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes (see [`Reply::write_to`]).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// `451 4.3.0`: our own failure, without detail (RFC 5321 §4.2.3, RFC 3463 X.3.0).
    pub fn local_error() -> Reply {
        Reply::new(
            451,
            "4.3.0",
            "Requested action aborted: local error in processing",
        )
    }

    /// `452 4.3.1 Insufficient system storage` (RFC 5321 §4.2.3 452, RFC 3463 X.3.1) when
    /// `error` is ENOSPC or EDQUOT (disk or quota full), else [`Reply::local_error`]
    /// (`451 4.3.0`). The error text itself is never sent.
    pub fn storage_error(error: &std::io::Error) -> Reply {
        match error.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Reply::new(452, "4.3.1", "Insufficient system storage")
            }
            _ => Reply::local_error(),
        }
    }
}

/// `class.subject.detail` with class matching the basic code, subject 0..=999, detail
/// 0..=999 (RFC 3463 §2).
fn enhanced_is_valid(enhanced: &str, class: u8) -> bool {
    let mut parts = enhanced.split('.');
    let (Some(c), Some(s), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    c.len() == 1 && c.as_bytes()[0] == b'0' + class && number(s) && number(d)
}

/// What the EHLO reply offers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer {
    /// SIZE value in octets (RFC 1870).
    pub(crate) max_size: usize,
    /// STARTTLS (RFC 3207): TLS configured and not active yet.
    pub(crate) starttls: bool,
    /// AUTH PLAIN LOGIN (RFC 4954): enabled and TLS active.
    pub(crate) auth: bool,
}

/// The replies the session itself sends; texts are fixed, codes per RFC 5321 §4.2.2 and
/// RFC 3463.
impl Reply {
    pub(crate) fn greeting(hostname: &str) -> Reply {
        Reply::new(220, "", format!("{hostname} ESMTP t37gw"))
    }
    /// The EHLO reply: greeting line, then one keyword per line (RFC 5321 §4.1.1.1).
    pub(crate) fn ehlo(hostname: &str, client: &str, offer: &Offer) -> Reply {
        let mut text = format!(
            "{hostname} greets {client}\nPIPELINING\nSIZE {}\n8BITMIME\n\
             ENHANCEDSTATUSCODES\nDSN\nCHUNKING",
            offer.max_size
        );
        if offer.starttls {
            text.push_str("\nSTARTTLS");
        }
        if offer.auth {
            text.push_str("\nAUTH PLAIN LOGIN");
        }
        Reply::new(250, "", text)
    }
    pub(crate) fn helo(hostname: &str) -> Reply {
        Reply::new(250, "", hostname.to_string())
    }
    pub(crate) fn ok() -> Reply {
        Reply::new(250, "2.0.0", "OK")
    }
    pub(crate) fn sender_ok() -> Reply {
        Reply::new(250, "2.1.0", "Sender OK")
    }
    pub(crate) fn recipient_ok() -> Reply {
        Reply::new(250, "2.1.5", "Recipient OK")
    }
    pub(crate) fn start_data() -> Reply {
        Reply::new(354, "", "Start mail input; end with <CRLF>.<CRLF>")
    }
    pub(crate) fn bye(hostname: &str) -> Reply {
        Reply::new(
            221,
            "2.0.0",
            format!("{hostname} Service closing transmission channel"),
        )
    }
    pub(crate) fn vrfy() -> Reply {
        Reply::new(
            252,
            "2.5.0",
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    pub(crate) fn help() -> Reply {
        Reply::new(
            214,
            "2.0.0",
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321",
        )
    }
    pub(crate) fn not_implemented() -> Reply {
        Reply::new(502, "5.5.1", "Command not implemented")
    }
    pub(crate) fn unknown_command() -> Reply {
        Reply::new(500, "5.5.2", "Syntax error, command unrecognized")
    }
    /// RFC 5321 §4.5.3.1 ("500 Line too long"); X.5.2 as X.5.6 is AUTH's (RFC 4954 §4).
    pub(crate) fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Line too long")
    }
    /// RFC 4954 §4, X.5.6: a SASL response longer than 12288 octets.
    pub(crate) fn auth_line_too_long() -> Reply {
        Reply::new(500, "5.5.6", "Authentication exchange line is too long")
    }
    /// RFC 5321 §2.3.8: command lines end in CRLF.
    pub(crate) fn bare_lf_command() -> Reply {
        Reply::new(500, "5.5.2", "Bare LF in command line, end lines with CRLF")
    }
    /// A NUL or a bare CR inside a command line.
    pub(crate) fn bad_command_octet() -> Reply {
        Reply::new(500, "5.5.2", "Invalid character in command line")
    }
    /// RFC 5321 §4.5.3.1.6 (1000 octets per text line), after the final dot.
    pub(crate) fn data_line_too_long() -> Reply {
        Reply::new(554, "5.6.0", "Message has a line longer than 1000 octets")
    }
    /// RFC 5321 §2.3.8 (bare CR or LF in the text), after the final dot.
    pub(crate) fn data_bare_line_ending() -> Reply {
        Reply::new(
            554,
            "5.6.0",
            "Bare CR or LF in message text, lines must end in CRLF",
        )
    }
    /// RFC 5322 §3.5, RFC 6152 §2 (no NUL in text), after the final dot.
    pub(crate) fn data_nul() -> Reply {
        Reply::new(554, "5.6.0", "NUL octet in message text")
    }
    /// RFC 5321 §4.5.3.1 ("501 Path too long"), RFC 3463 X.1.7.
    pub(crate) fn sender_too_long() -> Reply {
        Reply::new(501, "5.1.7", "Sender address too long")
    }
    /// RFC 5321 §4.5.3.1 ("501 Path too long"), RFC 3463 X.1.3.
    pub(crate) fn recipient_too_long() -> Reply {
        Reply::new(501, "5.1.3", "Recipient address too long")
    }
    pub(crate) fn syntax(text: &str) -> Reply {
        Reply::new(501, "5.5.4", format!("Syntax error: {text}"))
    }
    pub(crate) fn bad_sender_syntax() -> Reply {
        Reply::new(501, "5.1.7", "Bad sender address syntax")
    }
    pub(crate) fn bad_recipient_syntax() -> Reply {
        Reply::new(501, "5.1.3", "Bad recipient address syntax")
    }
    pub(crate) fn non_ascii_address() -> Reply {
        Reply::new(
            553,
            "5.6.7",
            "Non-ASCII addresses not permitted without SMTPUTF8",
        )
    }
    pub(crate) fn unsupported_parameter() -> Reply {
        Reply::new(555, "5.5.4", "Parameter not recognized or not implemented")
    }
    pub(crate) fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, "5.5.1", format!("Bad sequence of commands: {text}"))
    }
    pub(crate) fn too_big() -> Reply {
        Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        )
    }
    pub(crate) fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3", "Too many recipients")
    }
    pub(crate) fn too_many_errors(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Too many errors, closing connection"),
        )
    }
    pub(crate) fn too_many_sessions(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Too many connections, try again later"),
        )
    }
    pub(crate) fn timeout(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!("{hostname} Timeout exceeded, closing connection"),
        )
    }
    pub(crate) fn session_too_long(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!("{hostname} Session time limit exceeded, closing connection"),
        )
    }
    pub(crate) fn too_many_messages(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Too many messages in this session, closing connection"),
        )
    }
    pub(crate) fn client_limited(hostname: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{hostname} Too many connections from your address, try again later"),
        )
    }
    /// RFC 3207 §4.
    pub(crate) fn starttls_ready() -> Reply {
        Reply::new(220, "2.0.0", "Ready to start TLS")
    }
    /// RFC 3207 §4: STARTTLS takes no parameters.
    pub(crate) fn starttls_syntax() -> Reply {
        Reply::new(501, "5.5.4", "Syntax error, STARTTLS takes no parameters")
    }
    /// RFC 3207 §4.
    pub(crate) fn must_starttls() -> Reply {
        Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
    }
    /// RFC 4954 §6.
    pub(crate) fn auth_required() -> Reply {
        Reply::new(530, "5.7.0", "Authentication required")
    }
    /// RFC 4954 §6 (X.7.11, RFC 5248).
    pub(crate) fn encryption_required() -> Reply {
        Reply::new(
            538,
            "5.7.11",
            "Encryption required for requested authentication mechanism",
        )
    }
    /// RFC 4954 §6.
    pub(crate) fn auth_ok() -> Reply {
        Reply::new(235, "2.7.0", "Authentication successful")
    }
    /// RFC 4954 §6 (X.7.8).
    pub(crate) fn auth_failed() -> Reply {
        Reply::new(535, "5.7.8", "Authentication credentials invalid")
    }
    /// RFC 4954 §4: `*` cancels the exchange → 501.
    pub(crate) fn auth_cancelled() -> Reply {
        Reply::new(501, "5.7.0", "Authentication cancelled")
    }
    /// RFC 4954 §4: a response that is not base64 → `501 5.5.2`.
    pub(crate) fn auth_bad_base64() -> Reply {
        Reply::new(501, "5.5.2", "Cannot decode response")
    }
    /// RFC 4954 §6: `504 5.5.4` for a mechanism we do not offer.
    pub(crate) fn auth_unknown_mechanism() -> Reply {
        Reply::new(504, "5.5.4", "Unrecognized authentication type")
    }
    /// RFC 4954 §4: a SASL challenge, base64 (no enhanced code: class 3).
    pub(crate) fn sasl_challenge(base64: &str) -> Reply {
        Reply::new(334, "", base64.to_string())
    }
    /// RFC 3030 §2: a BDAT chunk that is not the last one was received.
    pub(crate) fn chunk_ok(octets: u64) -> Reply {
        Reply::new(250, "2.0.0", format!("{octets} octets received"))
    }
    pub(crate) fn shutting_down(hostname: &str) -> Reply {
        Reply::new(421, "4.3.2", format!("{hostname} Service shutting down"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        assert_eq!(Reply::ok().to_wire(), b"250 2.0.0 OK\r\n");
    }

    #[test]
    fn ehlo_is_multiline_without_enhanced_codes() {
        let offer = Offer {
            max_size: 1000,
            starttls: true,
            auth: false,
        };
        let wire = String::from_utf8(Reply::ehlo("gw", "client", &offer).to_wire()).unwrap();
        assert_eq!(
            wire,
            "250-gw greets client\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n250 STARTTLS\r\n"
        );
    }

    #[test]
    fn control_characters_cannot_inject_lines() {
        let r = Reply::new(550, "5.7.1", "no\r\x00pe");
        assert_eq!(r.to_wire(), b"550 5.7.1 no  pe\r\n");
    }

    #[test]
    fn normalized_fixes_class_and_range() {
        assert_eq!(
            Reply::new(250, "5.1.1", "x")
                .normalized()
                .enhanced
                .as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            Reply::new(550, "", "x").normalized().enhanced.as_deref(),
            Some("5.0.0")
        );
        assert_eq!(
            Reply::new(550, "5.7.1", "x")
                .normalized()
                .enhanced
                .as_deref(),
            Some("5.7.1")
        );
        assert_eq!(Reply::new(999, "9.9.9", "secret").normalized().code, 451);
        assert_eq!(
            Reply::new(250, "2.1000.0", "x")
                .normalized()
                .enhanced
                .as_deref(),
            Some("2.0.0")
        );
    }
}
