//! TLS with rustls for both of the node's listeners: PEM files in, rustls
//! configurations out. The HTTP API uses a server configuration (`http::tls`); the
//! cluster ports, with `[cluster] tls-enabled`, use a pair ([`ClusterTls`]) that
//! authenticates both ends against the cluster's CA (mutual TLS), under the same
//! shared-secret handshake as plain connections (DESIGN section 4).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a certificate, key or CA file could not be used; names the configuration key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{key} {path}: {message}")]
    File {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error(
        "the private key in {key} does not go with the certificate in {certificate}: {message}"
    )]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The PEM files an identity is read from, and the configuration keys naming them
/// (for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFiles {
    pub certificate: PathBuf,
    /// The same file as `certificate` when the configuration names no key file.
    pub private_key: PathBuf,
    pub certificate_key: &'static str,
    pub private_key_key: &'static str,
}

impl PemFiles {
    /// `private_key` empty: the key is in the certificate file (InfluxDB's rule).
    pub fn new(
        (certificate_key, certificate): (&'static str, &str),
        (private_key_key, private_key): (&'static str, &str),
    ) -> PemFiles {
        let certificate = PathBuf::from(certificate);
        let private_key = if private_key.is_empty() {
            certificate.clone()
        } else {
            PathBuf::from(private_key)
        };
        PemFiles {
            certificate,
            private_key,
            certificate_key,
            private_key_key,
        }
    }

    /// The certificate chain (leaf first) and the key.
    pub fn read(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = certificates(self.certificate_key, &self.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&self.private_key).map_err(|e| TlsError::File {
            key: self.private_key_key,
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

/// Every CERTIFICATE block of a PEM file (at least one).
fn certificates(
    key: &'static str,
    path: &PathBuf,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |message: String| TlsError::File {
        key,
        path: path.clone(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(error("no CERTIFICATE block in the file".into()));
    }
    Ok(chain)
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// ring, not aws-lc-rs (whose build needs cmake and much longer): rustls 0.23.48
/// deprecates ring's provider only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn mismatch(files: &PemFiles, e: rustls::Error) -> TlsError {
    TlsError::Mismatch {
        certificate: files.certificate.clone(),
        key: files.private_key.clone(),
        message: e.to_string(),
    }
}

/// A server configuration from PEM files; with `client_roots`, clients must present a
/// certificate those roots signed. `alpn`: the protocols offered.
pub fn server_config(
    files: &PemFiles,
    client_roots: Option<Arc<rustls::RootCertStore>>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let (chain, key) = files.read()?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Invalid {
                        key: "cluster.tls-ca-certificate",
                        message: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| mismatch(files, e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The cluster ports' TLS: both ends present a certificate the cluster's CA signed.
pub struct ClusterTls {
    pub acceptor: futures_rustls::TlsAcceptor,
    pub connector: futures_rustls::TlsConnector,
    /// The name every peer's certificate must carry; `None`: the peer's address.
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// From `[cluster]`'s files: this node's certificate and key, and the CA that
    /// signed every node's certificate.
    pub fn load(files: &PemFiles, ca: &str, server_name: &str) -> Result<ClusterTls, TlsError> {
        let ca_path = PathBuf::from(ca);
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates("cluster.tls-ca-certificate", &ca_path)? {
            roots.add(cert).map_err(|e| TlsError::File {
                key: "cluster.tls-ca-certificate",
                path: ca_path.clone(),
                message: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let server = server_config(files, Some(roots.clone()), &[b"shardcore-cluster"])?;
        let (chain, key) = files.read()?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| mismatch(files, e))?;
        client.alpn_protocols = vec![b"shardcore-cluster".to_vec()];
        let server_name = if server_name.is_empty() {
            None
        } else {
            Some(
                ServerName::try_from(server_name.to_string()).map_err(|e| TlsError::Invalid {
                    key: "cluster.tls-server-name",
                    message: format!("{server_name:?} is not a DNS name or IP address: {e}"),
                })?,
            )
        };
        Ok(ClusterTls {
            acceptor: futures_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: futures_rustls::TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// The name a peer at `address` must prove.
    pub fn name_of(&self, address: std::net::SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(path: &std::path::Path) -> PemFiles {
        PemFiles::new(
            ("https-certificate", path.to_str().unwrap()),
            ("https-private-key", ""),
        )
    }

    #[test]
    fn bad_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_config(&files(&missing), None, &[]).err().unwrap();
        assert!(
            e.to_string().starts_with("https-certificate ")
                && e.to_string().contains("missing.pem"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = server_config(&files(&junk), None, &[]).err().unwrap();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        let e = ClusterTls::load(&files(&junk), missing.to_str().unwrap(), "")
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("cluster.tls-ca-certificate "),
            "{e}"
        );
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
            let _ = server_config(&files(&path), None, &[]);
            let _ = ClusterTls::load(&files(&path), path.to_str().unwrap(), "");
            std::fs::write(&path, &bytes).unwrap();
            let _ = server_config(&files(&path), None, &[]);
        }
    }
}
