//! End to end against a real MTA: onramp mail goes through a loopback Postfix
//! (`../shared/bench/postfix_loopback.sh start`: smtpd on 127.0.0.1:25, DSNs for
//! gw.example.test to 127.0.0.1:2525), and the DSNs Postfix itself writes come back to the
//! gateway's listener and land on the right jobs. The expected actions are Postfix's documented
//! behaviour (corpus/postfix-dsn/README.md): a local user → delivered, an unknown user → failed
//! 5.1.1, a next hop without DSN → relayed, an alias list → expanded.
//!
//! Then the other way: mail sent through Postfix to a fax address is relayed into the
//! gateway's listener, faxed, and the gateway's DSN travels back through Postfix to the
//! sender's Maildir.
//!
//! Fixed ports (Postfix's transport to 127.0.0.1:2525): this binary holds one test only.

mod support;

use std::time::Duration;
use support::*;
use t37gw::onramp::ReceivedFax;

fn postfix_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:25".parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok();
    up || skip(
        "no Postfix on 127.0.0.1:25 (run ../shared/bench/postfix_loopback.sh start; .ci/run does)",
    )
}

const PEERS: &str = r#"onramp-dial-peers:
  - name: local-user
    destination-pattern: "1001"
    session-target: "mailto:alice@example.test"
    dsn: [success, failure, delay]
  - name: unknown-user
    destination-pattern: "1002"
    session-target: "mailto:nosuchuser$d$@example.test"
    dsn: [success, failure, delay]
  - name: non-dsn-relay
    destination-pattern: "1003"
    session-target: "mailto:carol@relay.example.test"
    dsn: [success, failure, delay]
  - name: alias-list
    destination-pattern: "1004"
    session-target: "mailto:faxteam@example.test"
    dsn: [success, failure, delay]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_dsns_land_on_their_jobs_and_postfix_relays_into_the_listener() {
    if shared_dir().is_none() || !postfix_up() {
        return;
    }
    let work = Workdir::new();
    // Postfix delivers gw.example.test to 127.0.0.1:2525: the listener must be there first.
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:2525").await {
        Ok(l) => l,
        Err(e) => {
            skip(&format!("127.0.0.1:2525 is taken ({e})"));
            return;
        }
    };
    let cfg = work.config(2525, |t| {
        let t = t.replace("- 127.0.0.1:2525", "- 127.0.0.1:25");
        let start = t.find("onramp-dial-peers:").unwrap();
        let end = t.find("# Offramp dial peers").unwrap();
        format!("{}{PEERS}\n{}", &t[..start], &t[end..])
    });
    let gw = t37gw::gateway::Gateway::start(cfg, Some(listener))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for dnis in ["1001", "1002", "1003", "1004"] {
        let fax = ReceivedFax {
            dnis: dnis.into(),
            ani: "4940123456".into(),
            tsi: None,
            pages: vec![fixture("fax-3page-g3.tif")],
        };
        jobs.push(gw.shared.submit_fax(&fax).unwrap());
    }
    let expect = [
        ("delivered", "2.0.0"),
        ("failed", "5.1.1"),
        ("relayed", "2.0.0"),
        ("expanded", "2.0.0"),
    ];
    for (job, (action, status)) in jobs.iter().zip(expect) {
        let ev = work
            .wait_for(150, &format!("Postfix's DSN for {job}"), |e| {
                &e.job == job && e.event == "dsn_received"
            })
            .await;
        assert_eq!(ev.str("action"), Some(action), "{}", ev.to_line());
        assert_eq!(ev.str("status"), Some(status), "{}", ev.to_line());
        assert_eq!(ev.str("matched_by"), Some("envid"), "{}", ev.to_line());
        assert!(
            ev.str("reporting_mta")
                .is_some_and(|m| m.contains("mta.example.test")),
            "{}",
            ev.to_line()
        );
    }
    // The job table shows the same verdicts.
    let rows = t37gw::jobs::table(&work.events());
    for (job, (action, _)) in jobs.iter().zip(expect) {
        let row = rows.iter().find(|r| &r.id == job).unwrap();
        assert_eq!(row.state, action, "{row:?}");
    }

    // Postfix relaying into the listener: a user of the MTA mails a fax address; Postfix hands
    // it to the gateway with the DSN parameters (we offer DSN, so Postfix sends none itself);
    // the gateway faxes it and its own success DSN goes back through Postfix to the sender's
    // Maildir, where an RFC 3464 parser must find our ENVID and `delivered`.
    let maildir = std::path::Path::new("/home/alice/Maildir/new");
    let before: std::collections::HashSet<_> = std::fs::read_dir(maildir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let tif = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fax-3page-g3.tif");
    let py = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m['From'] = 'alice@example.test'
m['To'] = 'FAX=+12025550123@gw.example.test'
m['Subject'] = 'fax through Postfix'
m['Message-ID'] = '<relay-test-1@example.test>'
m.set_content('see attachment')
m.add_attachment(open({tif:?}, 'rb').read(), maintype='image', subtype='tiff', filename='fax.tif')
with smtplib.SMTP('127.0.0.1', 25, timeout=20) as s:
    s.send_message(m, mail_options=['RET=HDRS', 'ENVID=PFX-RELAY-1'], rcpt_options=['NOTIFY=SUCCESS,FAILURE'])
"#,
        tif = tif.display().to_string()
    );
    let (ok, out, err) = run("python3", &["-c", &py]);
    assert!(ok, "{out}{err}");
    let received = work
        .wait_for(120, "the relayed message at the offramp", |e| {
            e.event == "offramp_received" && e.str("envid") == Some("PFX-RELAY-1")
        })
        .await;
    assert_eq!(received.str("from"), Some("alice@example.test"));
    work.wait_for(30, "the fax", |e| {
        e.job == received.job && e.event == "fax_delivered"
    })
    .await;
    work.wait_for(30, "our DSN accepted by Postfix", |e| {
        e.job == received.job && e.event == "dsn_sent"
    })
    .await;
    let mut dsn = None;
    for _ in 0..600 {
        let new: Vec<_> = std::fs::read_dir(maildir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| !before.contains(p))
                    .collect()
            })
            .unwrap_or_default();
        dsn = new
            .iter()
            .map(|p| t37gw::receipts::parse(&std::fs::read(p).unwrap()))
            .find(|r| r.envid.as_deref() == Some("PFX-RELAY-1"));
        if dsn.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dsn = dsn.expect("our DSN in alice's Maildir");
    assert_eq!(dsn.recipients.len(), 1);
    assert_eq!(dsn.recipients[0].action.as_deref(), Some("delivered"));
    assert_eq!(dsn.recipients[0].status.as_deref(), Some("2.0.0"));
    assert_eq!(
        dsn.recipients[0].final_recipient.as_deref(),
        Some("FAX=+12025550123@gw.example.test")
    );
    assert_eq!(
        dsn.returned_message_id.as_deref(),
        Some("<relay-test-1@example.test>")
    );
    gw.shutdown().await;
}
