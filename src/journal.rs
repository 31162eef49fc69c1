//! The append-only job journal: one JSON object per line (INTERFACE.md "Journal"),
//! `{"time": RFC 3339 UTC, "job": id, "event": snake_case past-tense verb, ...details}`,
//! each line fsynced before `append` returns. Job state is derived by replaying it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One journal event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub job: String,
    pub event: String,
    /// Further fields (recipient, action, status, reason, …).
    pub details: Map<String, Value>,
}

impl Event {
    /// A new event for `job`, stamped now.
    pub fn new(job: &str, event: &str) -> Event {
        Event {
            time: Utc::now(),
            job: job.to_string(),
            event: event.to_string(),
            details: Map::new(),
        }
    }

    /// Add a field (skipped when `value` is JSON null).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        let value = value.into();
        if !value.is_null() {
            self.details.insert(key.to_string(), value);
        }
        self
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.details.get(key).and_then(Value::as_str)
    }

    /// The JSON line (without newline).
    pub fn to_line(&self) -> String {
        let mut m = Map::new();
        m.insert(
            "time".into(),
            self.time
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .into(),
        );
        m.insert("job".into(), self.job.clone().into());
        m.insert("event".into(), self.event.clone().into());
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m).to_string()
    }

    /// Parse one line; `None` for a line that is not a journal event (e.g. a torn last line).
    pub fn from_line(line: &str) -> Option<Event> {
        let Value::Object(mut m) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let time = m.remove("time")?.as_str()?.parse::<DateTime<Utc>>().ok()?;
        let job = m.remove("job")?.as_str()?.to_string();
        let event = m.remove("event")?.as_str()?.to_string();
        Some(Event {
            time,
            job,
            event,
            details: m,
        })
    }
}

/// The journal file, opened for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Open (create) the journal at `path`, creating its directory.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event and fsync (data) before returning.
    pub fn append(&self, event: &Event) -> std::io::Result<()> {
        let mut line = event.to_line();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// Read every event of a journal file in order; a missing file is an empty journal and
/// lines that do not parse (a torn write at the end after a crash) are skipped.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    Ok(read_events_checked(path)?.0)
}

/// Like [`read_events`], also returning the 1-based numbers of the non-empty lines that are
/// not events (invalid UTF-8 or JSON), so that a caller can say where the journal is damaged.
pub fn read_events_checked(path: &Path) -> std::io::Result<(Vec<Event>, Vec<usize>)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let (mut events, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(&line).ok().and_then(Event::from_line) {
            Some(ev) => events.push(ev),
            None => bad.push(i + 1),
        }
    }
    Ok((events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(&Event::new("ON-1", "mail_sent").with("recipient", "a@b"))
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\": \"20")
            .unwrap();
        let evs = read_events(&path).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event, "mail_sent");
        assert_eq!(evs[0].str("recipient"), Some("a@b"));
        let line = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
