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

/// The replies the session itself sends; texts are fixed, codes per RFC 5321 §4.2.2 and
/// RFC 3463.
impl Reply {
    pub(crate) fn greeting(hostname: &str) -> Reply {
        Reply::new(220, "", format!("{hostname} ESMTP t37gw"))
    }
    pub(crate) fn ehlo(hostname: &str, client: &str, max_size: usize) -> Reply {
        Reply::new(
            250,
            "",
            format!(
                "{hostname} greets {client}\nPIPELINING\nSIZE {max_size}\n8BITMIME\n\
                 ENHANCEDSTATUSCODES\nDSN"
            ),
        )
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
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP; see RFC 5321",
        )
    }
    pub(crate) fn not_implemented() -> Reply {
        Reply::new(502, "5.5.1", "Command not implemented")
    }
    pub(crate) fn unknown_command() -> Reply {
        Reply::new(500, "5.5.2", "Syntax error, command unrecognized")
    }
    pub(crate) fn line_too_long() -> Reply {
        Reply::new(500, "5.5.6", "Line too long")
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
        let wire = String::from_utf8(Reply::ehlo("gw", "client", 1000).to_wire()).unwrap();
        assert_eq!(
            wire,
            "250-gw greets client\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
             250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
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
