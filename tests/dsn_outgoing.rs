//! Outgoing DSNs (RFC 3464 + RFC 6522) read back by an independent parser, Python's stdlib
//! `email` package; and hostile input fed to `receipts::parse`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::Value;
use t37gw::receipts::{build_dsn, parse, DsnRecipient, OutgoingDsn, ReportKind};

/// Parses a message from stdin with `email` (compat32) and prints what it saw as JSON.
const PY: &str = r#"
import sys, json, email
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
msg = email.message_from_bytes(sys.stdin.buffer.read())
parts = msg.get_payload()
out = {
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "from": msg["From"], "to": msg["To"], "subject": msg["Subject"],
    "message_id": msg["Message-ID"],
    "date_ok": parsedate_to_datetime(msg["Date"]) is not None,
    "defects": [str(d) for p in msg.walk() for d in p.defects],
    "part_types": [p.get_content_type() for p in parts],
    "human": parts[0].get_payload(decode=True).decode("utf-8"),
    "status_blocks": [b.items() for b in parts[1].get_payload()],
    "arrival": parsedate_to_datetime(parts[1].get_payload()[0]["Arrival-Date"]).isoformat(),
}
ret = parts[2]
if ret.get_content_type() == "message/rfc822":
    inner = ret.get_payload()[0]
    out["returned_headers"] = inner.items()
    out["returned_body"] = inner.get_payload()
else:
    out["returned_headers"] = HeaderParser().parsestr(ret.get_payload()).items()
print(json.dumps(out))
"#;

/// Python's reading of `message`, or `None` (reason printed) without python3; under
/// `CI=true` a missing python3 is a failure.
fn python_reads(message: &[u8]) -> Option<Value> {
    let child = Command::new("python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 missing under CI=true: {e}"
            );
            eprintln!("SKIP: python3 not runnable ({e})");
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("python3 printed JSON"))
}

const ORIGINAL: &[u8] = b"Received: from client.example (client.example [192.0.2.7])\r\n\tby gw.example with ESMTP; Sun, 29 Nov 2026 22:14:13 +0000\r\nFrom: Alice <alice@example.test>\r\nTo: FAX=+15550100@gw.example\r\nSubject: quarterly\r\n report\r\nMessage-ID: <JOB-42.x7@client.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nno image here\r\n";

fn returned_headers_expected() -> Vec<(String, String)> {
    // compat32 keeps folded values with their CRLF and leading whitespace.
    [
        ("Received", "from client.example (client.example [192.0.2.7])\r\n\tby gw.example with ESMTP; Sun, 29 Nov 2026 22:14:13 +0000"),
        ("From", "Alice <alice@example.test>"),
        ("To", "FAX=+15550100@gw.example"),
        ("Subject", "quarterly\r\n report"),
        ("Message-ID", "<JOB-42.x7@client.example>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("list of pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("name").into(),
                p[1].as_str().expect("value").into(),
            )
        })
        .collect()
}

