//! The SMTP listener over real sockets on 127.0.0.1 port 0.
//!
//! Expected replies come from the RFCs (codes: RFC 5321 §4.2; enhanced codes: RFC 3463 /
//! RFC 2034; SIZE: RFC 1870; PIPELINING: RFC 2920; DSN: RFC 3461) and from Python's smtplib
//! as an independent client.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use t37gw::smtp::{self, Backend, Envelope, ListenerConfig, Notify, Recipient, Reply, Ret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const HOST: &str = "gw.example.test";
const MAX_SIZE: usize = 1000;
/// No test waits longer than this for one reply.
const WAIT: Duration = Duration::from_secs(10);

/// Records every accepted message; accepts `FAX=…@gw.example.test` and the gateway's return
/// address, refuses everything else as a relay attempt.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Backend for Recorder {
    fn rcpt(&self, _: &Envelope, rcpt: &Recipient) -> Result<(), Reply> {
        let address = rcpt.address.to_ascii_lowercase();
        let local_fax = address.starts_with("fax=") && address.ends_with("@gw.example.test");
        if local_fax || address == "fax-gw@gw.example.test" {
            Ok(())
        } else {
            Err(Reply::new(550, "5.7.1", "Relaying denied"))
        }
    }

    fn data(&self, envelope: Envelope, message: Vec<u8>) -> impl Future<Output = Reply> + Send {
        self.messages
            .lock()
            .expect("recorder lock")
            .push((envelope, message));
        async { Reply::new(250, "2.0.0", "Message accepted for delivery") }
    }
}

struct Server {
    port: u16,
    backend: Arc<Recorder>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.backend.messages.lock().expect("recorder lock").clone()
    }
}

fn config() -> ListenerConfig {
    ListenerConfig {
        hostname: HOST.into(),
        max_message_size: MAX_SIZE,
        max_recipients: 100,
        command_timeout: Duration::from_secs(30),
        data_timeout: Duration::from_secs(30),
        max_sessions: 10,
        max_errors: 10,
        ..ListenerConfig::default()
    }
}

async fn start(config: ListenerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let backend = Arc::new(Recorder::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(smtp::serve(listener, Arc::new(config), backend.clone(), rx));
    Server {
        port,
        backend,
        stop,
        task,
    }
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (r, w) = stream.into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// One reply: all its lines without CRLF.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("reply within time")
                .expect("read");
            assert!(n > 0, "connection closed; reply so far: {lines:?}");
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let line = line.trim_end_matches("\r\n").to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The single-line reply's first `code enhanced` part, e.g. `"250 2.1.0"`.
    async fn code(&mut self) -> String {
        let reply = self.reply().await;
        assert_eq!(reply.len(), 1, "expected one line: {reply:?}");
        reply[0].split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.code().await
    }

    /// Greeting and EHLO done.
    async fn ready(port: u16) -> Client {
        let mut c = Client::connect(port).await;
        c.reply().await;
        c.send(b"EHLO client.example\r\n").await;
        c.reply().await;
        c
    }

    async fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_to_end(&mut rest))
            .await
            .expect("close within time")
            .expect("read to end");
        assert_eq!(
            n,
            0,
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

#[tokio::test]
async fn plain_dialog_with_exact_codes() {
    let server = start(config()).await;
    let mut c = Client::connect(server.port).await;
    // RFC 5321 §4.2 greeting; RFC 2034 §3: no enhanced code on it.
    assert_eq!(c.reply().await, vec!["220 gw.example.test ESMTP t37gw"]);
    c.send(b"EHLO client.example\r\n").await;
    let ehlo = c.reply().await;
    assert!(ehlo[0].starts_with("250-gw.example.test"), "{ehlo:?}");
    let keywords: Vec<&str> = ehlo[1..].iter().map(|l| &l[4..]).collect();
    assert_eq!(
        keywords,
        [
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "DSN",
            "CHUNKING"
        ]
    );
    assert!(ehlo.last().is_some_and(|l| l.starts_with("250 ")));
    assert_eq!(
        c.cmd("MAIL FROM:<sender@client.example>").await,
        "250 2.1.0"
    );
    assert_eq!(
        c.cmd("RCPT TO:<FAX=+15550100@gw.example.test>").await,
        "250 2.1.5"
    );
    // 354 is an intermediate reply: RFC 3463 §2 has no class 3, so no enhanced code.
    c.send(b"DATA\r\n").await;
    let go = c.reply().await;
    assert!(go[0].starts_with("354 "), "{go:?}");
    c.send(b"Subject: x\r\n\r\n..stuffed\r\nend\r\n.\r\n").await;
    assert_eq!(c.code().await, "250 2.0.0");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0");
    assert_eq!(c.cmd("VRFY fax-gw").await, "252 2.5.0");
    assert_eq!(c.cmd("EXPN list").await, "502 5.5.1");
    assert_eq!(c.cmd("HELP").await, "214 2.0.0");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0");
    c.expect_eof().await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, message) = &messages[0];
    assert_eq!(message, b"Subject: x\r\n\r\n.stuffed\r\nend\r\n");
    assert_eq!(envelope.helo, "client.example");
    assert_eq!(envelope.mail_from, "sender@client.example");
    assert!(envelope.client_addr.starts_with("127.0.0.1:"));
    assert_eq!(envelope.rcpts[0].address, "FAX=+15550100@gw.example.test");
    assert_eq!(envelope.rcpts[0].notify, None);
}

#[tokio::test]
async fn null_sender_and_return_address_accepted() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    // RFC 5321 §4.5.5: reports come from the null reverse-path.
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 2.1.0");
    assert_eq!(c.cmd("RCPT TO:<fax-gw@gw.example.test>").await, "250 2.1.5");
    c.send(b"DATA\r\n").await;
    c.reply().await;
    c.send(b"report\r\n.\r\n").await;
    assert_eq!(c.code().await, "250 2.0.0");
    assert_eq!(server.messages()[0].0.mail_from, "");
}

