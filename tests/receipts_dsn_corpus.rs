//! `../shared/corpus/dsn/`: every file is in one table below, with the values a person reads
//! in it (Final-Recipient, Action, Status as written; Status cut to its RFC 3463 code, Action
//! lower case, RFC 3464 §2.3.3–2.3.4). Traditional bounces: the failed address and the code
//! written in the prose; the returned original's Message-ID. Not reports: auto-replies, ARF,
//! ordinary mail.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use t37gw::receipts::{
    correlate, correlate_explained, parse, parse_explained, Correlation, JobLookup, ReportKind,
};

/// `../shared/corpus/dsn`, or `None` with the skip reason printed (a failure under `CI=true`).
fn corpus() -> Option<PathBuf> {
    support::shared_dir().map(|s| s.join("corpus/dsn"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (Original-Recipient, Final-Recipient, Action, Status), `rfc822;` split off.
type Block = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const fn b(
    original: Option<&'static str>,
    final_: &'static str,
    action: &'static str,
    status: &'static str,
) -> Block {
    (original, Some(final_), Some(action), Some(status))
}

/// RFC 3464 reports: file → blocks in order.
const DSN: &[(&str, &[Block])] = &[
    (
        "bounce.txt",
        &[b(
            Some("netec.test@netecgc.com"),
            "netec.test@netecgc.com",
            "failed",
            "5.1.1",
        )],
    ),
    (
        "delayed.eml",
        &[b(
            Some("foo@example.com"),
            "foo@example.com",
            "failed",
            "4.0.0",
        )],
    ),
    (
        "delivery-status-multiple-blank-lines.txt",
        &[(Some("orig_recip@customer.com"), None, None, Some("5.5.0"))],
    ),
    (
        "delivery-status-no-blank-line.txt",
        &[(
            None,
            Some("newsletter-request@imusic.com"),
            Some("failed"),
            None,
        )],
    ),
    (
        "delivery-status2.txt",
        &[b(None, "source@domain.com", "failed", "5.0.0")],
    ),
    (
        "dsn_relayed.eml",
        &[b(
            Some("anon_2@gmx.at"),
            "anon_2@gmx.at",
            "relayed",
            "2.0.0",
        )],
    ),
    (
        "gmail_ndn.eml",
        &[b(None, "assidhfaaspocwaeofi@gmail.com", "failed", "5.1.1")],
    ),
    (
        "lhost-amazonses-01.eml",
        &[b(None, "shironeko@example.co.jp", "failed", "5.0.0")],
    ),
    (
        "lhost-amazonses-02.eml",
        &[b(
            None,
            "this-local-part-does-not-exist-on-the-server@docomo.ne.jp",
            "failed",
            "5.0.0",
        )],
    ),
    (
        "lhost-aol-01.eml",
        &[b(
            Some("kijitora@example.jp"),
            "kijitora@example.jp",
            "failed",
            "5.4.4",
        )],
    ),
    (
        "lhost-exchange2007-01.eml",
        &[b(None, "mikeneko@example.co.jp", "failed", "5.1.1")],
    ),
    (
        "lhost-exchange2007-04.eml",
        &[b(
            Some("neko-nyaan@cat.example.jp"),
            "neko-nyaan@example.jp",
            "failed",
            "5.7.1",
        )],
    ),
    (
        "lhost-messagingserver-01.eml",
        &[b(
            Some("kijitora@example.jp"),
            "kijitora@example.jp",
            "failed",
            "5.1.1",
        )],
    ),
    (
        "lhost-messagingserver-03.eml",
        &[
            b(
                Some("sabineko@example.org"),
                "sabineko@example.org",
                "failed",
                "5.0.0",
            ),
            b(
                Some("mikeneko@example.org"),
                "mikeneko@example.org",
                "failed",
                "5.0.0",
            ),
        ],
    ),
    (
        "lhost-messagingserver-04.eml",
        &[b(
            Some("kijitora@example.jp"),
            "kijitora@example.jp",
            "failed",
            "5.2.2",
        )],
    ),
    (
        "lhost-office365-03.eml",
        &[b(None, "kijitora@example.com", "failed", "5.1.0")],
    ),
    (
        "lhost-office365-04.eml",
        &[b(
            None,
            "otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp",
            "failed",
            "5.1.351",
        )],
    ),
    (
        "lhost-opensmtpd-06.eml",
        &[b(None, "nekochan@libsisimai.org", "delayed", "4.4.7")],
    ),
    (
        "lhost-outlook-01.eml",
        &[b(None, "kijitora@example.jp", "failed", "5.2.2")],
    ),
    (
        "lhost-outlook-06.eml",
        &[b(None, "kijitora@example.com", "delayed", "4.4.7")],
    ),
    (
        "lhost-postfix-01.eml",
        &[b(
            Some("kijitora@example.org"),
            "r@p351355.pool.example.ne.jp",
            "failed",
            "5.1.1",
        )],
    ),
    (
        "lhost-postfix-02.eml",
        &[
            b(
                Some("filtered@example.co.jp"),
                "filtered@example.co.jp",
                "failed",
                "5.2.1",
            ),
            b(
                Some("userunknown@example.co.jp"),
                "userunknown@example.co.jp",
                "failed",
                "5.1.1",
            ),
        ],
    ),
    (
        "lhost-postfix-04.eml",
        &[b(
            Some("kijitora@example.co.jp"),
            "kijitora@example.co.jp",
            "failed",
            "5.1.1",
        )],
    ),
    (
        "lhost-postfix-06.eml",
        &[b(
            Some("kijitora@neko.example.jp"),
            "kijitora@neko.example.jp",
            "failed",
            "5.4.4",
        )],
    ),
    (
        "lhost-sendmail-01.eml",
        &[b(None, "userunknown@bouncehammer.jp", "failed", "5.1.1")],
    ),
    (
        "lhost-sendmail-02.eml",
        &[
            b(None, "userunknown@example.org", "failed", "5.1.1"),
            b(None, "filtered@example.com", "failed", "5.2.1"),
        ],
    ),
    (
        "lhost-sendmail-05.eml",
        &[b(None, "kijitora@example.org", "failed", "5.2.3")],
    ),
    (
        "mailbox-full.eml",
        &[b(Some("user@aol.com"), "user@aol.com", "failed", "5.2.2")],
    ),
    (
        "multipart_report_multiple_status.eml",
        &[b(Some("u@ci.com"), "<u@ci.com>", "failed", "5.3.0")],
    ),
    (
        "ndn_with_attachment.eml",
        &[
            b(
                Some("bob@example.org"),
                "bob@example.org",
                "failed",
                "5.2.2",
            ),
            b(
                Some("bob2@example.net"),
                "bob2@example.net",
                "failed",
                "5.2.2",
            ),
        ],
    ),
    (
        "office365.eml",
        &[b(
            Some("noname@example.com"),
            "noname@example.com",
            "failed",
            "5.1.10",
        )],
    ),
    (
        "posteo_ndn.eml",
        &[b(
            Some("hanerthaertidiuea@gmx.de"),
            "hanerthaertidiuea@gmx.de",
            "failed",
            "5.0.0",
        )],
    ),
    (
        "report_422.eml",
        &[b(None, "fraser@oooooooo.com.au", "delayed", "4.2.2")],
    ),
    (
        "rfc3464-01.eml",
        &[b(None, "userunknown@bouncehammer.jp", "failed", "5.1.1")],
    ),
    (
        "rfc3464-03.eml",
        &[b(
            Some("kijitora@example.com"),
            "kijitora@example.com",
            "failed",
            "5.0.0",
        )],
    ),
    (
        "rfc3464-04.eml",
        &[b(
            None,
            "kijitora@mailx-53.neko.example.edu",
            "failed",
            "5.5.0",
        )],
    ),
    (
        "rfc3464-06.eml",
        &[b(None, "<kijitora@example.net>", "failed", "5.5.0")],
    ),
    (
        "rfc3464-07.eml",
        &[b(None, "kijitora@example.net", "delayed", "4.4.0")],
    ),
    (
        "rfc3464-08.eml",
        &[b(None, "kijitora@example.net", "failed", "5.7.1")],
    ),
    (
        "rfc3464-09.eml",
        &[b(
            Some("kijitora-nyaaaaaan@example.co.jp"),
            "kijitora-cat@mx4.gr3.example.jp",
            "delayed",
            "4.3.0",
        )],
    ),
    (
        "rhost-google-01.eml",
        &[b(None, "shironeko@example.ne.jp", "failed", "5.2.1")],
    ),
    (
        "rhost-gsuite-01.eml",
        &[b(None, "kijitora@example.de", "failed", "5.0.0")],
    ),
    (
        "rhost-microsoft-01.eml",
        &[b(None, "kijitora@example.com", "failed", "5.7.606")],
    ),
    (
        "rhost-outlook-01.eml",
        &[b(None, "kijitora@example.jp", "failed", "5.2.2")],
    ),
];

/// Traditional bounces: file → (failed address, status in the prose), returned Message-ID.
#[allow(clippy::type_complexity)]
const BOUNCES: &[(&str, &[(&str, Option<&str>)], Option<&str>)] = &[
    ("broken-mime.eml", &[("info@example.net", None)], None),
    (
        "lhost-dragonfly-01.eml",
        &[("pseudo-local-part@google.example.com", Some("5.7.26"))],
        Some("<66681288.e06d1.3824794@df.example.jp>"),
    ),
    (
        "lhost-exchange-01.eml",
        &[("kijitora@example.jp", None)],
        None,
    ),
    (
        "lhost-exchange2003-01.eml",
        &[("kijitora@example.jp", None)],
        None,
    ),
    (
        "lhost-exchange2003-02.eml",
        &[
            ("kijitora@example.co.jp", None),
            ("mikeneko@example.co.jp", None),
        ],
        Some("<000000000000000.0000000@example.jp>"),
    ),
    (
        "lhost-exim-01.eml",
        &[("kijitora@example.ed.jp", Some("5.7.0"))],
        Some("<E1P1ce6-000Egt-GZ@e1.example.org>"),
    ),
    (
        "lhost-exim-02.eml",
        &[
            ("kijitora@example.jp", Some("5.1.1")),
            ("sabatora@example.jp", Some("5.2.1")),
        ],
        Some("<E1X58pB-0004bW-2s@marutamachi.example.org>"),
    ),
    // The prose names the local part "kijitora"; X-Failed-Recipients has the address.
    (
        "lhost-exim-04.eml",
        &[("kijitora@example.ed.jp", Some("5.7.0"))],
        Some("<E1P1ce6-000Egt-GZ@e1.example.org>"),
    ),
    (
        "lhost-gmail-01.eml",
        &[("userunknown@example.jp", Some("5.1.1"))],
        Some("<D992C2C3-F175-4C4D-97E2-53A90E4E5BF5@gmail.com>"),
    ),
    (
        "lhost-gmail-03.eml",
        &[("kijitora@example.co.jp", Some("5.7.0"))],
        Some("<CBA48452-0888-4AAC-AA4E-0F54D382117F@gmail.com>"),
    ),
    (
        "lhost-googlegroups-01.eml",
        &[("libsisimai@googlegroups.com", None)],
        Some("<D0E3D626-1C96-4749-8101-62C0CE13B1D5@example.jp>"),
    ),
    // multipart/report whose delivery-status part is empty: X-Failed-Recipients.
    (
        "lhost-googleworkspace-01.eml",
        &[("neko-nyaan-cat-meeting@google-groups.example.com", None)],
        Some("<CAByYQsF5qdTf_h-1AAVPW0RgR1YN+LE=+0Uv9LpQ4aA_myPtCw@mail.gmail.com>"),
    ),
    (
        "lhost-mailru-01.eml",
        &[("kijitora@example.jp", Some("5.1.1"))],
        Some("<8F3CE2D8-D60E-48C3-B9AF-BED628EE2CA5@mail.example.ru>"),
    ),
    (
        "lhost-office365-01.eml",
        &[("kijitora@example.com", Some("5.1.10"))],
        Some("<FFFFFFFF.EEEEEEEE@example.ed.jp>"),
    ),
    (
        "lhost-opensmtpd-01.eml",
        &[("apdugoaidugoaidugoaeiudggadi@gmail.com", Some("5.1.1"))],
        None,
    ),
    (
        "lhost-qmail-01.eml",
        &[("kijitora@example.ne.jp", Some("5.5.0"))],
        Some("<000000000.9999999999999.JavaMail.postmaster@mailhub>"),
    ),
    (
        "lhost-qmail-02.eml",
        &[
            ("userunknown@example.jp", Some("5.1.1")),
            ("filtered@example.jp", Some("5.2.1")),
        ],
        None,
    ),
    (
        "lhost-qmail-03.eml",
        &[("kijitora@example.org", Some("5.7.1"))],
        Some("<00000000000000.5529.qmail@nijo.example.jp>"),
    ),
    (
        "lhost-yahoo-01.eml",
        &[("kijitora@example.org", Some("5.1.1"))],
        Some("<6AE6249A-E7A8-4980-862C-F499F6B8E7C5@y.example.co.jp>"),
    ),
    (
        "lhost-zoho-01.eml",
        &[("kijitora@example.co.jp", Some("5.1.1"))],
        Some("<14a3e1b4b5a.10b1a4c5610175.8588386083425091336@zoho.example.com>"),
    ),
];

/// Not delivery results, with a word the reason must contain.
const NOT_REPORTS: &[(&str, &str)] = &[
    ("arf-01.eml", "RFC 5965"),
    ("is-not-bounce-01.eml", "ordinary mail"),
];

#[test]
fn every_corpus_file_is_in_a_table() {
    let Some(dir) = corpus() else { return };
    for entry in std::fs::read_dir(&dir).expect("dsn dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".md") {
            continue;
        }
        let known = DSN.iter().any(|(f, _)| *f == name)
            || BOUNCES.iter().any(|(f, _, _)| *f == name)
            || NOT_REPORTS.iter().any(|(f, _)| *f == name);
        assert!(known, "{name} is in no table");
    }
}

#[test]
fn rfc3464_reports_give_the_blocks_read_in_the_files() {
    let Some(dir) = corpus() else { return };
    for (file, want) in DSN {
        let r = parse(&read(&dir.join(file)));
        assert_eq!(r.kind, ReportKind::Dsn, "{file}");
        let got: Vec<[Option<String>; 4]> = r
            .recipients
            .iter()
            .map(|x| {
                [
                    x.original_recipient.clone(),
                    x.final_recipient.clone(),
                    x.action.clone(),
                    x.status.clone(),
                ]
            })
            .collect();
        let want: Vec<[Option<String>; 4]> = want
            .iter()
            .map(|(a, b, c, d)| [a, b, c, d].map(|x| x.map(String::from)))
            .collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn flat_and_base64_delivery_status_keep_the_message_fields() {
    let Some(dir) = corpus() else { return };
    let p = |f: &str| parse(&read(&dir.join(f)));
    // MIME boundaries stripped: fields read from the flat body, returned headers after them.
    let r = p("rfc3464-04.eml");
    assert_eq!(
        r.reporting_mta.as_deref(),
        Some("dns; mailx-53.neko.example.edu")
    );
    assert_eq!(
        r.returned_message_id.as_deref(),
        Some("<00000000000.000000@mx4.example.co.jp>")
    );
    let r = p("rfc3464-06.eml");
    assert_eq!(r.reporting_mta.as_deref(), Some("dns; mxr45.example.net"));
    assert_eq!(
        r.returned_message_id.as_deref(),
        Some("<0000000000.0000000@mail.example.com>")
    );
    let r = p("lhost-messagingserver-03.eml");
    assert_eq!(r.envid.as_deref(), Some("000000000000000@example.org"));
    // Per-recipient block base64-encoded inside the delivery-status part (Proofpoint);
    // decoded with Python's base64 it reads "Diagnostic-Code: smtp; 550 5.1.1
    // <netec.test@netecgc.com>: Recipient address\n    rejected: User unknown".
    let r = p("bounce.txt");
    assert_eq!(r.reporting_mta.as_deref(), Some("dns; hmail.jitbit.com"));
    assert_eq!(
        r.recipients[0].diagnostic_code.as_deref(),
        Some("smtp; 550 5.1.1 <netec.test@netecgc.com>: Recipient address rejected: User unknown")
    );
    assert_eq!(
        r.returned_message_id.as_deref(),
        Some("<44565655.JitbitHelpdesk.13439.691a0afc-a0a0-457c-8208-f20b7c4a4cb1@jitbit.com>")
    );
}

#[test]
fn traditional_bounces_give_the_failed_address_status_and_returned_id() {
    let Some(dir) = corpus() else { return };
    for (file, want, returned) in BOUNCES {
        let r = parse(&read(&dir.join(file)));
        assert_eq!(r.kind, ReportKind::Bounce, "{file}");
        let got: Vec<(Option<String>, Option<String>, Option<String>)> = r
            .recipients
            .iter()
            .map(|x| {
                (
                    x.final_recipient.clone(),
                    x.action.clone(),
                    x.status.clone(),
                )
            })
            .collect();
        let want: Vec<(Option<String>, Option<String>, Option<String>)> = want
            .iter()
            .map(|(a, s)| {
                (
                    Some(a.to_string()),
                    Some("failed".into()),
                    s.map(String::from),
                )
            })
            .collect();
        assert_eq!(got, want, "{file}");
        assert_eq!(
            r.returned_message_id.as_deref(),
            *returned,
            "{file}: returned Message-ID"
        );
    }
}

#[derive(Default)]
struct Jobs(HashMap<String, String>);
impl JobLookup for Jobs {
    fn job_by_envid(&self, envid: &str) -> Option<String> {
        self.0.get(envid).cloned()
    }
    fn job_by_message_id(&self, id: &str) -> Option<String> {
        self.0.get(id).cloned()
    }
}

#[test]
fn non_reports_are_not_delivery_results_and_foreign_reports_are_orphans() {
    let Some(dir) = corpus() else { return };
    // A lookup that knows every Message-ID the corpus mentions would still not take these.
    let mut jobs = Jobs::default();
    jobs.0
        .insert("<E1P1ce6-000Egt-GZ@e1.example.org>".into(), "JOB-1".into());
    for (file, word) in NOT_REPORTS {
        let parsed = parse_explained(&read(&dir.join(file)));
        assert_eq!(parsed.report.kind, ReportKind::NotAReport, "{file}");
        match correlate_explained(&parsed, &jobs) {
            Correlation::NotAReport { reason } => {
                assert!(reason.contains(word), "{file}: {reason}")
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    // Reports about messages this gateway never sent: orphans, never a job.
    for file in [
        "lhost-exim-02.eml",
        "lhost-postfix-04.eml",
        "lhost-yahoo-01.eml",
    ] {
        let r = parse(&read(&dir.join(file)));
        assert!(
            matches!(correlate(&r, &jobs), Correlation::Orphan { .. }),
            "{file}"
        );
    }
    // A bounce whose returned Message-ID is a job's lands on that job.
    let r = parse(&read(&dir.join("lhost-exim-01.eml")));
    assert!(matches!(correlate(&r, &jobs), Correlation::Job { ref job, .. } if job == "JOB-1"));
}

#[test]
fn hostile_variants_of_corpus_files_never_panic() {
    let Some(dir) = corpus() else { return };
    for (file, _, _) in BOUNCES {
        let bytes = read(&dir.join(file));
        for cut in [
            0,
            1,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len().saturating_sub(1),
        ] {
            let _ = parse(&bytes[..cut]);
        }
        let cr: Vec<u8> = bytes
            .iter()
            .map(|&c| if c == b'\n' { b'\r' } else { c })
            .collect();
        let _ = parse(&cr);
    }
}
