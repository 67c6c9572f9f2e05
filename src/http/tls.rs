//! TLS for the HTTP API (`[http] https-enabled`) with rustls: the certificate chain and
//! private key from PEM files (`https-certificate`, `https-private-key`; with no key
//! file the certificate file holds both, as InfluxDB reads it), loaded at start-up —
//! a bad file stops the node with a message naming it — and again on SIGHUP: a reload
//! that fails keeps the certificate in use and says why in the log, so rotating a
//! certificate needs no restart (InfluxDB needs one).
//!
//! The node's cores share one [`TlsCertificates`]; each new connection takes the
//! configuration current at its accept (an `ArcSwap` load, no lock), and its handshake
//! runs on the core that serves it, within the connection's header-read timeout.

use crate::net::tls::{server_config, PemFiles, TlsError};
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;

/// The HTTP API's TLS configuration, shared by the node's cores and reloadable.
pub struct TlsCertificates {
    files: PemFiles,
    current: ArcSwap<rustls::ServerConfig>,
}

impl TlsCertificates {
    /// Loads the files (start-up: an error stops the node).
    pub fn load(files: PemFiles) -> Result<TlsCertificates, TlsError> {
        let config = server_config(&files, None, &[b"http/1.1"])?;
        Ok(TlsCertificates {
            files,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again (SIGHUP); on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files, None, &[b"http/1.1"])?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(self.current.load_full())
    }

    pub fn certificate_path(&self) -> &Path {
        &self.files.certificate
    }
}