#[tokio::test]
async fn pipelined_transaction_in_one_write() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    c.send(
        b"MAIL FROM:<sender@client.example>\r\n\
          RCPT TO:<FAX=+15550100@gw.example.test>\r\n\
          RCPT TO:<user@other.example>\r\n\
          RCPT TO:<FAX=+15550101@gw.example.test>\r\n\
          DATA\r\n\
          hello\r\n.\r\n\
          NOOP\r\n\
          QUIT\r\n",
    )
    .await;
    // RFC 2920 §3.1: replies in the order of the commands.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(c.code().await);
    }
    assert_eq!(
        got,
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.7.1",
            "250 2.1.5",
            "354 Start",
            "250 2.0.0"
        ]
    );
    assert_eq!(c.code().await, "250 2.0.0");
    assert_eq!(c.code().await, "221 2.0.0");
    c.expect_eof().await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, b"hello\r\n");
    assert_eq!(messages[0].0.rcpts.len(), 2);
}

#[tokio::test]
async fn bad_sequence_is_503() {
    let server = start(config()).await;
    let mut c = Client::connect(server.port).await;
    c.reply().await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "503 5.5.1");
    c.send(b"HELO client.example\r\n").await;
    assert_eq!(c.reply().await, vec!["250 gw.example.test"]);
    assert_eq!(c.cmd("RCPT TO:<FAX=1@gw.example.test>").await, "503 5.5.1");
    assert_eq!(c.cmd("DATA").await, "503 5.5.1");
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    assert_eq!(c.cmd("DATA").await, "503 5.5.1");
}

#[tokio::test]
async fn unknown_command_and_bad_syntax() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    assert_eq!(c.cmd("FROB x").await, "500 5.5.2");
    assert_eq!(c.cmd("MAIL FROM sender").await, "501 5.5.4");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0");
}

#[tokio::test]
async fn over_long_command_line_is_500_5_5_2() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    // RFC 5321 §4.5.3.1.4: 512 octets including CRLF.
    let mut line = b"NOOP ".to_vec();
    line.resize(600, b'x');
    line.extend_from_slice(b"\r\n");
    c.send(&line).await;
    // RFC 5321 §4.5.3.1 "500 Line too long"; X.5.2 (X.5.6 is AUTH's, RFC 4954 §4).
    assert_eq!(c.code().await, "500 5.5.2");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0");
}

#[tokio::test]
async fn declared_size_too_big_is_552() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    // RFC 1870 §6.3.
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.example> SIZE=1001").await,
        "552 5.3.4"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.example> SIZE=1000").await,
        "250 2.1.0"
    );
}

