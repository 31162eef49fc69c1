//! STUB: outgoing DSN builder (filled in by the receipts work).

/// One recipient block of an outgoing DSN.
#[derive(Debug, Clone)]
pub struct DsnRecipient {
    pub original_recipient: Option<String>,
    pub final_recipient: String,
    pub action: String,
    pub status: String,
    pub diagnostic_code: Option<String>,
}

/// An outgoing DSN.
#[derive(Debug, Clone)]
pub struct OutgoingDsn {
    pub reporting_mta: String,
    pub from: String,
    pub to: String,
    pub envid: Option<String>,
    pub arrival_date: chrono::DateTime<chrono::Utc>,
    pub recipients: Vec<DsnRecipient>,
    pub original: Vec<u8>,
    pub return_full: bool,
    pub message_id: String,
    pub human_text: String,
}

/// Build the DSN message.
pub fn build_dsn(_dsn: &OutgoingDsn) -> Vec<u8> {
    unimplemented!("receipts::build_dsn")
}
