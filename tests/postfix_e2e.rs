//! End to end against a real MTA: onramp mail goes through a loopback Postfix
//! (`../shared/bench/postfix_loopback.sh start`: smtpd on 127.0.0.1:25, DSNs for
//! gw.example.test to 127.0.0.1:2525), and the DSNs Postfix itself writes come back to the
//! gateway's listener and land on the right jobs. The expected actions are Postfix's documented
//! behaviour (corpus/postfix-dsn/README.md): a local user → delivered, an unknown user → failed
//! 5.1.1, a next hop without DSN → relayed, an alias list → expanded.
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
async fn postfix_dsns_land_on_their_jobs() {
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
    gw.shutdown().await;
}