#[tokio::test]
async fn oversize_data_is_552_after_the_dot_and_session_goes_on() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    assert_eq!(c.cmd("RCPT TO:<FAX=1@gw.example.test>").await, "250 2.1.5");
    c.send(b"DATA\r\n").await;
    c.reply().await;
    let line = format!("{}\r\n", "y".repeat(98));
    for _ in 0..30 {
        c.send(line.as_bytes()).await;
    }
    c.send(b".\r\n").await;
    // RFC 1870 §6.4 / RFC 3463 X.3.4.
    assert_eq!(c.code().await, "552 5.3.4");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0");
    // The transaction was reset: a new MAIL is in sequence.
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn smuggled_end_of_data_does_not_end_the_message() {
    // Bare line endings kept as data: the case where a lax reader would split the message.
    let server = start(ListenerConfig {
        data_bare_line_ending: smtp::BareLineEnding::Accept,
        ..config()
    })
    .await;
    let mut c = Client::ready(server.port).await;
    let smuggled = "MAIL FROM:<evil@client.example>\r\nRCPT TO:<FAX=666@gw.example.test>\r\nDATA\r\nforged\r\n";
    let body = format!(
        "MAIL FROM:<a@client.example>\r\nRCPT TO:<FAX=1@gw.example.test>\r\nDATA\r\n\
         first\n.\n{smuggled}second\r.\r{smuggled}third\n.\r\n{smuggled}.\r\nQUIT\r\n"
    );
    c.send(body.as_bytes()).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(c.code().await);
    }
    assert_eq!(
        got,
        [
            "250 2.1.0",
            "250 2.1.5",
            "354 Start",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    c.expect_eof().await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "exactly one message");
    let text = String::from_utf8(messages[0].1.clone()).expect("ascii");
    assert!(text.starts_with("first\n.\nMAIL FROM:<evil@"), "{text:?}");
    assert_eq!(text.matches("forged").count(), 3);
}

#[tokio::test]
async fn relay_attempt_is_refused() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    c.send(b"RCPT TO:<user@other.example>\r\n").await;
    assert_eq!(c.reply().await, vec!["550 5.7.1 Relaying denied"]);
    assert_eq!(c.cmd("DATA").await, "503 5.5.1");
}

#[tokio::test]
async fn shutdown_sends_421_to_idle_session() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    server.stop.send(true).expect("listener alive");
    // RFC 3463 X.3.2: system not accepting network messages.
    assert_eq!(c.code().await, "421 4.3.2");
    c.expect_eof().await;
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("serve ok");
}

#[tokio::test]
async fn shutdown_during_data_finishes_the_message_first() {
    let server = start(config()).await;
    let mut c = Client::ready(server.port).await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    assert_eq!(c.cmd("RCPT TO:<FAX=1@gw.example.test>").await, "250 2.1.5");
    c.send(b"DATA\r\n").await;
    c.reply().await;
    c.send(b"part one\r\n").await;
    server.stop.send(true).expect("listener alive");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(b"part two\r\n.\r\n").await;
    assert_eq!(c.code().await, "250 2.0.0");
    assert_eq!(c.code().await, "421 4.3.2");
    c.expect_eof().await;
    assert_eq!(server.messages()[0].1, b"part one\r\npart two\r\n");
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("serve ok");
}

