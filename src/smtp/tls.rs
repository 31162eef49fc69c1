//! The rustls server configuration for STARTTLS (RFC 3207) and implicit TLS (RFC 8314 §3.3),
//! built once from [`TlsConfig`] with the ring provider.

use super::{PemSource, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::sync::{Arc, Once};
use tokio_rustls::TlsAcceptor;

static INSTALL: Once = Once::new();

/// Make ring the process-wide rustls provider, once (a provider installed earlier by someone
/// else stays).
fn install_provider() {
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(source: &PemSource) -> io::Result<Vec<u8>> {
    match source {
        PemSource::Pem(bytes) => Ok(bytes.clone()),
        PemSource::Path(path) => std::fs::read(path),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Build the acceptor. Errors (`InvalidInput`): no certificate or key in the PEM, or rustls
/// refusing the pair; I/O errors of reading the files.
pub(crate) fn acceptor(config: &TlsConfig) -> io::Result<TlsAcceptor> {
    install_provider();
    let cert_pem = read(&config.cert)?;
    let key_pem = read(&config.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("unreadable TLS certificate PEM"))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the TLS certificate PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| invalid("no private key in the TLS key PEM"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&format!("TLS certificate or key refused: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
