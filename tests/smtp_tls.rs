//! STARTTLS (RFC 3207), implicit TLS (RFC 8314 §3.3) and AUTH PLAIN/LOGIN (RFC 4954) over
//! real sockets on 127.0.0.1 port 0, with rcgen test certificates (a CA and a leaf: rustls
//! refuses a CA-flagged server certificate). Clients: a raw socket plus tokio-rustls, Python's
//! smtplib, and swaks.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use t37gw::smtp::{
    self, Backend, Envelope, ListenerConfig, PemSource, Recipient, Reply, TlsConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Backend for Recorder {
    fn rcpt(&self, _: &Envelope, rcpt: &Recipient) -> Result<(), Reply> {
        if rcpt.address.starts_with("FAX=") && rcpt.address.ends_with("@gw.example.test") {
            Ok(())
        } else {
            Err(Reply::new(550, "5.7.1", "Relaying denied"))
        }
    }
    async fn data(&self, envelope: Envelope, message: Vec<u8>) -> Reply {
        self.messages
            .lock()
            .expect("lock")
            .push((envelope, message));
        Reply::new(250, "2.0.0", "Message accepted for delivery")
    }
    fn authenticate(&self, user: &str, password: &str) -> bool {
        user == "fax" && password == "secret"
    }
}

/// A test CA and a leaf for `localhost` signed by it: (CA DER, leaf PEM, key PEM).
fn certificates() -> (Vec<u8>, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let ca_der = AsRef::<rcgen::Certificate>::as_ref(&ca).der().to_vec();
    (ca_der, leaf.pem(), leaf_key.serialize_pem())
}

struct Server {
    port: u16,
    tls_port: u16,
    backend: Arc<Recorder>,
    ca_der: Vec<u8>,
    _stop: watch::Sender<bool>,
}

async fn start(adjust: impl FnOnce(&mut ListenerConfig)) -> Server {
    let (ca_der, cert, key) = certificates();
    let mut config = ListenerConfig {
        hostname: "gw.example.test".into(),
        tls: Some(TlsConfig {
            cert: PemSource::Pem(cert.into_bytes()),
            key: PemSource::Pem(key.into_bytes()),
        }),
        auth: true,
        ..ListenerConfig::default()
    };
    adjust(&mut config);
    let config = Arc::new(config);
    let backend = Arc::new(Recorder::default());
    let (stop, rx) = watch::channel(false);
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let implicit = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = plain.local_addr().expect("addr").port();
    let tls_port = implicit.local_addr().expect("addr").port();
    tokio::spawn(smtp::serve(
        plain,
        config.clone(),
        backend.clone(),
        rx.clone(),
    ));
    tokio::spawn(smtp::serve_tls(implicit, config, backend.clone(), rx));
    Server {
        port,
        tls_port,
        backend,
        ca_der,
        _stop: stop,
    }
}

