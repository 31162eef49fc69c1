//! End-to-end tests over real sockets on 127.0.0.1: fax → onramp mail (with DSN and MDN
//! requests) → the gateway's own offramp listener → fax outbox → DSN back → correlated to
//! the onramp job. Oracles: libtiff (`tiffinfo -D`, `tiffcp -c none`) for the faxes,
//! Python's smtplib as a real SMTP client, RFC 3461/3464 for the reports.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;
use t37gw::onramp::ReceivedFax;
use t37gw::tiff_f::{self, Limits, WriteOptions};

fn g3_fax() -> ReceivedFax {
    ReceivedFax {
        dnis: "12025550100".into(),
        ani: "12025550199".into(),
        tsi: Some("loop test".into()),
        pages: vec![fixture("fax-3page-g3.tif")],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_loop_fax_mail_fax_dsn() {
    if !have_tool("tiffinfo") || !have_tool("tiffcp") || !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let fax = g3_fax();
    let png = ReceivedFax {
        dnis: "4930901820".into(),
        ani: "4940123456".into(),
        tsi: None,
        pages: vec![fixture("scan-page.png")],
    };
    let j1 = gw.shared.submit_fax(&fax).unwrap();
    let j2 = gw.shared.submit_fax(&png).unwrap();
    for job in [&j1, &j2] {
        let ev = work
            .wait_for(30, "a delivered DSN", |e| {
                &e.job == job && e.event == "dsn_received"
            })
            .await;
        assert_eq!(ev.str("action"), Some("delivered"), "{}", ev.to_line());
        assert_eq!(ev.str("status"), Some("2.0.0"));
        assert_eq!(ev.str("matched_by"), Some("envid"));
    }
    gw.shutdown().await;

    let events = work.events();
    for job in [&j1, &j2] {
        let names: Vec<&str> = events
            .iter()
            .filter(|e| &e.job == job)
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(names.first(), Some(&"onramp_submitted"), "{names:?}");
        assert!(names.contains(&"mail_sent"), "{names:?}");
        // The offramp side of the same mail: received with our ENVID, faxed.
        let off = events
            .iter()
            .find(|e| e.event == "offramp_received" && e.str("envid") == Some(job.as_str()))
            .expect("offramp_received with the onramp job's ENVID");
        assert!(events
            .iter()
            .any(|e| e.job == off.job && e.event == "fax_delivered"));
        assert!(events
            .iter()
            .any(|e| e.job == off.job && e.event == "dsn_sent"));
    }

    // One TIFF per fax; libtiff decodes each cleanly as G3 1-D, 1728 wide, right page count.
    let tiffs = work.outbox_tiffs();
    assert_eq!(tiffs.len(), 2, "{tiffs:?}");
    let fixture_pages = libtiff_pages(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif"),
    );
    assert_eq!(fixture_pages.len(), 3);
    let mut by_pages: Vec<(usize, std::path::PathBuf)> = Vec::new();
    for t in &tiffs {
        let (ok, out, err) = run("tiffinfo", &["-D", t.to_str().unwrap()]);
        assert!(ok, "tiffinfo failed: {err}");
        assert!(
            err.trim().is_empty(),
            "tiffinfo -D warned on {}: {err}",
            t.display()
        );
        assert!(out.contains("Compression Scheme: CCITT Group 3"), "{out}");
        assert!(!out.contains("2-D"), "profile S is 1-D MH: {out}");
        let widths = out.matches("Image Width: 1728").count();
        let dirs = out.matches("TIFF Directory").count();
        assert_eq!(widths, dirs, "every page 1728 px wide: {out}");
        by_pages.push((dirs, t.clone()));
    }
    by_pages.sort();
    assert_eq!(by_pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);

    // The three-page fax: 1728 px fine G3 in, so TIFF-F normalisation keeps it as is; the
    // faxed pixels must equal libtiff's own decoding of the input file.
    let out_pages = libtiff_pages(&by_pages[1].1);
    assert_eq!(out_pages.len(), 3);
    for (i, (a, b)) in out_pages.iter().zip(&fixture_pages).enumerate() {
        assert_eq!((a.0, a.1), (b.0, b.1), "page {i} size");
        assert!(
            mask_padding(a.0, a.1, &a.2) == mask_padding(b.0, b.1, &b.2),
            "page {i} pixels differ"
        );
    }
    // The scan: the pixels libtiff decodes equal the page the onramp encoded.
    let encoded = tiff_f::convert(
        &[&fixture("scan-page.png")],
        &WriteOptions {
            bilevel: tiff_f::Bilevel::FloydSteinberg,
            ..WriteOptions::default()
        },
        &Limits::default(),
    )
    .unwrap();
    let tmp = work.path().join("expected.tif");
    std::fs::write(&tmp, &encoded.bytes).unwrap();
    let expected = libtiff_pages(&tmp);
    let got = libtiff_pages(&by_pages[0].1);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (expected[0].0, expected[0].1));
    assert!(
        mask_padding(got[0].0, got[0].1, &got[0].2)
            == mask_padding(expected[0].0, expected[0].1, &expected[0].2)
    );
}

/// Read one (possibly multi-line) SMTP reply; returns its last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line.trim_end().to_string();
        }
    }
}

