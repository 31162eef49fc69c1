//! AUTH PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) as SMTP AUTH exchanges
//! (RFC 4954 §4), without I/O: a command or response line in, a challenge or the credentials
//! to check out.

use super::Reply;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// RFC 4616 §2: authcid and passwd are 1..=255 octets.
const MAX_CREDENTIAL: usize = 255;

/// Where an unfinished exchange stands: what the next client line answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sasl {
    /// `334 ` was sent after `AUTH PLAIN`: the next line is the PLAIN message.
    Plain,
    /// `334 VXNlcm5hbWU6` ("Username:") was sent.
    LoginUser,
    /// `334 UGFzc3dvcmQ6` ("Password:") was sent.
    LoginPassword { user: String },
}

/// The outcome of one step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this 334 challenge and wait for the response line.
    Challenge(Reply, Sasl),
    /// Check these credentials (user, password).
    Check(String, String),
    /// The exchange failed with this reply.
    Fail(Reply),
}

const USERNAME: &str = "VXNlcm5hbWU6";
const PASSWORD: &str = "UGFzc3dvcmQ6";

/// Start an exchange for `AUTH mechanism [initial-response]`; `initial` is empty when absent,
/// `=` for an empty initial response (RFC 4954 §4).
pub(crate) fn start(mechanism: u64, initial: &str) -> Step {
    match mechanism {
        smtp_proto::AUTH_PLAIN if initial.is_empty() => {
            Step::Challenge(Reply::sasl_challenge(""), Sasl::Plain)
        }
        smtp_proto::AUTH_PLAIN => respond(Sasl::Plain, initial),
        smtp_proto::AUTH_LOGIN if initial.is_empty() => {
            Step::Challenge(Reply::sasl_challenge(USERNAME), Sasl::LoginUser)
        }
        smtp_proto::AUTH_LOGIN => respond(Sasl::LoginUser, initial),
        _ => Step::Fail(Reply::auth_unknown_mechanism()),
    }
}

/// Take the client's response `line` (without its line ending) to the challenge of `state`.
pub(crate) fn respond(state: Sasl, line: &str) -> Step {
    let line = line.trim_end_matches([' ', '\t']);
    if line == "*" {
        return Step::Fail(Reply::auth_cancelled());
    }
    let decoded = if line == "=" {
        Vec::new()
    } else {
        match STANDARD.decode(line) {
            Ok(bytes) => bytes,
            Err(_) => return Step::Fail(Reply::auth_bad_base64()),
        }
    };
    match state {
        Sasl::Plain => plain(&decoded),
        Sasl::LoginUser => match credential(decoded) {
            Some(user) => Step::Challenge(
                Reply::sasl_challenge(PASSWORD),
                Sasl::LoginPassword { user },
            ),
            None => Step::Fail(Reply::auth_failed()),
        },
        Sasl::LoginPassword { user } => match credential(decoded) {
            Some(password) => Step::Check(user, password),
            None => Step::Fail(Reply::auth_failed()),
        },
    }
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`. An authzid other than the authcid asks to
/// act as someone else, which we never allow.
fn plain(message: &[u8]) -> Step {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Fail(Reply::auth_failed());
    };
    let (Some(user), Some(password)) = (credential(authcid.to_vec()), credential(passwd.to_vec()))
    else {
        return Step::Fail(Reply::auth_failed());
    };
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Step::Fail(Reply::auth_failed());
    }
    Step::Check(user, password)
}

/// A user name or password: 1..=255 octets of UTF-8 without NUL (RFC 4616 §2).
fn credential(bytes: Vec<u8>) -> Option<String> {
    if bytes.is_empty() || bytes.len() > MAX_CREDENTIAL || bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_initial_response() {
        // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf".
        let step = start(smtp_proto::AUTH_PLAIN, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        assert_eq!(step, Step::Check("tim".into(), "tanstaaftanstaaf".into()));
    }

    #[test]
    fn plain_without_initial_response_gets_empty_challenge() {
        let Step::Challenge(reply, state) = start(smtp_proto::AUTH_PLAIN, "") else {
            panic!("no challenge");
        };
        assert_eq!(reply.to_wire(), b"334 \r\n");
        assert_eq!(
            respond(state, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
            Step::Check("tim".into(), "tanstaaftanstaaf".into())
        );
    }

    #[test]
    fn plain_refuses_other_authzid_and_bad_input() {
        // "Ursel\0Kurt\0xipj3plmq" (RFC 4616 §4): authzid differs from authcid.
        let step = start(smtp_proto::AUTH_PLAIN, "VXJzZWwAS3VydAB4aXBqM3BsbXE=");
        assert_eq!(step, Step::Fail(Reply::auth_failed()));
        assert_eq!(
            start(smtp_proto::AUTH_PLAIN, "!!!"),
            Step::Fail(Reply::auth_bad_base64())
        );
        assert_eq!(
            respond(Sasl::Plain, "*"),
            Step::Fail(Reply::auth_cancelled())
        );
        assert_eq!(respond(Sasl::Plain, "="), Step::Fail(Reply::auth_failed()));
    }

    #[test]
    fn login_exchange() {
        let Step::Challenge(reply, state) = start(smtp_proto::AUTH_LOGIN, "") else {
            panic!("no challenge");
        };
        assert_eq!(reply.to_wire(), b"334 VXNlcm5hbWU6\r\n");
        let Step::Challenge(reply, state) = respond(state, "dGlt") else {
            panic!("no password challenge");
        };
        assert_eq!(reply.to_wire(), b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(
            respond(state, "c2VjcmV0"),
            Step::Check("tim".into(), "secret".into())
        );
        assert_eq!(
            start(smtp_proto::AUTH_CRAM_MD5, ""),
            Step::Fail(Reply::auth_unknown_mechanism())
        );
    }
}
