//! Match a parsed report to a job (INTERFACE.md "DSN and MDN fields").

use super::{
    xtext_decode, Correlation, JobLookup, JobRecipient, MatchedBy, RecipientMatchedBy,
    RecipientReport, Report, ReportKind,
};

pub(crate) fn correlate(report: &Report, lookup: &dyn JobLookup) -> Correlation {
    match report.kind {
        ReportKind::NotAReport => {
            return Correlation::NotAReport {
                reason: "not a delivery or disposition report".into(),
            }
        }
        ReportKind::Unparseable => {
            return Correlation::NotAReport {
                reason: format!(
                    "unparseable: {}",
                    report.error.as_deref().unwrap_or("unknown error")
                ),
            }
        }
        ReportKind::Dsn | ReportKind::Mdn | ReportKind::Bounce => {}
    }
    let candidates = candidates(report, lookup);
    let Some((job, matched_by)) = candidates.first().cloned() else {
        return Correlation::Orphan {
            reason: orphan_reason(report),
        };
    };
    if let Some((other, by)) = candidates.iter().find(|(j, _)| *j != job) {
        return Correlation::Orphan {
            reason: format!(
                "conflicting identifiers: {} names job {job}, {} names job {other}",
                describe(matched_by),
                describe(*by)
            ),
        };
    }
    Correlation::Job { job, matched_by }
}

/// Every (job, how) the report's identifiers find, in priority order.
fn candidates(report: &Report, lookup: &dyn JobLookup) -> Vec<(String, MatchedBy)> {
    let mut found = Vec::new();
    if let Some(envid) = non_empty(&report.envid) {
        if let Some(job) = lookup.job_by_envid(envid) {
            found.push((job, MatchedBy::Envid));
        } else if let Some(decoded) = xtext_decode(envid).filter(|d| d != envid) {
            if let Some(job) = lookup.job_by_envid(&decoded) {
                found.push((job, MatchedBy::EnvidXtextDecoded));
            }
        }
    }
    let by_id = [
        (&report.original_message_id, MatchedBy::OriginalMessageId),
        (&report.returned_message_id, MatchedBy::ReturnedMessageId),
        (&report.in_reply_to, MatchedBy::InReplyTo),
    ];
    for (id, how) in by_id {
        if let Some(job) = non_empty(id).and_then(|id| lookup.job_by_message_id(id)) {
            found.push((job, how));
        }
    }
    // References only when nothing else matched: the newest referenced message first.
    if found.is_empty() {
        if let Some(job) = report
            .references
            .iter()
            .rev()
            .find_map(|id| lookup.job_by_message_id(id))
        {
            found.push((job, MatchedBy::References));
        }
    }
    found
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn describe(by: MatchedBy) -> &'static str {
    match by {
        MatchedBy::Envid => "ENVID",
        MatchedBy::EnvidXtextDecoded => "xtext-decoded ENVID",
        MatchedBy::OriginalMessageId => "Original-Message-ID",
        MatchedBy::ReturnedMessageId => "returned Message-ID",
        MatchedBy::InReplyTo => "In-Reply-To",
        MatchedBy::References => "References",
    }
}

fn orphan_reason(report: &Report) -> String {
    let has_id = [
        &report.envid,
        &report.original_message_id,
        &report.returned_message_id,
        &report.in_reply_to,
    ]
    .iter()
    .any(|v| non_empty(v).is_some());
    if has_id {
        "no ENVID or Message-ID matches a job".into()
    } else if report.kind == ReportKind::Mdn {
        "MDN without Original-Message-ID, In-Reply-To or returned headers: no reference to a job"
            .into()
    } else {
        "the report carries no ENVID or Message-ID".into()
    }
}

