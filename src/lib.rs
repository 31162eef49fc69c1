//! t37gw: a T.37 (ITU-T T.37, RFC 3965) store-and-forward fax gateway.
//!
//! # Layout
//! - [`config`]: `gateway.yaml` (raw serde mirror, then validated [`config::Config`]) and dial-peer matching.
//! - [`tiff_f`]: the fax image codec: read TIFF/G3/PNG/PBM/JPEG pages, write RFC 3949 TIFF-F (profile S).
//! - [`onramp`]: received fax pages → TIFF-F → RFC 3965 message → SMTP with DSN/MDN requests.
//! - [`smtp`]: the offramp's SMTP listener (RFC 5321 session state machine over smtp-proto).
//! - [`offramp`]: the listener's backend: spool, MIME → TIFF-F → fax backend, DSNs back to the sender.
//! - [`spool`]: durable, fsynced storage of accepted messages and onramp jobs.
//! - [`fax`]: fax-output backends (spool directory outbox, external command).
//! - [`mailer`]: SMTP client to the smarthost(s) with RFC 3461 parameters (lettre).
//! - [`receipts`]: DSN (RFC 3464) and MDN (RFC 8098) parsing and correlation to jobs.
//! - [`jobs`]: job state derived by replaying the journal; the correlation index.
//! - [`journal`]: append-only JSON-lines event log; job state is derived by replaying it.
//! - [`ids`]: job ids and Message-IDs.
//! - [`demo`]: `t37gw demo`, the whole loop on the shipped config and the sample faxes.
//! - [`gateway`]: wires the parts together for `serve` and `demo`.
//! - [`cli`]: the command line of INTERFACE.md.

pub mod cli;
pub mod config;
pub mod demo;
pub mod fax;
pub mod gateway;
pub mod ids;
pub mod jobs;
pub mod journal;
pub mod mailer;
pub mod offramp;
pub mod onramp;
pub mod receipts;
pub mod smtp;
pub mod spool;
pub mod tiff_f;
