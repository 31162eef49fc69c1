//! Runs every SMTP dialog transcript in `fixtures/dialogs/*.txt` against the listener over a
//! raw socket on 127.0.0.1 port 0. The format is described in `fixtures/dialogs/README.md`;
//! each file says which attack or quirk it covers and which RFC or report its expected replies
//! come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use t37gw::smtp::{self, Backend, BareLineEnding, Envelope, ListenerConfig, Recipient, Reply};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// No dialog waits longer than this for one reply.
const WAIT: Duration = Duration::from_secs(10);

/// Accepts `FAX=…@gw.example.test` recipients, refuses others as relaying.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Backend for Recorder {
    fn rcpt(&self, _: &Envelope, rcpt: &Recipient) -> Result<(), Reply> {
        let address = rcpt.address.to_ascii_lowercase();
        if address.starts_with("fax=") && address.ends_with("@gw.example.test") {
            Ok(())
        } else {
            Err(Reply::new(550, "5.7.1", "Relaying denied"))
        }
    }

    async fn data(&self, envelope: Envelope, message: Vec<u8>) -> Reply {
        self.messages
            .lock()
            .expect("recorder lock")
            .push((envelope, message));
        Reply::new(250, "2.0.0", "Message accepted for delivery")
    }
}

/// Decode the escapes of a transcript line: `\r \n \0 \t \\ \xHH` and `\{N:c}` (the
/// character c, N times).
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b'0' => out.push(0),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = &text[i + 2..i + 4];
                out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                i += 2;
            }
            b'{' => {
                let end = text[i..].find('}').expect("\\{N:c}") + i;
                let (n, c) = text[i + 2..end].split_once(':').expect("\\{N:c}");
                let n: usize = n.parse().expect("repeat count");
                out.extend(std::iter::repeat_n(c.as_bytes()[0], n));
                i = end - 1;
            }
            other => panic!("unknown escape \\{}", other as char),
        }
        i += 2;
    }
    out
}

/// One parsed transcript.
struct Dialog {
    path: PathBuf,
    headers: BTreeMap<String, Vec<String>>,
    /// (kind, mode or None, text)
    steps: Vec<(char, Option<String>, String)>,
}

fn parse(path: &Path) -> Dialog {
    let text = std::fs::read_to_string(path).expect("read dialog");
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(header) = line.strip_prefix("# ") {
            if let Some((key, value)) = header.split_once(": ") {
                headers
                    .entry(key.trim().to_string())
                    .or_default()
                    .push(value.trim().to_string());
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{}:{}: no `X:` tag", path.display(), n + 1));
        let (kind, mode) = match tag.split_once('@') {
            Some((k, m)) => (k, Some(m.to_string())),
            None => (tag, None),
        };
        let kind = match kind {
            "C" | "R" | "S" | "E" => kind.chars().next().unwrap_or('?'),
            other => panic!("{}:{}: unknown tag {other}", path.display(), n + 1),
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        steps.push((kind, mode, rest.to_string()));
    }
    assert!(
        headers.contains_key("covers"),
        "{}: every dialog says what it covers (`# covers: …`)",
        path.display()
    );
    assert!(
        headers.contains_key("accepted"),
        "{}: every dialog says how many messages are accepted (`# accepted: N`)",
        path.display()
    );
    Dialog {
        path: path.to_path_buf(),
        headers,
        steps,
    }
}

fn header<'a>(d: &'a Dialog, key: &str) -> Vec<&'a str> {
    d.headers
        .get(key)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn config_for(d: &Dialog, mode: Option<&str>) -> ListenerConfig {
    let mut c = ListenerConfig {
        hostname: "gw.example.test".into(),
        max_message_size: 100_000,
        command_timeout: Duration::from_secs(30),
        data_timeout: Duration::from_secs(30),
        ..ListenerConfig::default()
    };
    let policy = |v: &str| match v {
        "accept" => BareLineEnding::Accept,
        "reject" => BareLineEnding::Reject,
        other => panic!("bad policy {other}"),
    };
    for setting in header(d, "config")
        .iter()
        .flat_map(|line| line.split_whitespace())
    {
        let (key, value) = setting.split_once('=').expect("key=value");
        match key {
            "data-bare-line-ending" => c.data_bare_line_ending = policy(value),
            "command-bare-lf" => c.command_bare_lf = policy(value),
            "max-recipients" => c.max_recipients = value.parse().expect("number"),
            "max-errors" => c.max_errors = value.parse().expect("number"),
            "max-message-size" => c.max_message_size = value.parse().expect("number"),
            "max-messages-per-session" => {
                c.max_messages_per_session = value.parse().expect("number")
            }
            other => panic!("{}: unknown config key {other}", d.path.display()),
        }
    }
    if let Some(mode) = mode {
        c.data_bare_line_ending = policy(mode);
    }
    c
}

/// Read one reply (all its lines); `None` at EOF.
async fn read_reply(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, reader.read_line(&mut line))
            .await
            .expect("reply within time")
            .expect("read");
        if n == 0 {
            return if lines.is_empty() { None } else { Some(lines) };
        }
        assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
        let line = line.trim_end_matches("\r\n").to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Some(lines);
        }
    }
}