/// How a per-recipient block was matched to a job recipient.
pub(crate) fn correlate_recipient(
    block: &RecipientReport,
    job_recipients: &[JobRecipient],
) -> Option<(usize, RecipientMatchedBy)> {
    let original = non_empty(&block.original_recipient);
    let final_ = non_empty(&block.final_recipient).map(strip_angle);
    let original = original.map(strip_angle);
    let steps: [(Option<&str>, RecipientMatchedBy); 4] = [
        (original, RecipientMatchedBy::OriginalRecipient),
        (original, RecipientMatchedBy::OriginalRecipientXtextDecoded),
        (original, RecipientMatchedBy::OriginalRecipientAsAddress),
        (final_, RecipientMatchedBy::FinalRecipient),
    ];
    for (value, how) in steps {
        let Some(value) = value else { continue };
        let decoded;
        let value = if how == RecipientMatchedBy::OriginalRecipientXtextDecoded {
            match xtext_decode(value).filter(|d| d != value) {
                Some(d) => {
                    decoded = d;
                    decoded.as_str()
                }
                None => continue,
            }
        } else {
            value
        };
        let hits: Vec<usize> = job_recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| match how {
                RecipientMatchedBy::OriginalRecipient
                | RecipientMatchedBy::OriginalRecipientXtextDecoded => {
                    orcpt_of(r).is_some_and(|o| same_address(o, value))
                }
                RecipientMatchedBy::OriginalRecipientAsAddress => {
                    same_address(strip_angle(&r.address), value)
                }
                RecipientMatchedBy::FinalRecipient => {
                    same_address(strip_angle(&r.address), value)
                        || orcpt_of(r).is_some_and(|o| same_address(o, value))
                }
            })
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [one] => return Some((*one, how)),
            [] => continue,
            // Two job recipients fit: never guess.
            _ => return None,
        }
    }
    None
}

fn orcpt_of(r: &JobRecipient) -> Option<&str> {
    r.orcpt.as_deref().map(strip_angle)
}

fn strip_angle(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

/// Addresses compare exactly in the local part and case-insensitively in the domain
/// (RFC 5321 §2.4); a local part that differs only in case also matches, as nearly every
/// mail system treats it.
fn same_address(a: &str, b: &str) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Jobs(HashMap<&'static str, &'static str>);
    impl JobLookup for Jobs {
        fn job_by_envid(&self, envid: &str) -> Option<String> {
            self.0.get(envid).map(|j| j.to_string())
        }
        fn job_by_message_id(&self, id: &str) -> Option<String> {
            self.0.get(id).map(|j| j.to_string())
        }
    }

    fn dsn(envid: Option<&str>, returned: Option<&str>) -> Report {
        let mut r = Report::empty(ReportKind::Dsn);
        r.envid = envid.map(String::from);
        r.returned_message_id = returned.map(String::from);
        r
    }

    #[test]
    fn envid_as_written_then_decoded() {
        let jobs = Jobs(HashMap::from([("A+B", "J1"), ("job id", "J2")]));
        assert_eq!(
            correlate(&dsn(Some("A+B"), None), &jobs),
            Correlation::Job {
                job: "J1".into(),
                matched_by: MatchedBy::Envid
            }
        );
        assert_eq!(
            correlate(&dsn(Some("job+20id"), None), &jobs),
            Correlation::Job {
                job: "J2".into(),
                matched_by: MatchedBy::EnvidXtextDecoded
            }
        );
    }

    #[test]
    fn conflicting_ids_are_orphans_and_non_reports_are_not_reports() {
        let jobs = Jobs(HashMap::from([("E1", "J1"), ("<m@x>", "J2")]));
        assert!(matches!(
            correlate(&dsn(Some("E1"), Some("<m@x>")), &jobs),
            Correlation::Orphan { .. }
        ));
        assert!(matches!(
            correlate(&dsn(None, None), &jobs),
            Correlation::Orphan { .. }
        ));
        assert!(matches!(
            correlate(&Report::empty(ReportKind::NotAReport), &jobs),
            Correlation::NotAReport { .. }
        ));
    }
}