fn dialog(addr: std::net::SocketAddr, steps: &[&str]) -> Vec<String> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut replies = vec![reply(&mut r)];
    for step in steps {
        w.write_all(format!("{step}\r\n").as_bytes()).unwrap();
        replies.push(reply(&mut r));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_attempts_are_refused() {
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let addr = gw.local_addr;
    let replies = tokio::task::spawn_blocking(move || {
        dialog(
            addr,
            &[
                "EHLO client.example",
                "MAIL FROM:<someone@example.org>",
                "RCPT TO:<victim@other.example>",
                "RCPT TO:<FAX=+12025551234@other.example>",
                "RCPT TO:<nobody@gw.example.test>",
                "RCPT TO:<FAX=+19005551234@gw.example.test>",
                "RCPT TO:<FAX=+12025551234@gw.example.test>",
                "QUIT",
            ],
        )
    })
    .await
    .unwrap();
    assert!(replies[0].starts_with("220 "));
    assert!(replies[2].starts_with("250 2.1.0"), "{replies:?}");
    // RFC 5321 §3.6.2 / RFC 3463 5.7.1: not an open relay.
    assert!(replies[3].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[4].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[5].starts_with("550 5.1.1"), "{replies:?}");
    // The premium-rate dial peer rejects the number (shipped config: +1900T → reject).
    assert!(replies[6].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[7].starts_with("250 2.1.5"), "{replies:?}");
    gw.shutdown().await;
}

/// Write a synthetic onramp job into the journal, as if this gateway had sent mail with
/// ENVID=`job` (the offramp's DSN then correlates to it).
fn seed_onramp_job(work: &Workdir, job: &str, message_id: &str) {
    let j = t37gw::journal::Journal::open(&work.path().join("journal.jsonl")).unwrap();
    j.append(
        &t37gw::journal::Event::new(job, "onramp_submitted")
            .with("peer", "test")
            .with("recipient", "FAX=+12025550100@gw.example.test")
            .with("message_id", message_id),
    )
    .unwrap();
}

/// An image/tiff attachment whose base64 was cut and mangled on the way: a failure DSN that
/// says the attachment is not a TIFF file and blames the transfer encoding (RFC 3463 5.6.5),
/// not "unsupported image".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mangled_base64_tiff_attachment_gets_a_5_6_5_dsn_that_says_so() {
    if !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    seed_onramp_job(&work, "ON-test-b64", "<ON-test-b64.x@gw.example.test>");
    let gw = start(&work, |t| t).await;
    let port = gw.local_addr.port();
    // Python's email package writes the part; the base64 text is then damaged as a broken
    // relay would: the first line replaced by other base64 text.
    let body = r#"msg.set_content('fax attached')
import base64
msg.add_attachment(b'II*\x00' + bytes(200), maintype='image', subtype='tiff', filename='f.tif')
part = list(msg.iter_attachments())[0]
part.set_payload('QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n')"#;
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || smtplib_send(port, "ON-test-b64", "FAILURE", body))
            .await
            .unwrap();
    assert!(ok, "smtplib failed: {out} {err}");
    let ev = work
        .wait_for(30, "the failure DSN", |e| {
            e.job == "ON-test-b64" && e.event == "dsn_received"
        })
        .await;
    assert_eq!(ev.str("action"), Some("failed"), "{}", ev.to_line());
    assert_eq!(ev.str("status"), Some("5.6.5"), "{}", ev.to_line());
    let diag = ev.str("diagnostic_code").unwrap_or_default().to_string();
    assert!(
        diag.contains("not a TIFF file") && diag.contains("base64"),
        "{}",
        ev.to_line()
    );
    gw.shutdown().await;
}

