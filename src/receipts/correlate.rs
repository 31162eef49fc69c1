//! Match a parsed report to a job (INTERFACE.md "DSN and MDN fields").

use super::{xtext_decode, Correlation, JobLookup, MatchedBy, Report, ReportKind};

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
    } else {
        "the report carries no ENVID or Message-ID".into()
    }
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
