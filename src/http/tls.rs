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

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("https-certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("https-private-key {path}: {message}")]
    PrivateKey { path: PathBuf, message: String },
    #[error(
        "the private key in {key} does not go with the certificate in {certificate}: {message}"
    )]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The PEM files a server's identity is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFiles {
    pub certificate: PathBuf,
    /// The same file as `certificate` when the configuration names no key file.
    pub private_key: PathBuf,
}

impl PemFiles {
    pub fn new(certificate: &str, private_key: &str) -> PemFiles {
        let certificate = PathBuf::from(certificate);
        let private_key = if private_key.is_empty() {
            certificate.clone()
        } else {
            PathBuf::from(private_key)
        };
        PemFiles {
            certificate,
            private_key,
        }
    }

    /// The certificate chain (leaf first) and the key.
    pub fn read(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let cert_error = |message: String| TlsError::Certificate {
            path: self.certificate.clone(),
            message,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.certificate)
            .map_err(|e| cert_error(pem_error(&e)))?
            .collect::<Result<_, _>>()
            .map_err(|e| cert_error(pem_error(&e)))?;
        if chain.is_empty() {
            return Err(cert_error("no CERTIFICATE block in the file".into()));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.private_key).map_err(|e| TlsError::PrivateKey {
                path: self.private_key.clone(),
                message: match e {
                    rustls_pki_types::pem::Error::NoItemsFound => {
                        "no PRIVATE KEY block in the file".into()
                    }
                    e => pem_error(&e),
                },
            })?;
        Ok((chain, key))
    }
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// A rustls server configuration for HTTP/1.1 from PEM files.
pub fn server_config(files: &PemFiles) -> Result<rustls::ServerConfig, TlsError> {
    let (chain, key) = files.read()?;
    // ring, not aws-lc-rs (whose build needs cmake and much longer): rustls 0.23.48
    // deprecates ring's provider only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch {
            certificate: files.certificate.clone(),
            key: files.private_key.clone(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The HTTP API's TLS configuration, shared by the node's cores and reloadable.
pub struct TlsCertificates {
    files: PemFiles,
    current: ArcSwap<rustls::ServerConfig>,
}

impl TlsCertificates {
    /// Loads the files (start-up: an error stops the node).
    pub fn load(files: PemFiles) -> Result<TlsCertificates, TlsError> {
        let config = server_config(&files)?;
        Ok(TlsCertificates {
            files,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again (SIGHUP); on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = TlsCertificates::load(PemFiles::new(missing.to_str().unwrap(), ""))
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("https-certificate ")
                && e.to_string().contains("missing.pem"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = TlsCertificates::load(PemFiles::new(junk.to_str().unwrap(), ""))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }

    proptest::proptest! {
        /// Certificate and key files come from the disk: no bytes panic their reading.
        #[test]
        fn arbitrary_pem_files_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.pem");
            let mut text = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            text.extend_from_slice(&bytes);
            std::fs::write(&path, &text).unwrap();
            let _ = server_config(&PemFiles::new(path.to_str().unwrap(), ""));
            std::fs::write(&path, &bytes).unwrap();
            let _ = server_config(&PemFiles::new(path.to_str().unwrap(), ""));
        }
    }
}