fn smtplib_send(port: u16, envid: &str, notify: &str, body_py: &str) -> (bool, String, String) {
    let py = format!(
        r#"
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg['From'] = 'fax-gw@gw.example.test'
msg['To'] = 'FAX=+12025550100@gw.example.test'
msg['Subject'] = 'test'
msg['Message-ID'] = '<{envid}.x@gw.example.test>'
{body_py}
with smtplib.SMTP('127.0.0.1', {port}, timeout=20) as s:
    s.ehlo('client.example')
    assert s.has_extn('dsn'), 'DSN not offered'
    r = s.send_message(msg, mail_options=['RET=HDRS', 'ENVID={envid}'],
                       rcpt_options=['NOTIFY={notify}', 'ORCPT=rfc822;+2B12025550100@gw.example.test'])
    print('refused', r)
"#
    );
    run("python3", &["-c", &py])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_without_tiff_gets_a_5_6_failure_dsn_correlated_back() {
    if !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    seed_onramp_job(
        &work,
        "ON-test-notiff",
        "<ON-test-notiff.x@gw.example.test>",
    );
    let gw = start(&work, |t| t).await;
    let port = gw.local_addr.port();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        smtplib_send(
            port,
            "ON-test-notiff",
            "FAILURE",
            "msg.set_content('no image here, just text')",
        )
    })
    .await
    .unwrap();
    assert!(ok, "smtplib failed: {out} {err}");
    let ev = work
        .wait_for(30, "the failure DSN", |e| {
            e.job == "ON-test-notiff" && e.event == "dsn_received"
        })
        .await;
    assert_eq!(ev.str("action"), Some("failed"), "{}", ev.to_line());
    assert!(
        ev.str("status").is_some_and(|s| s.starts_with("5.6.")),
        "{}",
        ev.to_line()
    );
    assert!(
        work.outbox_tiffs().is_empty(),
        "no fax for a message without an image"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_with_dsn_parameters_gets_a_success_dsn() {
    if !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    seed_onramp_job(
        &work,
        "ON-test-smtplib",
        "<ON-test-smtplib.x@gw.example.test>",
    );
    let gw = start(&work, |t| t).await;
    let port = gw.local_addr.port();
    let tif = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let body = format!(
        "msg.set_content('fax attached')\nmsg.add_attachment(open({:?}, 'rb').read(), maintype='image', subtype='tiff', filename='fax.tif', params={{'application': 'faxbw'}})",
        tif.display().to_string()
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        smtplib_send(port, "ON-test-smtplib", "SUCCESS,FAILURE", &body)
    })
    .await
    .unwrap();
    assert!(ok, "smtplib failed: {out} {err}");
    assert!(out.contains("refused {}"), "{out}");
    let received = work
        .wait_for(10, "offramp_received", |e| e.event == "offramp_received")
        .await;
    assert_eq!(received.str("envid"), Some("ON-test-smtplib"));
    let ev = work
        .wait_for(30, "the success DSN", |e| {
            e.job == "ON-test-smtplib" && e.event == "dsn_received"
        })
        .await;
    assert_eq!(ev.str("action"), Some("delivered"), "{}", ev.to_line());
    assert_eq!(ev.str("status"), Some("2.0.0"));
    // ORCPT as the client sent it (RFC 3461 §4.2: xtext, "+2B" is "+"), decoded by the listener.
    assert_eq!(
        ev.str("original_recipient"),
        Some("+12025550100@gw.example.test"),
        "{}",
        ev.to_line()
    );
    // Mapped to the job's own recipient by Final-Recipient (RFC 3464 §2.3.2).
    assert_eq!(
        ev.str("recipient"),
        Some("FAX=+12025550100@gw.example.test"),
        "{}",
        ev.to_line()
    );
    assert_eq!(work.outbox_tiffs().len(), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_completes_the_job_with_one_fax() {
    let work = Workdir::new();
    // First run: the smarthost is down (a closed port), so the onramp mail is deferred.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let gw = start(&work, |t| {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        let i = lines
            .iter()
            .position(|l| l.trim_start().starts_with("- 127.0.0.1:"))
            .unwrap();
        lines[i] = format!("    - 127.0.0.1:{dead_port}");
        lines.join("\n")
    })
    .await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    work.wait_for(20, "mail_deferred", |e| {
        e.job == job && e.event == "mail_deferred"
    })
    .await;
    gw.shutdown().await;
    assert!(!work.events().iter().any(|e| e.event == "mail_sent"));

    // Second run on the same spool and journal, smarthost back (our own listener).
    let gw = start(&work, |t| t).await;
    let ev = work
        .wait_for(30, "the DSN after restart", |e| {
            e.job == job && e.event == "dsn_received"
        })
        .await;
    assert_eq!(ev.str("action"), Some("delivered"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.shutdown().await;
    let events = work.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.job == job && e.event == "mail_sent")
            .count(),
        1
    );
    assert_eq!(
        events.iter().filter(|e| e.event == "fax_delivered").count(),
        1
    );
    assert_eq!(work.outbox_tiffs().len(), 1, "exactly one fax");
}

