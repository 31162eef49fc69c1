//! xtext (RFC 3461 §4): the encoding of the SMTP `ENVID` and `ORCPT` parameters.

/// Decode an xtext string (RFC 3461 §4).
///
/// `xtext = *( xchar / hexchar )`, `xchar` = any ASCII character from `!` (33) to `~` (126)
/// except `+` and `=`, `hexchar = "+" 2(%x30-39 / %x41-46)` (upper-case hex only, as the RFC
/// says). Returns `None` when the input is not valid xtext (a bare `+`, a `=`, a space, a
/// control or non-ASCII character, lower-case hex) or when the decoded bytes are not UTF-8.
///
/// `xtext_decode("FAXJOB+2B0017+3Dx") == Some("FAXJOB+0017=x".into())`;
/// `xtext_decode("FAXJOB+0017=x") == None`.
pub fn xtext_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'+' => {
                let hi = hex_upper(*bytes.get(i + 1)?)?;
                let lo = hex_upper(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'=' => return None,
            33..=126 => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encode a string as xtext (RFC 3461 §4): every byte outside `!`..`~`, and `+` and `=`,
/// becomes `+XX` (upper-case hex). `xtext_encode("job id/18") == "job+20id/18"`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fn hex_upper(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc3461_hexchars() {
        // RFC 3461 §4: "+" and "=" must be encoded; space is 0x20.
        assert_eq!(
            xtext_decode("FAXJOB+2B0017+3Dx").as_deref(),
            Some("FAXJOB+0017=x")
        );
        assert_eq!(xtext_decode("job+20id/18").as_deref(), Some("job id/18"));
        assert_eq!(xtext_decode("FAXJOB-0001").as_deref(), Some("FAXJOB-0001"));
        assert_eq!(xtext_decode("").as_deref(), Some(""));
        // UTF-8 "é" is C3 A9.
        assert_eq!(xtext_decode("caf+C3+A9").as_deref(), Some("café"));
    }

    #[test]
    fn rejects_invalid_xtext() {
        assert_eq!(xtext_decode("FAXJOB+0017=x"), None); // "=" is not an xchar
        assert_eq!(xtext_decode("a+"), None);
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_decode("a+2b"), None); // lower-case hex is not xtext
        assert_eq!(xtext_decode("a b"), None);
        assert_eq!(xtext_decode("é"), None);
        assert_eq!(xtext_decode("+FF"), None); // not UTF-8
    }

    #[test]
    fn encodes_specials() {
        assert_eq!(xtext_encode("FAXJOB+0017=x"), "FAXJOB+2B0017+3Dx");
        assert_eq!(xtext_encode("job id/18"), "job+20id/18");
    }
}
