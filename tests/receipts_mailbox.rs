//! Mailbox reading: an mbox (RFC 4155 `From ` lines, mboxrd `>From ` quoting) and a Maildir
//! (`cur/`, `new/`) built in a temp dir from corpus files.

mod support;

use std::path::{Path, PathBuf};

use t37gw::receipts::{parse, read_mailbox, ReportKind};

/// `../shared/corpus`, or `None` with the skip reason printed (a failure under `CI=true`).
fn corpus() -> Option<PathBuf> {
    support::shared_dir().map(|s| s.join("corpus"))
}

/// Corpus files used; their ENVIDs come from postfix-dsn/answers.json.
const FILES: &[&str] = &[
    "success-notify-success-ret-hdrs.eml",
    "failure-unknown-user-ret-hdrs.eml",
    "relayed-non-dsn-next-hop.eml",
];

/// (path, ENVID as its answer gives it) for each of FILES.
fn files(corpus: &Path) -> Vec<(PathBuf, String)> {
    let dir = corpus.join("postfix-dsn");
    let text = std::fs::read_to_string(dir.join("answers.json")).unwrap();
    let answers: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    FILES
        .iter()
        .map(|f| {
            let a = answers.iter().find(|a| a["file"] == *f).expect("answer");
            let envid = a["original_envelope_id_field"].as_str().expect("envid");
            (dir.join(f), envid.to_string())
        })
        .collect()
}

/// mboxrd quoting (RFC 4155 appendix): one more `>` before `From ` and `>From ` lines.
fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let body = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[body..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..end]
}

#[test]
fn mbox_gives_each_message_with_its_number() {
    let Some(corpus) = corpus() else { return };
    let files = files(&corpus);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.mbox");
    let mut mbox = Vec::new();
    let mut originals = Vec::new();
    for (file, _) in &files {
        let bytes = std::fs::read(file).unwrap();
        mbox.extend_from_slice(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n");
        mbox.extend_from_slice(&quote(&bytes));
        mbox.extend_from_slice(b"\n");
        originals.push(bytes);
    }
    // A message whose body has lines starting with "From " and ">From ".
    let text = b"From: a@example.org\nSubject: x\n\nFrom here on\n>From there\nend\n";
    mbox.extend_from_slice(b"From a@example.org Thu Jan  1 00:00:01 2026\n");
    mbox.extend_from_slice(&quote(text));
    std::fs::write(&path, &mbox).unwrap();

    let items = read_mailbox(&path).unwrap();
    assert_eq!(items.len(), 4);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.source, format!("{}#{}", path.display(), i + 1));
    }
    for ((item, original), (_, envid)) in items.iter().zip(&originals).zip(&files) {
        assert_eq!(trim_end(&item.bytes), trim_end(original));
        let r = parse(&item.bytes);
        assert_eq!(r.kind, ReportKind::Dsn);
        assert_eq!(r.envid.as_deref(), Some(envid.as_str()));
    }
    assert_eq!(items[3].bytes, text.to_vec());
    assert_eq!(parse(&items[3].bytes).kind, ReportKind::NotAReport);
}

#[test]
fn maildir_reads_cur_and_new_in_name_order_and_skips_the_rest() {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let files = files(&corpus);
    let copy = |file: &Path, to: &Path| {
        std::fs::write(to, std::fs::read(corpus.join(file)).unwrap()).unwrap()
    };
    copy(&files[1].0, &md.join("cur/1700000002.M2.host:2,S"));
    copy(&files[0].0, &md.join("cur/1700000001.M1.host:2,S"));
    copy(&files[2].0, &md.join("new/1700000003.M3.host"));
    copy(&files[2].0, &md.join("tmp/1700000004.M4.host"));
    copy(&files[2].0, &md.join("new/.hidden"));

    let items = read_mailbox(&md).unwrap();
    let names: Vec<String> = items
        .iter()
        .map(|i| {
            Path::new(&i.source)
                .strip_prefix(&md)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "cur/1700000001.M1.host:2,S",
            "cur/1700000002.M2.host:2,S",
            "new/1700000003.M3.host"
        ]
    );
    let envids: Vec<Option<String>> = items.iter().map(|i| parse(&i.bytes).envid).collect();
    let want: Vec<Option<String>> = files.iter().map(|(_, e)| Some(e.clone())).collect();
    assert_eq!(envids, want);
}

#[test]
fn single_file_and_errors() {
    let Some(corpus) = corpus() else { return };
    let file = files(&corpus).remove(0).0;
    let items = read_mailbox(&file).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].source, file.display().to_string());
    assert_eq!(items[0].bytes, std::fs::read(&file).unwrap());
    let dir = tempfile::tempdir().unwrap();
    assert!(
        read_mailbox(dir.path()).is_err(),
        "a directory without cur/new"
    );
    assert!(read_mailbox(&dir.path().join("missing")).is_err());
}