/// Read one reply from a buffered stream: its lines without CRLF.
async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, r.read_line(&mut line))
            .await
            .expect("reply within time")
            .expect("read");
        assert!(n > 0, "closed; so far {lines:?}");
        let line = line.trim_end_matches("\r\n").to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .expect("write");
    let r = reply(s).await;
    r.last()
        .expect("line")
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn connector(ca_der: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("name")
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let server = start(|_| {}).await;
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut plain = BufReader::new(tcp);
    reply(&mut plain).await;
    plain
        .get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .expect("write");
    let ehlo = reply(&mut plain).await;
    assert!(
        ehlo.iter()
            .any(|l| l == "250-STARTTLS" || l == "250 STARTTLS"),
        "{ehlo:?}"
    );
    // RFC 4954 §4 / §14: no AUTH offered before TLS.
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    // RFC 4954 §6: AUTH in clear text → 538 5.7.11.
    assert_eq!(
        cmd(&mut plain, "AUTH PLAIN AGZheABzZWNyZXQ=").await,
        "538 5.7.11"
    );
    // One write: STARTTLS and a command injected behind it (CVE-2011-0411 style).
    plain
        .get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<injected@attacker.example>\r\n")
        .await
        .expect("write");
    assert_eq!(reply(&mut plain).await, ["220 2.0.0 Ready to start TLS"]);
    assert!(plain.buffer().is_empty(), "plain-text bytes after the 220");
    let tcp = plain.into_inner();
    let tls = tokio::time::timeout(WAIT, connector(&server.ca_der).connect(server_name(), tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    // RFC 3207 §4.2: everything from before TLS is forgotten, EHLO included: a MAIL now is
    // out of order (and the injected MAIL was never executed, or this would be 503 for a
    // second MAIL after a reset anyway: see the EHLO + MAIL below getting 250).
    assert_eq!(
        cmd(&mut tls, "MAIL FROM:<a@client.example>").await,
        "503 5.5.1"
    );
    tls.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .expect("write");
    let ehlo = reply(&mut tls).await;
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(
        ehlo.iter().any(|l| l.ends_with("AUTH PLAIN LOGIN")),
        "{ehlo:?}"
    );
    assert_eq!(cmd(&mut tls, "STARTTLS").await, "503 5.5.1");
    assert_eq!(
        cmd(&mut tls, "MAIL FROM:<a@client.example>").await,
        "250 2.1.0"
    );
    assert_eq!(
        cmd(&mut tls, "RCPT TO:<FAX=1@gw.example.test>").await,
        "250 2.1.5"
    );
    tls.get_mut()
        .write_all(b"BDAT 6 LAST\r\nhello\n")
        .await
        .expect("write");
    assert_eq!(
        reply(&mut tls).await[0],
        "250 2.0.0 Message accepted for delivery"
    );
    let messages = server.backend.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.mail_from, "a@client.example");
    assert!(messages[0].0.tls);
    assert_eq!(messages[0].1, b"hello\n");
}

#[tokio::test]
async fn require_tls_and_require_auth() {
    let server = start(|c| {
        c.require_tls = true;
        c.require_auth = true;
    })
    .await;
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut plain = BufReader::new(tcp);
    reply(&mut plain).await;
    plain
        .get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .expect("write");
    reply(&mut plain).await;
    // RFC 3207 §4.
    assert_eq!(
        cmd(&mut plain, "MAIL FROM:<a@client.example>").await,
        "530 5.7.0"
    );
    assert_eq!(cmd(&mut plain, "STARTTLS extra").await, "501 5.5.4");
    assert_eq!(cmd(&mut plain, "STARTTLS").await, "220 2.0.0");
    let tls = connector(&server.ca_der)
        .connect(server_name(), plain.into_inner())
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    tls.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .expect("write");
    reply(&mut tls).await;
    // RFC 4954 §6.
    assert_eq!(
        cmd(&mut tls, "MAIL FROM:<a@client.example>").await,
        "530 5.7.0"
    );
    assert_eq!(cmd(&mut tls, "AUTH CRAM-MD5").await, "504 5.5.4");
    // RFC 4616 §2 message "\0fax\0wrong" → 535 5.7.8.
    assert_eq!(
        cmd(&mut tls, "AUTH PLAIN AGZheAB3cm9uZw==").await,
        "535 5.7.8"
    );
    // RFC 4954 §4: an empty challenge is "334 " (code, space, nothing).
    assert_eq!(cmd(&mut tls, "AUTH PLAIN").await, "334 ");
    assert_eq!(cmd(&mut tls, "*").await, "501 5.7.0");
    assert_eq!(cmd(&mut tls, "AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(cmd(&mut tls, "not base64!").await, "501 5.5.2");
    // "\0fax\0secret".
    assert_eq!(
        cmd(&mut tls, "AUTH PLAIN AGZheABzZWNyZXQ=").await,
        "235 2.7.0"
    );
    assert_eq!(
        cmd(&mut tls, "AUTH PLAIN AGZheABzZWNyZXQ=").await,
        "503 5.5.1"
    );
    assert_eq!(
        cmd(&mut tls, "MAIL FROM:<a@client.example>").await,
        "250 2.1.0"
    );
    assert_eq!(
        cmd(&mut tls, "RCPT TO:<FAX=1@gw.example.test>").await,
        "250 2.1.5"
    );
    assert_eq!(cmd(&mut tls, "DATA").await, "354 Start");
    assert_eq!(cmd(&mut tls, "x\r\n.").await, "250 2.0.0");
    let messages = server.backend.messages.lock().expect("lock").clone();
    assert_eq!(messages[0].0.auth_user.as_deref(), Some("fax"));
}

#[tokio::test]
async fn implicit_tls_listener() {
    let server = start(|_| {}).await;
    let tcp = TcpStream::connect(("127.0.0.1", server.tls_port))
        .await
        .expect("connect");
    let tls = connector(&server.ca_der)
        .connect(server_name(), tcp)
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    assert_eq!(reply(&mut tls).await, ["220 gw.example.test ESMTP t37gw"]);
    tls.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .expect("write");
    let ehlo = reply(&mut tls).await;
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(
        ehlo.iter().any(|l| l.ends_with("AUTH PLAIN LOGIN")),
        "{ehlo:?}"
    );
}

#[tokio::test]
async fn serve_tls_without_certificate_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (_stop, rx) = watch::channel(false);
    let result = smtp::serve_tls(
        listener,
        Arc::new(ListenerConfig::default()),
        Arc::new(Recorder::default()),
        rx,
    )
    .await;
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (_stop, rx) = watch::channel(false);
    let bad = ListenerConfig {
        tls: Some(TlsConfig {
            cert: PemSource::Pem(b"not a certificate".to_vec()),
            key: PemSource::Pem(b"not a key".to_vec()),
        }),
        ..ListenerConfig::default()
    };
    let result = smtp::serve(listener, Arc::new(bad), Arc::new(Recorder::default()), rx).await;
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

fn have(tool: &str, test: &str) -> bool {
    let ok = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true"
        );
        eprintln!("SKIP {test}: {tool} not found");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_starttls_implicit_tls_and_auth() {
    if !have("python3", "python_smtplib_starttls_implicit_tls_and_auth") {
        return;
    }
    let server = start(|_| {}).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_tls_client.py");
    let (port, tls_port) = (server.port.to_string(), server.tls_port.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &port, &tls_port])
            .output()
    })
    .await
    .expect("join")
    .expect("run python3");
    assert!(
        output.status.success(),
        "smtp_tls_client.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let has = |key: &str, word: &str| {
        r[key]
            .as_array()
            .is_some_and(|a| a.iter().any(|k| k == word))
    };
    assert!(
        has("before_tls", "starttls") && !has("before_tls", "auth"),
        "{r}"
    );
    assert!(
        !has("after_tls", "starttls") && has("after_tls", "auth"),
        "{r}"
    );
    assert!(has("after_tls", "chunking"), "{r}");
    assert_eq!(r["starttls_code"], 220);
    assert!(
        r["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{r}"
    );
    assert_eq!(r["auth_mechanisms"], serde_json::json!(["PLAIN", "LOGIN"]));
    assert_eq!(r["wrong_password"], 535);
    assert_eq!(r["login"], 235);
    assert_eq!(r["refused"], serde_json::json!({}));
    assert!(!has("implicit_features", "starttls"), "{r}");
    assert_eq!(r["implicit_login"], 235);
    let messages = server.backend.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 2);
    for (envelope, _) in &messages {
        assert!(envelope.tls);
        assert_eq!(envelope.auth_user.as_deref(), Some("fax"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_and_tls_on_connect_with_auth() {
    if !have("swaks", "swaks_starttls_and_tls_on_connect_with_auth") {
        return;
    }
    let server = start(|c| c.require_auth = true).await;
    for (port, mode, mechanism) in [
        (server.port, "--tls", "PLAIN"),
        (server.tls_port, "--tls-on-connect", "LOGIN"),
    ] {
        let port = port.to_string();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("swaks")
                .args([
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port,
                    mode,
                    "--auth",
                    mechanism,
                    "--auth-user",
                    "fax",
                    "--auth-password",
                    "secret",
                    "--ehlo",
                    "client.example",
                    "--from",
                    "a@client.example",
                    "--to",
                    "FAX=1@gw.example.test",
                    "--timeout",
                    "10",
                ])
                .output()
        })
        .await
        .expect("join")
        .expect("run swaks");
        let transcript = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "swaks {mode}:\n{transcript}");
        assert!(transcript.contains("<~  235 2.7.0"), "{transcript}");
        assert!(transcript.contains("<~  250 2.0.0"), "{transcript}");
    }
    assert_eq!(server.backend.messages.lock().expect("lock").len(), 2);
}