fn block(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn base() -> OutgoingDsn {
    OutgoingDsn {
        reporting_mta: "gw.example".into(),
        from: "MAILER-DAEMON@gw.example".into(),
        to: "alice@example.test".into(),
        envid: Some("FAXJOB-0042".into()),
        arrival_date: Utc
            .with_ymd_and_hms(2026, 11, 29, 22, 14, 13)
            .single()
            .expect("date"),
        recipients: vec![DsnRecipient {
            original_recipient: Some("rfc822;+15550100@gw.example".into()),
            final_recipient: "FAX=+15550100@gw.example".into(),
            action: "failed".into(),
            status: "5.6.1".into(),
            diagnostic_code: Some("smtp; 554 5.6.1 no TIFF-F image part".into()),
        }],
        original: ORIGINAL.to_vec(),
        return_full: false,
        message_id: "<dsn.1@gw.example>".into(),
        human_text: "Your fax could not be sent.\nNo TIFF-F image part.\n".into(),
    }
}

#[test]
fn failure_dsn_reads_back_in_python() {
    let dsn = base();
    let bytes = build_dsn(&dsn);
    // CRLF only; the returned header section is byte-exact.
    let header_section = &ORIGINAL[..ORIGINAL
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("hdr end")
        + 4];
    assert!(contains(&bytes, header_section));
    assert!(
        !contains(&bytes, b"no image here"),
        "RET=HDRS returns headers only"
    );
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(bytes.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
    }
    let Some(py) = python_reads(&bytes) else {
        return;
    };
    assert_eq!(py["defects"], serde_json::json!([]));
    assert_eq!(py["content_type"], "multipart/report");
    assert_eq!(py["report_type"], "delivery-status");
    assert_eq!(py["from"], "MAILER-DAEMON@gw.example");
    assert_eq!(py["to"], "alice@example.test");
    assert_eq!(py["subject"], "Delivery Status Notification (Failure)");
    assert_eq!(py["message_id"], "<dsn.1@gw.example>");
    assert_eq!(py["date_ok"], true);
    assert_eq!(
        py["part_types"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    assert_eq!(
        py["human"],
        "Your fax could not be sent.\r\nNo TIFF-F image part.\r\n"
    );
    assert_eq!(py["arrival"], "2026-11-29T22:14:13+00:00");
    let blocks: Vec<_> = py["status_blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(pairs)
        .collect();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks[0][0],
        ("Reporting-MTA".to_string(), "dns; gw.example".to_string())
    );
    assert_eq!(
        blocks[0][1],
        (
            "Original-Envelope-Id".to_string(),
            "FAXJOB-0042".to_string()
        )
    );
    assert_eq!(blocks[0][2].0, "Arrival-Date");
    assert_eq!(
        blocks[1],
        block(&[
            ("Original-Recipient", "rfc822;+15550100@gw.example"),
            ("Final-Recipient", "rfc822;FAX=+15550100@gw.example"),
            ("Action", "failed"),
            ("Status", "5.6.1"),
            ("Diagnostic-Code", "smtp; 554 5.6.1 no TIFF-F image part"),
        ])
    );
    assert_eq!(pairs(&py["returned_headers"]), returned_headers_expected());
}

#[test]
fn success_dsn_reads_back_in_python() {
    let mut dsn = base();
    dsn.envid = None;
    dsn.return_full = true;
    dsn.message_id = "<dsn.2@gw.example>".into();
    dsn.human_text = "Fax sent.".into();
    dsn.recipients = vec![
        DsnRecipient {
            original_recipient: None,
            final_recipient: "FAX=+15550100@gw.example".into(),
            action: "delivered".into(),
            status: "2.0.0".into(),
            diagnostic_code: Some("X-T37gw; fax sent, 3 pages".into()),
        },
        DsnRecipient {
            original_recipient: Some("rfc822;FAX=+15550101@gw.example".into()),
            final_recipient: "FAX=+15550101@gw.example".into(),
            action: "delivered".into(),
            status: "2.0.0".into(),
            diagnostic_code: None,
        },
    ];
    let bytes = build_dsn(&dsn);
    assert!(
        contains(&bytes, ORIGINAL),
        "RET=FULL returns the message byte-exact"
    );
    let Some(py) = python_reads(&bytes) else {
        return;
    };
    assert_eq!(py["defects"], serde_json::json!([]));
    assert_eq!(py["content_type"], "multipart/report");
    assert_eq!(py["report_type"], "delivery-status");
    assert_eq!(py["subject"], "Delivery Status Notification (Success)");
    assert_eq!(
        py["part_types"],
        serde_json::json!(["text/plain", "message/delivery-status", "message/rfc822"])
    );
    let blocks: Vec<_> = py["status_blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(pairs)
        .collect();
    assert_eq!(blocks.len(), 3);
    assert!(
        blocks[0].iter().all(|(n, _)| n != "Original-Envelope-Id"),
        "no ENVID given"
    );
    assert_eq!(
        blocks[1],
        block(&[
            ("Final-Recipient", "rfc822;FAX=+15550100@gw.example"),
            ("Action", "delivered"),
            ("Status", "2.0.0"),
            ("Diagnostic-Code", "X-T37gw; fax sent, 3 pages"),
        ])
    );
    assert_eq!(
        blocks[2],
        block(&[
            ("Original-Recipient", "rfc822;FAX=+15550101@gw.example"),
            ("Final-Recipient", "rfc822;FAX=+15550101@gw.example"),
            ("Action", "delivered"),
            ("Status", "2.0.0"),
        ])
    );
    assert_eq!(pairs(&py["returned_headers"]), returned_headers_expected());
    assert_eq!(py["returned_body"], "no image here\r\n");
}

/// A small deterministic xorshift generator for "random" input.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn hostile_input_never_panics_or_hangs() {
    let mut inputs: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("blank lines".into(), b"\r\n\r\n\n".to_vec()),
        ("header only, no colon".into(), b"garbage".to_vec()),
    ];
    for seed in 1..40u64 {
        inputs.push((format!("noise {seed}"), noise(64 * seed as usize, seed)));
    }
    inputs.push((
        "report without closing boundary".into(),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: FAILED\r\nStatus: 5.1.1\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <t@x>\r\nSubj".to_vec(),
    ));
    inputs.push((
        "report with no boundary parameter".into(),
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n".to_vec(),
    ));
    let mut long = b"Subject: ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    long.extend_from_slice(b"\r\n\r\nbody\r\n");
    inputs.push(("1 MB header line".into(), long));
    let mut nested = Vec::new();
    for _ in 0..200 {
        nested.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    inputs.push(("200 nested message/rfc822".into(), nested));
    let mut fields = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n".to_vec();
    for _ in 0..20_000 {
        fields.extend_from_slice(b"Final-Recipient: rfc822;\r\n \r\n");
    }
    inputs.push(("20000 folded empty recipients".into(), fields));

    for (name, input) in &inputs {
        let start = Instant::now();
        let report = parse(input);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: too slow"
        );
        if input.iter().all(u8::is_ascii_whitespace) {
            assert_eq!(report.kind, ReportKind::Unparseable, "{name}");
            assert!(report.error.is_some(), "{name}");
        }
    }
    let truncated = parse(
        &inputs
            .iter()
            .find(|(n, _)| n == "report without closing boundary")
            .expect("case")
            .1,
    );
    assert_eq!(truncated.kind, ReportKind::Dsn);
    assert_eq!(
        truncated.recipients[0].final_recipient.as_deref(),
        Some("a@b")
    );
    assert_eq!(truncated.recipients[0].action.as_deref(), Some("failed"));
}