/// The shipped config with the offramp's catch-all peer sending to a command backend.
fn with_command_backend(argv: &'static str) -> impl Fn(String) -> String {
    move |t: String| {
        t.replace("    session-target: outbox\n", "    session-target: cmd\n")
            .replace(
                "fax-backends:\n",
                &format!("fax-backends:\n  - name: cmd\n    type: command\n    command: {argv}\n"),
            )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_backend_exit_status_decides_the_dsn() {
    // Exit 0: the fax is sent; the command got the TIFF-F file and the number.
    let work = Workdir::new();
    let out = work.path().join("sent");
    std::fs::create_dir_all(&out).unwrap();
    let argv: &'static str = Box::leak(
        format!(
            r#"[sh, -c, 'cp "$1" "{}/$2.tif"', sendfax, "$file$", "$number$"]"#,
            out.display()
        )
        .into_boxed_str(),
    );
    let gw = start(&work, with_command_backend(argv)).await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    let ev = work
        .wait_for(30, "DSN", |e| e.job == job && e.event == "dsn_received")
        .await;
    assert_eq!(ev.str("action"), Some("delivered"), "{}", ev.to_line());
    gw.shutdown().await;
    let sent = out.join("+12025550100.tif");
    assert!(
        sent.is_file(),
        "the command received the fax file and the number"
    );
    if have_tool("tiffinfo") {
        let (ok, info, err) = run("tiffinfo", &[sent.to_str().unwrap()]);
        assert!(
            ok && err.trim().is_empty() && info.matches("TIFF Directory").count() == 3,
            "{info}{err}"
        );
    }

    // Exit 1: the fax failed; the onramp job gets a failure DSN.
    let work = Workdir::new();
    let gw = start(
        &work,
        with_command_backend("[sh, -c, 'echo line busy >&2; exit 1']"),
    )
    .await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    let ev = work
        .wait_for(30, "DSN", |e| e.job == job && e.event == "dsn_received")
        .await;
    assert_eq!(ev.str("action"), Some("failed"), "{}", ev.to_line());
    assert!(
        ev.str("diagnostic_code")
            .is_some_and(|d| d.contains("line busy")),
        "{}",
        ev.to_line()
    );
    gw.shutdown().await;

    // Exit 75 (EX_TEMPFAIL): retried later; NOTIFY=DELAY gets one delay DSN meanwhile.
    let work = Workdir::new();
    let gw = start(&work, with_command_backend("[sh, -c, 'exit 75']")).await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    let ev = work
        .wait_for(30, "DSN", |e| e.job == job && e.event == "dsn_received")
        .await;
    assert_eq!(ev.str("action"), Some("delayed"), "{}", ev.to_line());
    assert!(
        ev.str("status").is_some_and(|s| s.starts_with("4.")),
        "{}",
        ev.to_line()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    gw.shutdown().await;
    let events = work.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.job == job && e.event == "dsn_received")
            .count(),
        1,
        "one delay DSN"
    );
    let off = events
        .iter()
        .find(|e| e.event == "offramp_received" && e.str("envid") == Some(job.as_str()))
        .unwrap();
    assert!(
        !events
            .iter()
            .any(|e| e.job == off.job && e.event == "offramp_completed"),
        "still spooled for a retry"
    );
    let kept: u64 = std::fs::read_dir(work.path().join("spool/offramp"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(kept > 0, "the message is kept in the spool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_picks_up_faxes_dropped_into_the_incoming_directory() {
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let incoming = work.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join("fax1-p1.tif"), fixture("fax-3page-g3.tif")).unwrap();
    std::fs::write(incoming.join("fax1-p2.png"), fixture("scan-page.png")).unwrap();
    // A broken job file is set aside with the reason, not retried forever; one whose page has
    // not arrived yet waits for it.
    std::fs::write(incoming.join("bad.job"), "dnis: [1\npages: nope\n").unwrap();
    // A page path outside the directory can never become valid: refused at once, not waited for.
    std::fs::write(
        incoming.join("evil.job"),
        "dnis: \"1\"\npages: [/etc/passwd]\n",
    )
    .unwrap();
    std::fs::write(
        incoming.join("early.job"),
        "dnis: \"1\"\npages: [late.tif]\n",
    )
    .unwrap();
    // The complete fax last: the broken ones are seen by the same or an earlier scan.
    std::fs::write(incoming.join("fax1.job"), "dnis: \"12025550100\"\nani: \"4940123456\"\ntsi: ACME\npages: [fax1-p1.tif, fax1-p2.png]\n")
        .unwrap();
    let ev = work
        .wait_for(20, "onramp_submitted", |e| e.event == "onramp_submitted")
        .await;
    assert_eq!(ev.str("pages").map(str::to_string), None);
    assert_eq!(ev.details.get("pages").and_then(|v| v.as_u64()), Some(4));
    assert_eq!(ev.str("tsi"), Some("ACME"));
    let job = ev.job.clone();
    work.wait_for(30, "DSN", |e| e.job == job && e.event == "dsn_received")
        .await;
    gw.shutdown().await;
    assert!(!incoming.join("fax1.job").exists() && !incoming.join("fax1-p1.tif").exists());
    let why = std::fs::read_to_string(incoming.join("failed/bad.job.error")).unwrap();
    assert!(why.contains("bad job file"), "{why}");
    let why = std::fs::read_to_string(incoming.join("failed/evil.job.error")).unwrap();
    assert!(why.contains("must be a plain name"), "{why}");
    // The refusal is in the journal too, as a failed onramp job.
    let failed = work
        .events()
        .into_iter()
        .find(|e| e.event == "onramp_failed" && e.str("file") == Some("bad.job"))
        .expect("onramp_failed journalled");
    assert_eq!(failed.str("file"), Some("bad.job"));
    assert!(failed
        .str("reason")
        .is_some_and(|r| r.contains("bad job file")));
    let table = t37gw::jobs::table(&work.events());
    let row = table
        .iter()
        .find(|r| r.id == failed.job)
        .expect("a job row");
    assert_eq!(
        (row.direction.as_str(), row.state.as_str()),
        ("onramp", "failed")
    );
    assert!(
        incoming.join("early.job").exists(),
        "a job waiting for its pages stays in place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_from_the_smarthost_fails_the_job_with_the_servers_reply() {
    // The onramp peer mails a local part our own listener does not know: 550 5.1.1 at RCPT.
    let work = Workdir::new();
    let gw = start(&work, |t| {
        t.replace(
            "mailto:FAX=+$d$@gw.example.test",
            "mailto:nobody-$d$@gw.example.test",
        )
    })
    .await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    let ev = work
        .wait_for(20, "mail_failed", |e| {
            e.job == job && e.event == "mail_failed"
        })
        .await;
    assert_eq!(
        ev.str("recipient"),
        Some("nobody-12025550100@gw.example.test")
    );
    assert!(
        ev.str("reason")
            .is_some_and(|r| r.contains("550") && r.contains("5.1.1")),
        "{}",
        ev.to_line()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.shutdown().await;
    let events = work.events();
    assert!(!events
        .iter()
        .any(|e| e.job == job && (e.event == "mail_sent" || e.event == "mail_deferred")));
    assert!(
        std::fs::read_dir(work.path().join("spool/outq"))
            .unwrap()
            .next()
            .is_none(),
        "no longer queued"
    );
    let rows = t37gw::jobs::table(&events);
    assert_eq!(rows.iter().find(|r| r.id == job).unwrap().state, "failed");
}

/// Run a Python SMTP client `script` (given the gateway's port as its argument) off the
/// runtime; the JSON object it prints.
async fn python_client(script: &'static str, port: u16) -> serde_json::Value {
    let port = port.to_string();
    let out = tokio::task::spawn_blocking(move || run("python3", &["-c", script, &port]))
        .await
        .unwrap();
    assert!(out.0, "python client: {}", out.2);
    serde_json::from_str(&out.1).expect("json")
}

/// A test CA and a `localhost` certificate signed by it: `cert.pem` and `key.pem` in `work`.
fn write_test_certificate(work: &Workdir) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(work.path().join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(work.path().join("key.pem"), key.serialize_pem()).unwrap();
}

/// AUTH as configured: a users file of SHA-crypt hashes made by `openssl passwd -6` (the
/// hash format of /etc/shadow and Dovecot), `require-auth: true`; Python's smtplib as the
/// client. RFC 4954: AUTH only after STARTTLS (§4, no clear-text passwords), `530 5.7.0`
/// for MAIL before AUTH (§6), `535 5.7.8` for a wrong password, `235 2.7.0` for the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_users_file_and_require_auth_with_python_smtplib() {
    if !have_tool("openssl") || !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    write_test_certificate(&work);
    let (ok, hash, err) = run("openssl", &["passwd", "-6", "secret"]);
    assert!(ok && hash.starts_with("$6$"), "openssl passwd: {err}");
    std::fs::write(
        work.path().join("users"),
        format!("# fax senders\nfax:{}\n", hash.trim()),
    )
    .unwrap();
    let gw = start(&work, |t| {
        t.replace(
            "  # tls-certificate: /etc/t37gw/cert.pem",
            "  tls-certificate: cert.pem",
        )
        .replace("  # tls-key: /etc/t37gw/key.pem", "  tls-key: key.pem")
        .replace(
            "  # auth-users-file: /etc/t37gw/users",
            "  auth-users-file: users",
        )
        .replace("  # require-auth: true", "  require-auth: true")
    })
    .await;
    let script = r#"
import json, smtplib, ssl, sys
ctx = ssl._create_unverified_context()
r = {}
msg = b"Subject: authenticated\r\nMessage-ID: <auth-1@client.example>\r\n\r\nno tiff\r\n"
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.example", timeout=10) as s:
    s.ehlo()
    r["before_tls"] = sorted(s.esmtp_features)
    r["mail_before_tls"] = s.mail("a@client.example")[0]
    s.rset()
    s.starttls(context=ctx)
    s.ehlo()
    r["auth"] = s.esmtp_features.get("auth", "").split()
    code, text = s.mail("a@client.example")
    r["mail_before_auth"] = [code, text.decode()]
    s.rset()
    try:
        s.login("fax", "wrong")
        r["wrong"] = 235
    except smtplib.SMTPAuthenticationError as e:
        r["wrong"] = [e.smtp_code, e.smtp_error.decode()]
    try:
        s.login("nobody", "secret")
        r["unknown"] = 235
    except smtplib.SMTPAuthenticationError as e:
        r["unknown"] = e.smtp_code
    code, text = s.login("fax", "secret")
    r["login"] = [code, text.decode()]
    s.sendmail("a@client.example", ["FAX=+12025551234@gw.example.test"], msg)
print(json.dumps(r))
"#;
    let r = python_client(script, gw.local_addr.port()).await;
    let before: Vec<_> = r["before_tls"].as_array().unwrap().iter().collect();
    assert!(
        before.iter().any(|f| *f == "starttls") && !before.iter().any(|f| *f == "auth"),
        "{r}"
    );
    assert_eq!(r["mail_before_tls"], 530, "{r}");
    assert_eq!(r["auth"], serde_json::json!(["PLAIN", "LOGIN"]), "{r}");
    assert_eq!(r["mail_before_auth"][0], 530, "{r}");
    assert!(
        r["mail_before_auth"][1]
            .as_str()
            .unwrap()
            .starts_with("5.7.0"),
        "{r}"
    );
    assert_eq!(r["wrong"][0], 535, "{r}");
    assert!(r["wrong"][1].as_str().unwrap().starts_with("5.7.8"), "{r}");
    assert_eq!(r["unknown"], 535, "{r}");
    assert_eq!(r["login"][0], 235, "{r}");
    assert!(r["login"][1].as_str().unwrap().starts_with("2.7.0"), "{r}");
    let ev = work
        .wait_for(20, "offramp_received", |e| e.event == "offramp_received")
        .await;
    assert_eq!(ev.str("auth_user"), Some("fax"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_keys_in_the_config_turn_on_starttls_and_require_tls() {
    let work = Workdir::new();
    write_test_certificate(&work);
    let gw = start(&work, |t| {
        t.replace(
            "  # tls-certificate: /etc/t37gw/cert.pem",
            "  tls-certificate: cert.pem",
        )
        .replace("  # tls-key: /etc/t37gw/key.pem", "  tls-key: key.pem")
        .replace("  # require-tls: true", "  require-tls: true")
    })
    .await;
    let addr = gw.local_addr;
    let replies = tokio::task::spawn_blocking(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut lines = Vec::new();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        w.write_all(b"EHLO client.example\r\n").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            lines.push(line.trim_end().to_string());
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        }
        w.write_all(b"MAIL FROM:<a@example.org>\r\n").unwrap();
        lines.push(reply(&mut r));
        lines
    })
    .await
    .unwrap();
    assert!(
        replies.iter().any(|l| l.ends_with("STARTTLS")),
        "{replies:?}"
    );
    // RFC 3207 §4: a server that requires TLS answers 530 5.7.0 until STARTTLS.
    assert!(
        replies.last().unwrap().starts_with("530 5.7.0"),
        "{replies:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_report_within_the_deadline_is_a_visible_state() {
    // Mail to the return address itself is accepted and never reported on: silence.
    let work = Workdir::new();
    let gw = start(&work, |t| {
        t.replace(
            "mailto:FAX=+$d$@gw.example.test",
            "mailto:fax-gw@gw.example.test",
        )
        .replace("report-deadline: 172800", "report-deadline: 1")
    })
    .await;
    let job = gw.shared.submit_fax(&g3_fax()).unwrap();
    work.wait_for(20, "mail_sent", |e| e.job == job && e.event == "mail_sent")
        .await;
    let ev = work
        .wait_for(20, "report_overdue", |e| {
            e.job == job && e.event == "report_overdue"
        })
        .await;
    assert_eq!(ev.str("recipient"), Some("fax-gw@gw.example.test"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.shutdown().await;
    let events = work.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "report_overdue")
            .count(),
        1,
        "marked once"
    );
    let rows = t37gw::jobs::table(&events);
    assert_eq!(
        rows.iter().find(|r| r.id == job).unwrap().state,
        "no-report"
    );
}

#[test]
fn reports_in_any_order_give_the_same_final_state() {
    use t37gw::journal::Event;
    let base = || {
        vec![
            Event::new("ON-1", "onramp_submitted")
                .with("recipient", "a@x")
                .with("notify", "SUCCESS"),
            Event::new("ON-1", "mail_sent").with("recipient", "a@x"),
        ]
    };
    let delayed = Event::new("ON-1", "dsn_received")
        .with("recipient", "a@x")
        .with("action", "delayed")
        .with("status", "4.4.1");
    let delivered = Event::new("ON-1", "dsn_received")
        .with("recipient", "a@x")
        .with("action", "delivered")
        .with("status", "2.0.0");
    let mdn = Event::new("ON-1", "mdn_received")
        .with("recipient", "a@x")
        .with("disposition", "displayed");
    // An MDN from the reader's own mailbox, not the address the mail went to (an alias).
    let aliased_mdn = Event::new("ON-1", "mdn_received")
        .with("recipient", "alice@elsewhere.example")
        .with("disposition", "displayed");
    let orders = [
        vec![delayed.clone(), delivered.clone(), mdn.clone()],
        vec![delivered.clone(), delayed.clone(), mdn.clone()],
        vec![
            mdn.clone(),
            delivered.clone(),
            delayed.clone(),
            delivered.clone(),
        ],
        vec![aliased_mdn.clone(), delivered.clone()],
        vec![delivered.clone(), aliased_mdn.clone()],
    ];
    for order in orders {
        let mut evs = base();
        evs.extend(order);
        let row = t37gw::jobs::table(&evs).remove(0);
        // RFC 3464 §2.3.3: "delivered" is final; a late "delayed" does not undo it.
        assert_eq!(row.state, "delivered");
        assert_eq!(row.recipients["a@x"].status.as_deref(), Some("2.0.0"));
        assert_eq!(row.disposition.as_deref(), Some("displayed"));
        assert_eq!(
            row.recipients.len(),
            1,
            "no recipient made up from a report"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usual_relay_tricks_are_refused() {
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let addr = gw.local_addr;
    let tricks = [
        "RCPT TO:<user%other.example@gw.example.test>", // percent hack
        "RCPT TO:<@gw.example.test:user@other.example>", // source route (RFC 5321 §4.1.1.3)
        "RCPT TO:<\"user@other.example\"@gw.example.test>", // quoted local part with @
        "RCPT TO:<user@[127.0.0.1]>",                   // IP literal
        "RCPT TO:<FAX=+12025551234@[127.0.0.1]>",       // fax number at an IP literal
        "RCPT TO:<FAX=+12025551234%other.example@gw.example.test>", // fax + percent hack
        "RCPT TO:<user@other.example@gw.example.test>", // two @
        "RCPT TO:<user@gw.example.test.other.example>", // our name as a prefix
        "RCPT TO:<FAX=+12025551234@GW.EXAMPLE.TEST.>",  // trailing dot
    ];
    let mut steps = vec!["EHLO client.example", "MAIL FROM:<spammer@example.org>"];
    steps.extend(tricks);
    steps.push("QUIT");
    let replies = tokio::task::spawn_blocking(move || dialog(addr, &steps))
        .await
        .unwrap();
    for (trick, reply) in tricks.iter().zip(&replies[3..]) {
        assert!(
            reply.starts_with('5'),
            "{trick} must be refused, got {reply}"
        );
    }
    gw.shutdown().await;
    assert!(!work.events().iter().any(|e| e.event == "offramp_received"));
}

/// RFC 3192 §3 fax addresses: `FAX=+digits` with the T.33 sub-address qualifier `/T33S=` as
/// the only qualifier; ITU-T E.164 §6 allows at most 15 digits. Anything else is refused with
/// `550 5.1.3` (bad destination syntax, RFC 3463) instead of dialling a number the sender did
/// not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fax_addresses_follow_rfc_3192_and_e164() {
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let addr = gw.local_addr;
    let cases = [
        ("RCPT TO:<FAX=+12025551234@gw.example.test>", "250 2.1.5"),
        (
            "RCPT TO:<FAX=+12025551234/T33S=1234@gw.example.test>",
            "250 2.1.5",
        ),
        (
            "RCPT TO:<FAX=+491234567890123@gw.example.test>",
            "250 2.1.5",
        ),
        (
            "RCPT TO:<FAX=+4912345678901234@gw.example.test>",
            "550 5.1.3",
        ),
        ("RCPT TO:<FAX=+49301/T33=1234@gw.example.test>", "550 5.1.3"),
        ("RCPT TO:<FAX=+49301/T33S=@gw.example.test>", "550 5.1.3"),
        ("RCPT TO:<FAX=+49301/T33S=12a@gw.example.test>", "550 5.1.3"),
        ("RCPT TO:<FAX=12025551234@gw.example.test>", "550 5.1.3"),
        // RFC 3191 §3 written-sep: "-" and "." may separate the digits.
        ("RCPT TO:<FAX=+1-202-555-1234@gw.example.test>", "250 2.1.5"),
        ("RCPT TO:<FAX=+1.202.555.1234@gw.example.test>", "250 2.1.5"),
        ("RCPT TO:<FAX=+1-900-555-1234@gw.example.test>", "550 5.7.1"),
        ("RCPT TO:<FAX=+1 202@gw.example.test>", "501 5.1.3"),
        ("RCPT TO:<FAX=+--@gw.example.test>", "550 5.1.3"),
        ("RCPT TO:<FAX=+1_202@gw.example.test>", "550 5.1.3"),
        // RFC 5321 §4.1.1.3: the domain-less postmaster, in any case.
        ("RCPT TO:<Postmaster>", "250 2.1.5"),
        ("RCPT TO:<POSTMASTER> NOTIFY=NEVER", "250 2.1.5"),
        ("RCPT TO:<postmasterx>", "501 5.1.3"),
    ];
    let mut steps = vec!["EHLO client.example", "MAIL FROM:<a@client.example>"];
    steps.extend(cases.iter().map(|(c, _)| *c));
    steps.push("QUIT");
    let replies = tokio::task::spawn_blocking(move || dialog(addr, &steps))
        .await
        .unwrap();
    for ((cmd, want), got) in cases.iter().zip(&replies[3..]) {
        assert!(got.starts_with(want), "{cmd}: want {want}, got {got}");
    }
    gw.shutdown().await;
}

/// RFC 5321 §4.5.3.1.10: past the recipient limit (100) the server answers `452` and the
/// client delivers to the recipients it got `250` for; Python's smtplib does exactly that
/// (`sendmail` returns the refused ones). The 452s must not count as errors that end the
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_recipient_limit_python_smtplib_still_delivers_the_first_hundred() {
    if !have_tool("python3") {
        return;
    }
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let script = r#"
import json, smtplib, sys
rcpts = ["FAX=+49301234%03d@gw.example.test" % i for i in range(150)]
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    refused = s.sendmail("a@client.example", rcpts, b"Subject: many\r\n\r\nhi\r\n")
print(json.dumps({"refused": sorted(refused), "codes": sorted({c for c, _ in refused.values()})}))
"#;
    let r = python_client(script, gw.local_addr.port()).await;
    assert_eq!(r["refused"].as_array().unwrap().len(), 50, "{r}");
    assert_eq!(r["codes"], serde_json::json!([452]), "{r}");
    let ev = work
        .wait_for(20, "offramp_received", |e| e.event == "offramp_received")
        .await;
    assert_eq!(ev.str("recipients").unwrap().split(", ").count(), 100);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_senders_refuse_others_but_never_the_null_sender() {
    let work = Workdir::new();
    let gw = start(&work, |t| {
        t.replace(
            "allowed-senders: []",
            "allowed-senders: [\"@client.example\", boss@corp.example]",
        )
    })
    .await;
    let addr = gw.local_addr;
    let replies = tokio::task::spawn_blocking(move || {
        dialog(
            addr,
            &[
                "EHLO client.example",
                "MAIL FROM:<someone@elsewhere.example>",
                "MAIL FROM:<alice@CLIENT.example>",
                "RSET",
                "MAIL FROM:<boss@corp.example>",
                "RSET",
                "MAIL FROM:<>",
                "QUIT",
            ],
        )
    })
    .await
    .unwrap();
    assert!(replies[2].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[3].starts_with("250"), "{replies:?}");
    assert!(replies[5].starts_with("250"), "{replies:?}");
    assert!(
        replies[7].starts_with("250"),
        "null sender always accepted: {replies:?}"
    );
    gw.shutdown().await;
}

/// The offramp worker lets open SMTP sessions go first, but at most a second per job: with a
/// session left open (idle after its greeting) for the whole test, a message sent in another
/// session is still picked up and faxed. The recipient's T.33 sub-address (RFC 3192 §3
/// `/T33S=`) reaches the fax backend's job file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_does_not_hold_the_offramp_worker_back_for_long() {
    let work = Workdir::new();
    let gw = start(&work, |t| t).await;
    let addr = gw.local_addr;
    let idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut idle_reader = BufReader::new(idle.try_clone().unwrap());
    assert!(reply(&mut idle_reader).starts_with("220"));
    let tiff = base64_lines(&fixture("fax-3page-g3.tif"));
    let body = format!(
        "From: a@client.example\r\nTo: FAX=+12025551234@gw.example.test\r\n\
         Subject: open session\r\nMIME-Version: 1.0\r\n\
         Content-Type: image/tiff; application=faxbw\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{tiff}."
    );
    let replies = tokio::task::spawn_blocking(move || {
        dialog(
            addr,
            &[
                "EHLO client.example",
                "MAIL FROM:<a@client.example>",
                "RCPT TO:<FAX=+12025551234/T33S=0815@gw.example.test>",
                "DATA",
                &body,
                "QUIT",
            ],
        )
    })
    .await
    .unwrap();
    assert!(replies[5].starts_with("250"), "{replies:?}");
    let ev = work
        .wait_for(20, "the fax, with a session still open", |e| {
            e.event == "fax_delivered"
        })
        .await;
    assert_eq!(ev.str("number"), Some("+12025551234"), "{}", ev.to_line());
    let tif = &work.outbox_tiffs()[0];
    let job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tif.with_extension("json")).unwrap()).unwrap();
    assert_eq!(job["number"], "+12025551234", "{job}");
    assert_eq!(job["subaddress"], "0815", "{job}");
    // The idle session is still there and still answers.
    let mut w = idle.try_clone().unwrap();
    w.write_all(b"NOOP\r\n").unwrap();
    assert!(reply(&mut idle_reader).starts_with("250"));
    gw.shutdown().await;
}

/// Base64 in 76-character lines with CRLF (RFC 2045 §6.8).
fn base64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    b64.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
        .collect()
}