#[tokio::test]
async fn command_timeout_is_421_4_4_2() {
    let server = start(ListenerConfig {
        command_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut c = Client::connect(server.port).await;
    c.reply().await;
    assert_eq!(c.code().await, "421 4.4.2");
    c.expect_eof().await;
}

#[tokio::test]
async fn data_timeout_is_421_4_4_2_and_nothing_is_accepted() {
    let server = start(ListenerConfig {
        data_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut c = Client::ready(server.port).await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await, "250 2.1.0");
    assert_eq!(c.cmd("RCPT TO:<FAX=1@gw.example.test>").await, "250 2.1.5");
    c.send(b"DATA\r\n").await;
    c.reply().await;
    c.send(b"half a message\r\n").await;
    // RFC 5321 §4.5.3.2.5/.6: the server gives up on a silent client; X.4.2 bad connection.
    assert_eq!(c.code().await, "421 4.4.2");
    c.expect_eof().await;
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn trickling_client_meets_the_session_time_limit() {
    let server = start(ListenerConfig {
        max_session_time: Duration::from_millis(600),
        ..config()
    })
    .await;
    let mut c = Client::ready(server.port).await;
    // One octet every 50 ms never meets the 30 s read timeouts; the session limit ends it.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if c.writer.write_all(b"N").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.code().await, "421 4.4.2");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn sessions_over_the_cap_get_421_4_7_0() {
    let server = start(ListenerConfig {
        max_sessions: 1,
        ..config()
    })
    .await;
    let mut first = Client::connect(server.port).await;
    first.reply().await;
    let mut second = Client::connect(server.port).await;
    assert_eq!(second.code().await, "421 4.7.0");
    second.expect_eof().await;
    assert_eq!(first.cmd("NOOP").await, "250 2.0.0");
}

#[tokio::test]
async fn per_client_cap_and_rate_get_421_4_7_0() {
    let server = start(ListenerConfig {
        max_sessions_per_client: 2,
        max_connections_per_client: 3,
        ..config()
    })
    .await;
    let mut first = Client::connect(server.port).await;
    first.reply().await;
    let mut second = Client::connect(server.port).await;
    second.reply().await;
    let mut third = Client::connect(server.port).await;
    assert_eq!(third.code().await, "421 4.7.0");
    third.expect_eof().await;
    assert_eq!(second.cmd("QUIT").await, "221 2.0.0");
    second.expect_eof().await;
    // Only one session open now, but this is the 4th connection in the window.
    let mut fourth = Client::connect(server.port).await;
    assert_eq!(fourth.code().await, "421 4.7.0");
    assert_eq!(first.cmd("NOOP").await, "250 2.0.0");
}

#[tokio::test]
async fn too_many_errors_close_with_421_4_7_0() {
    let server = start(ListenerConfig {
        max_errors: 3,
        ..config()
    })
    .await;
    let mut c = Client::ready(server.port).await;
    c.send(b"FROB\r\nFROB\r\nFROB\r\nNOOP\r\n").await;
    assert_eq!(c.code().await, "500 5.5.2");
    assert_eq!(c.code().await, "500 5.5.2");
    assert_eq!(c.code().await, "500 5.5.2");
    assert_eq!(c.code().await, "421 4.7.0");
    c.expect_eof().await;
}

/// Python's smtplib as the client: the DSN parameters it sends arrive decoded in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_dsn_parameters() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let have_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_python {
        assert!(!ci, "python3 is required under CI=true");
        eprintln!("SKIP python_smtplib_dsn_parameters: python3 not found");
        return;
    }
    let server = start(config()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_client.py");
    let port = server.port.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(port)
            .output()
    })
    .await
    .expect("join")
    .expect("run python3");
    assert!(
        output.status.success(),
        "smtp_client.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("json from smtp_client.py");
    assert_eq!(result["refused"], serde_json::json!({}));
    assert_eq!(result["size_limit"], "1000");
    for keyword in [
        "pipelining",
        "size",
        "8bitmime",
        "enhancedstatuscodes",
        "dsn",
    ] {
        assert!(
            result["esmtp_features"]
                .as_array()
                .is_some_and(|a| a.iter().any(|k| k == keyword)),
            "{keyword} missing: {result}"
        );
    }
    assert_eq!(result["second_mail"], 250);
    // `+15` decodes to the octet 0x15 (RFC 3461 §4): no rfc822 address → 501.
    assert_eq!(result["raw_plus_orcpt"], 501);

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, message) = &messages[0];
    assert_eq!(
        message.as_slice(),
        result["message"].as_str().expect("message").as_bytes()
    );
    assert_eq!(envelope.helo, "client.example");
    assert_eq!(envelope.mail_from, "sender@client.example");
    assert_eq!(envelope.ret, Some(Ret::Hdrs));
    assert_eq!(envelope.envid.as_deref(), Some("JOB-1"));
    assert_eq!(envelope.rcpts.len(), 1);
    let rcpt = &envelope.rcpts[0];
    assert_eq!(rcpt.address, "FAX=+15550100@gw.example.test");
    assert_eq!(
        rcpt.notify,
        Some(Notify {
            success: true,
            failure: true,
            delay: false
        })
    );
    assert_eq!(
        rcpt.orcpt.as_deref(),
        Some("rfc822;+15550100@gw.example.test")
    );
}
