//! Field-level parsing shared by DSNs and MDNs: header blocks (RFC 5322 §2.2, unfolding
//! per §2.2.3), `type; value` fields (RFC 3464 §2.1.2), the Disposition field
//! (RFC 8098 §3.2.6) and msg-ids (RFC 5322 §3.6.4).

use super::Disposition;

/// One `Name: value` field, value unfolded and trimmed. A fold (line break plus the
/// whitespace around it) becomes one space, as the corpus answers and most tools read it.
pub(crate) type Field = (String, String);

/// Normalise CRLF, lone CR and LF line ends to LF, decoding lossily as UTF-8.
pub(crate) fn normalize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if !text.contains('\r') {
        return text.into_owned();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Split text into blocks of fields separated by one or more blank (or whitespace-only)
/// lines (RFC 3464 §2.1: per-message block, then per-recipient blocks). Lines without a
/// colon that are not continuations are ignored.
pub(crate) fn field_blocks(text: &str) -> Vec<Vec<Field>> {
    let mut blocks: Vec<Vec<Field>> = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        push_line(&mut current, line);
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    for block in &mut blocks {
        for (_, value) in block.iter_mut() {
            let trimmed = value.trim();
            if trimmed.len() != value.len() {
                *value = trimmed.to_string();
            }
        }
    }
    blocks
}

/// The header section of a message (everything before the first blank line), as fields.
pub(crate) fn header_fields(bytes: &[u8]) -> Vec<Field> {
    let end = header_end(bytes);
    let text = normalize(&bytes[..end]);
    let mut fields = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        push_line(&mut fields, line);
    }
    for (_, value) in fields.iter_mut() {
        *value = value.trim().to_string();
    }
    fields
}

/// Byte offset just past the header section's terminating blank line (or the input length).
pub(crate) fn header_end(bytes: &[u8]) -> usize {
    let mut i = 0;
    let mut at_line_start = true;
    while i < bytes.len() {
        if at_line_start {
            if bytes[i..].starts_with(b"\r\n") {
                return i + 2;
            }
            if bytes[i] == b'\n' || bytes[i] == b'\r' {
                return i + 1;
            }
        }
        match bytes[i] {
            b'\r' => {
                at_line_start = true;
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => at_line_start = true,
            _ => at_line_start = false,
        }
        i += 1;
    }
    bytes.len()
}

fn push_line(fields: &mut Vec<Field>, line: &str) {
    if line.starts_with([' ', '\t']) {
        if let Some((_, value)) = fields.last_mut() {
            value.truncate(value.trim_end().len());
            value.push(' ');
            value.push_str(line.trim_start());
        }
        return;
    }
    if let Some((name, value)) = line.split_once(':') {
        let name = name.trim();
        if !name.is_empty() && !name.contains(' ') {
            fields.push((name.to_string(), value.to_string()));
        }
    }
}

/// The first value of field `name` (case-insensitive) in `fields`.
pub(crate) fn get<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Strip an address-type prefix (`rfc822;` or RFC 6533's `utf-8;`, any case, spaces around
/// the `;` trimmed) from a recipient field; other types are kept as written.
pub(crate) fn strip_address_type(value: &str) -> String {
    if let Some((kind, rest)) = value.split_once(';') {
        let kind = kind.trim();
        if kind.eq_ignore_ascii_case("rfc822") || kind.eq_ignore_ascii_case("utf-8") {
            return rest.trim().to_string();
        }
    }
    value.trim().to_string()
}

/// The first `<...>` msg-id in a field value, with angle brackets; else the trimmed value
/// when it is one word; else `None`.
/// Every `<id>` in a header value such as References (RFC 5322 §3.6.4), in order.
pub(crate) fn msg_ids(value: &str) -> Vec<String> {
    value
        .split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(id, _)| id))
        .filter(|id| !id.trim().is_empty() && !id.contains(char::is_whitespace))
        .map(|id| format!("<{id}>"))
        .collect()
}

pub(crate) fn msg_id(value: &str) -> Option<String> {
    if let Some(start) = value.find('<') {
        if let Some(len) = value[start..].find('>') {
            let id = &value[start..start + len + 1];
            if id.len() > 2 {
                return Some(id.to_string());
            }
        }
    }
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        None
    } else {
        Some(trimmed.to_string())
    }
}

/// Status (RFC 3464 §2.3.4): the leading `class.subject.detail` token when there is one,
/// else the value as written.
pub(crate) fn status(value: &str) -> String {
    let first = value.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = first.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        first.to_string()
    } else {
        value.trim().to_string()
    }
}

/// Action (RFC 3464 §2.3.3): the first word, lower case.
pub(crate) fn action(value: &str) -> String {
    value
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Remove RFC 5322 comments `( ... )` (nesting, no quoting).
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Parse `action-mode/sending-mode; type[/modifier,modifier]` (RFC 8098 §3.2.6, RFC 3798).
/// Modes are kept as written; type and modifiers are lower-cased.
pub(crate) fn disposition(value: &str) -> Disposition {
    let value = strip_comments(value);
    let (modes, rest) = match value.split_once(';') {
        Some((m, r)) => (m, Some(r)),
        None => (value.as_str(), None),
    };
    let mut modes = modes.splitn(2, '/').map(str::trim);
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let action_mode = modes.next().and_then(non_empty);
    let sending_mode = modes.next().and_then(non_empty);
    let (kind, modifiers) = match rest {
        Some(rest) => {
            let (kind, mods) = match rest.split_once('/') {
                Some((k, m)) => (k, m),
                None => (rest, ""),
            };
            let modifiers = mods
                .split(',')
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            (non_empty(&kind.trim().to_ascii_lowercase()), modifiers)
        }
        None => (None, Vec::new()),
    };
    Disposition {
        action_mode,
        sending_mode,
        kind,
        modifiers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_and_whitespace_lines_and_unfold() {
        let text = "Reporting-MTA: dns; a\r\n\r\n \r\nFinal-Recipient: rfc822;x@y\r\nDiagnostic-Code: smtp; 550\r\n  5.1.1 no\r\n";
        let blocks = field_blocks(&normalize(text.as_bytes()));
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], vec![("Reporting-MTA".into(), "dns; a".into())]);
        assert_eq!(
            get(&blocks[1], "diagnostic-code"),
            Some("smtp; 550 5.1.1 no")
        );
    }

    #[test]
    fn disposition_rfc8098_examples() {
        // RFC 8098 §9 example: "Disposition: manual-action/MDN-sent-manually; displayed"
        let d = disposition("manual-action/MDN-sent-manually; displayed");
        assert_eq!(d.action_mode.as_deref(), Some("manual-action"));
        assert_eq!(d.sending_mode.as_deref(), Some("MDN-sent-manually"));
        assert_eq!(d.kind.as_deref(), Some("displayed"));
        assert!(d.modifiers.is_empty());
        // RFC 3798 form with modifiers and a comment.
        let d = disposition("automatic-action/MDN-sent-automatically (x); deleted/error,warning");
        assert_eq!(d.kind.as_deref(), Some("deleted"));
        assert_eq!(d.modifiers, vec!["error", "warning"]);
    }

    #[test]
    fn small_fields() {
        assert_eq!(strip_address_type("RFC822; a@b"), "a@b");
        assert_eq!(strip_address_type("x400; c=us"), "x400; c=us");
        assert_eq!(msg_id(" <a@b> (c)").as_deref(), Some("<a@b>"));
        assert_eq!(status("5.1.1 (bad mailbox)"), "5.1.1");
        assert_eq!(action("Failed (permanent)"), "failed");
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
    }
}
