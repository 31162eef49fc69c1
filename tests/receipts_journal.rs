//! The receipt tracker end to end through the journal: jobs seeded as the onramp would have
//! journalled them, the real reports of `../shared/corpus/postfix-dsn/` and
//! `../shared/corpus/dovecot-reports/` fed through `t37gw receipts ingest`, and the journal and
//! job table must give exactly the answers in the corpus's `answers.json` files.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;
use t37gw::journal::{read_events, Event, Journal};

fn ingest(dir: &Path, folder: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_t37gw"))
        .current_dir(dir)
        .args(["receipts", "ingest", folder.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A gateway directory with the shipped config and an empty journal, and the folder's
/// `answers.json` entries.
fn setup(folder: &Path) -> (Vec<serde_json::Value>, tempfile::TempDir, Journal) {
    let answers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("answers.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        include_str!("../gateway.yaml"),
    )
    .unwrap();
    let journal = Journal::open(&dir.path().join("journal.jsonl")).unwrap();
    (answers.as_array().unwrap().clone(), dir, journal)
}

fn rcpt_address(rcpt_line: &str) -> String {
    // "RCPT TO:<alice@example.test> NOTIFY=..." → alice@example.test
    rcpt_line
        .split('<')
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn postfix_dsns_correlate_to_the_answers() {
    let Some(shared) = shared_dir() else { return };
    let folder = shared.join("corpus/postfix-dsn");
    let (answers, dir, journal) = setup(&folder);
    let answers = &answers;
    let mut seeded = std::collections::HashSet::new();
    for a in answers {
        let job = a["job"].as_str().unwrap();
        if seeded.insert(job.to_string()) {
            for rcpt in a["rcpt_to"].as_array().unwrap() {
                journal
                    .append(
                        &Event::new(job, "onramp_submitted")
                            .with("recipient", rcpt_address(rcpt.as_str().unwrap()))
                            .with("message_id", a["original_message_id"].as_str().unwrap())
                            .with("notify", "SUCCESS,FAILURE,DELAY"),
                    )
                    .unwrap();
            }
        }
    }
    let summary = ingest(dir.path(), &folder);
    assert!(
        summary.starts_with(&format!("{n} messages: {n} correlated", n = answers.len())),
        "{summary}"
    );
    let events = read_events(&dir.path().join("journal.jsonl")).unwrap();
    for a in answers {
        let job = a["job"].as_str().unwrap();
        let file = a["file"].as_str().unwrap();
        for r in a["recipients"].as_array().unwrap() {
            let fin = r["final_recipient"].as_str().unwrap();
            let found = events.iter().any(|e| {
                e.job == job
                    && e.event == "dsn_received"
                    && e.str("final_recipient") == Some(fin)
                    && e.str("action") == r["action"].as_str()
                    && e.str("status") == r["status"].as_str()
                    && e.str("recipient") == Some(fin)
            });
            assert!(
                found,
                "{file}: no dsn_received for {job} / {fin} {} {}",
                r["action"], r["status"]
            );
        }
    }
    // The job table: FAXJOB-0012 was delayed then expired → failed; FAXJOB-0001 delivered.
    let rows = t37gw::jobs::table(&events);
    let state = |j: &str| rows.iter().find(|r| r.id == j).unwrap().state.clone();
    assert_eq!(state("FAXJOB-0001"), "delivered");
    assert_eq!(state("FAXJOB-0004"), "expanded");
    assert_eq!(state("FAXJOB-0006"), "relayed");
    assert_eq!(state("FAXJOB-0012"), "failed");
    // Ingesting the same folder again changes no job.
    let again = ingest(dir.path(), &folder);
    assert!(
        again.contains(&format!("{} already seen", answers.len())),
        "{again}"
    );
    let after = read_events(&dir.path().join("journal.jsonl")).unwrap();
    assert_eq!(
        after.iter().filter(|e| e.event == "dsn_received").count(),
        events.iter().filter(|e| e.event == "dsn_received").count()
    );
}

#[test]
fn dovecot_reports_correlate_to_the_answers() {
    let Some(shared) = shared_dir() else { return };
    let folder = shared.join("corpus/dovecot-reports");
    let (answers, dir, journal) = setup(&folder);
    let answers = &answers;
    let mut seeded = std::collections::HashSet::new();
    for a in answers {
        if let (Some(job), Some(mid)) = (
            a["triggering_job"].as_str(),
            a["triggering_message_id"].as_str(),
        ) {
            if seeded.insert(job.to_string()) {
                journal
                    .append(
                        &Event::new(job, "onramp_submitted")
                            .with("message_id", mid)
                            .with("recipient", "x@y"),
                    )
                    .unwrap();
            }
        }
    }
    ingest(dir.path(), &folder);
    let events = read_events(&dir.path().join("journal.jsonl")).unwrap();
    for a in answers {
        let file = a["file"].as_str().unwrap();
        let report = events
            .iter()
            .find(|e| {
                e.event == "report_ingested" && e.str("source").is_some_and(|s| s.ends_with(file))
            })
            .unwrap_or_else(|| panic!("{file} not ingested"));
        let verdict: Vec<&Event> = events.iter().filter(|e| e.job == report.job).collect();
        match a["correlate_to_job"].as_str() {
            Some(job) => {
                let c = verdict
                    .iter()
                    .find(|e| e.event == "report_correlated")
                    .unwrap_or_else(|| {
                        panic!(
                            "{file}: expected correlation to {job}, got {:?}",
                            verdict.iter().map(|e| e.to_line()).collect::<Vec<_>>()
                        )
                    });
                assert_eq!(c.str("correlated_job"), Some(job), "{file}");
                if a["kind"] == "mdn" {
                    let mdn = events
                        .iter()
                        .find(|e| {
                            e.job == job
                                && e.event == "mdn_received"
                                && e.str("report") == Some(&report.job)
                        })
                        .unwrap();
                    assert_eq!(
                        mdn.str("disposition"),
                        a["disposition_type"].as_str(),
                        "{file}"
                    );
                }
            }
            None => assert!(
                !verdict.iter().any(|e| e.event == "report_correlated"),
                "{file}: must not correlate (answers say {})",
                a["classify_as"]
            ),
        }
    }
}

#[test]
fn a_read_receipt_without_in_reply_to_correlates_by_references() {
    let Some(shared) = shared_dir() else { return };
    // The Exchange read receipt of the corpus carries no Original-Message-ID; with its
    // In-Reply-To turned into a References field (RFC 5322 §3.6.4) it must still find the
    // original message's job, read from the original message file.
    let receipt = std::fs::read_to_string(
        shared.join("corpus/mdn/ms_exchange_report_disposition_notification.eml"),
    )
    .unwrap();
    let original =
        std::fs::read_to_string(shared.join("corpus/mdn/ms_exchange_report_original_message.eml"))
            .unwrap();
    let mid = original
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(receipt.contains(&format!("In-Reply-To: {mid}")));
    let changed = receipt.replace(
        &format!("In-Reply-To: {mid}"),
        &format!("References: <older@x.example> {mid}"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        include_str!("../gateway.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("receipt.eml"), changed).unwrap();
    let journal = Journal::open(&dir.path().join("journal.jsonl")).unwrap();
    journal
        .append(&Event::new("ON-exchange", "onramp_submitted").with("message_id", mid.as_str()))
        .unwrap();
    let summary = ingest(dir.path(), &dir.path().join("receipt.eml"));
    assert!(summary.starts_with("1 messages: 1 correlated"), "{summary}");
    let events = read_events(&dir.path().join("journal.jsonl")).unwrap();
    let c = events
        .iter()
        .find(|e| e.event == "report_correlated")
        .unwrap();
    assert_eq!(c.str("correlated_job"), Some("ON-exchange"));
    assert_eq!(c.str("matched_by"), Some("references"));
}

/// A real Postfix DSN whose recipient block is repeated 5000 times (as a hostile or broken
/// report could): the job gets one `dsn_received` for that recipient, not 5000 journal lines.
/// And a delivery report for the job that lost its status part and has no bounce text: nothing
/// is recorded for the job, and it is not counted as correlated.
#[test]
fn repeated_recipient_blocks_and_a_status_less_report_leave_the_journal_small() {
    let Some(shared) = shared_dir() else { return };
    let folder = shared.join("corpus/postfix-dsn");
    let (answers, dir, journal) = setup(&folder);
    let a = answers
        .iter()
        .find(|a| a["file"] == "success-notify-success-ret-hdrs.eml")
        .unwrap();
    let job = a["job"].as_str().unwrap();
    let mid = a["original_message_id"].as_str().unwrap();
    journal
        .append(
            &Event::new(job, "onramp_submitted")
                .with("recipient", "alice@example.test")
                .with("message_id", mid)
                .with("notify", "SUCCESS,FAILURE,DELAY"),
        )
        .unwrap();
    let text = std::fs::read_to_string(folder.join(a["file"].as_str().unwrap())).unwrap();
    let start = text.find("Final-Recipient:").unwrap();
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    let block = &text[start..end];
    let big = format!("{}{}{}", &text[..end], block.repeat(4999), &text[end..]);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("big.eml"), big).unwrap();
    // The same job's report without its message/delivery-status part and no bounce prose.
    let headers = format!("Message-ID: {mid}\r\nSubject: fax\r\n");
    let bare = format!(
        "From: MAILER-DAEMON@mta.example.test\r\nTo: fax-gw@gw.example.test\r\n\
         Message-ID: <bare@mta.example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nSee the attached headers.\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--b--\r\n"
    );
    std::fs::write(inbox.join("bare.eml"), bare).unwrap();
    ingest(dir.path(), &inbox);
    let events = read_events(&dir.path().join("journal.jsonl")).unwrap();
    let dsns: Vec<&Event> = events
        .iter()
        .filter(|e| e.job == job && e.event == "dsn_received")
        .collect();
    assert_eq!(dsns.len(), 1, "one event for one recipient");
    assert_eq!(dsns[0].str("action"), Some("delivered"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "report_correlated")
            .count(),
        1,
        "only the report with a recipient status counts as correlated"
    );
    let ignored = events
        .iter()
        .find(|e| e.event == "report_ignored")
        .expect("the status-less report is ignored");
    assert_eq!(ignored.str("correlated_job"), Some(job));
}