async fn run(d: &Dialog, mode: Option<&str>) {
    let name = format!(
        "{} [{}]",
        d.path.file_name().unwrap_or_default().to_string_lossy(),
        mode.unwrap_or("default")
    );
    eprintln!("dialog {name}");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let backend = Arc::new(Recorder::default());
    let (stop, rx) = watch::channel(false);
    let server = tokio::spawn(smtp::serve(
        listener,
        Arc::new(config_for(d, mode)),
        backend.clone(),
        rx,
    ));
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let greeting = read_reply(&mut reader).await.expect("greeting");
    assert!(greeting[0].starts_with("220 "), "{name}: {greeting:?}");
    let mut pending = Vec::new();
    for (kind, step_mode, text) in &d.steps {
        if step_mode.as_deref().is_some_and(|m| Some(m) != mode) {
            continue;
        }
        match kind {
            'C' => {
                pending.extend(unescape(text));
                pending.extend_from_slice(b"\r\n");
            }
            'R' => pending.extend(unescape(text)),
            'S' | 'E' => {
                if !pending.is_empty() {
                    // The peer may have closed already; a failed write shows up as EOF below.
                    let _ = w.write_all(&pending).await;
                    pending.clear();
                }
                if *kind == 'E' {
                    let mut rest = Vec::new();
                    let got = tokio::time::timeout(WAIT, reader.read_to_end(&mut rest))
                        .await
                        .expect("close within time");
                    assert!(
                        got.is_ok() && rest.is_empty(),
                        "{name}: expected close, got {:?}",
                        String::from_utf8_lossy(&rest)
                    );
                    continue;
                }
                eprintln!("  expect {text}");
                let reply = read_reply(&mut reader)
                    .await
                    .unwrap_or_else(|| panic!("{name}: closed, expected {text}"));
                let last = reply.last().expect("line");
                let ok = reply[0].starts_with(text.as_str()) || last.starts_with(text.as_str());
                assert!(ok, "{name}: expected `{text}`, got {reply:?}");
            }
            _ => unreachable!(),
        }
    }
    drop(w);
    let messages = backend.messages.lock().expect("lock").clone();
    let accepted: usize = header(d, "accepted")[0].parse().expect("accepted: N");
    assert_eq!(messages.len(), accepted, "{name}: accepted messages");
    for addr in header(d, "never-rcpt") {
        for (env, _) in &messages {
            assert!(
                env.rcpts.iter().all(|r| r.address != addr),
                "{name}: smuggled recipient {addr} accepted"
            );
        }
    }
    for from in header(d, "never-from") {
        assert!(
            messages.iter().all(|(env, _)| env.mail_from != from),
            "{name}: smuggled sender {from} accepted"
        );
    }
    for body in header(d, "body") {
        let want = unescape(body);
        assert!(
            messages.iter().any(|(_, m)| *m == want),
            "{name}: no message is exactly {body:?}; got {:?}",
            messages
                .iter()
                .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
                .collect::<Vec<_>>()
        );
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(WAIT, server).await;
}

#[tokio::test]
async fn every_dialog_transcript() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dialogs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/dialogs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "dialog transcripts missing in {dir:?}");
    for path in &paths {
        let d = parse(path);
        let modes = header(&d, "modes");
        if modes.is_empty() {
            run(&d, None).await;
        } else {
            for mode in modes[0].split_whitespace() {
                run(&d, Some(mode)).await;
            }
        }
    }
}

#[test]
fn every_smuggling_variant_has_a_transcript() {
    // The end-of-data variants of the SMTP smuggling research (SEC Consult, Dec 2023, and
    // the follow-up scans): each must be a transcript of its own.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dialogs");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures/dialogs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("# end-of-data: ") {
                seen.push(v.trim().to_string());
            }
        }
    }
    for variant in [
        "\\n.\\n",
        "\\n.\\r\\n",
        "\\r.\\r",
        "\\r\\r\\n.\\r\\r\\n",
        "\\r\\n.\\n",
        "\\n.\\r",
        "\\r.\\n",
        "\\r.\\r\\n",
        "\\r\\n.\\r",
        "\\r\\n\\0.\\r\\n",
        "\\r\\n.\\0\\r\\n",
    ] {
        assert!(
            seen.iter().any(|s| s == variant),
            "no transcript for {variant}"
        );
    }
}
