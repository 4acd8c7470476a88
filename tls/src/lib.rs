//! Streamfleet's certificates: one private certificate authority per installation (made by
//! `streamfleet up` in its state folder) and the server certificates it issues — for
//! nats-server and for the hosts' control ports — with rustls configurations over them. Clients
//! trust the authority's certificate (`ca.pem`) and nothing else.
//!
//! Invariant: a private key is written only into a file created 0600 (its folder 0700) and never
//! printed; certificates are public. A folder made once is reused as it is, so a restart keeps
//! the certificates clients already trust.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let files = streamfleet_tls::TlsFiles::ensure(dir.path(), &["127.0.0.1", "localhost"]).unwrap();
//! assert!(files.ca.exists() && files.cert.exists() && files.key.exists());
//! let server = streamfleet_tls::server_config(&files.cert, &files.key).unwrap();
//! let client = streamfleet_tls::client_config(&files.ca).unwrap();
//! # let _ = (server, client);
//! ```

pub use rustls;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why certificates could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key could not be made or parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate(e.to_string())
}

/// The authority's parameters: the same every time, so an issuer rebuilt from the stored key
/// names the same subject the stored certificate does.
fn authority_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "Streamfleet installation CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The files of one installation's TLS: the authority's certificate (what clients trust) and
/// key, and one server certificate with its key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `ca.pem`: the authority's certificate.
    pub ca: PathBuf,
    /// `server.pem`: the server certificate, issued by the authority.
    pub cert: PathBuf,
    /// `server.key`: its private key (0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files in `dir`, made when missing: an authority (`ca.pem`, `ca.key`) and a server
    /// certificate for `names` (IP addresses or DNS names) issued by it.
    pub fn ensure(dir: &Path, names: &[&str]) -> Result<TlsFiles, TlsError> {
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        if files.ca.exists() && files.cert.exists() && files.key.exists() {
            return Ok(files);
        }
        private_dir(dir)?;
        let ca_key = KeyPair::generate().map_err(cert_error)?;
        let ca_cert = authority_params()?
            .self_signed(&ca_key)
            .map_err(cert_error)?;
        write_private(&dir.join("ca.key"), &ca_key.serialize_pem())?;
        std::fs::write(&files.ca, ca_cert.pem()).map_err(io(&files.ca))?;
        issue_into(&ca_key, names, &files.cert, &files.key)?;
        Ok(files)
    }

    /// Another server certificate from the same authority, for `names` (a host at another
    /// address): `<dir>/<file>.pem` and `<dir>/<file>.key` (0600). Returns (certificate, key).
    pub fn issue(&self, names: &[&str], file: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let dir = self.ca.parent().unwrap_or(Path::new("."));
        let ca_key_path = dir.join("ca.key");
        let text = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let ca_key = KeyPair::from_pem(&text).map_err(cert_error)?;
        let (cert, key) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        issue_into(&ca_key, names, &cert, &key)?;
        Ok((cert, key))
    }
}

/// Issues a server certificate for `names` signed by the authority's key into `cert` and `key`.
fn issue_into(ca_key: &KeyPair, names: &[&str], cert: &Path, key: &Path) -> Result<(), TlsError> {
    let issuer = Issuer::new(authority_params()?, ca_key);
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Streamfleet server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(cert_error)?;
    let issued = params.signed_by(&server_key, &issuer).map_err(cert_error)?;
    write_private(key, &server_key.serialize_pem())?;
    std::fs::write(cert, issued.pem()).map_err(io(cert))
}

/// The base64 SHA-256 of a key's public half (its SubjectPublicKeyInfo): what a browser is told
/// to trust with `--ignore-certificate-errors-spki-list` when it cannot be given the authority.
pub fn spki_sha256_base64(key: &Path) -> Result<String, TlsError> {
    use base64::Engine;
    use rcgen::PublicKeyData;
    let text = std::fs::read_to_string(key).map_err(io(key))?;
    let pair = KeyPair::from_pem(&text).map_err(cert_error)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &pair.subject_public_key_info());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

fn private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting the certificate chain in `cert` with the key in `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let text = std::fs::read(key).map_err(io(key))?;
    let key = PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| TlsError::Certificate(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in `ca` and nothing else.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_private_and_a_second_ensure_keeps_the_first_certificates() {
        let dir = tempfile::tempdir().expect("dir");
        let tls = dir.path().join("tls");
        let files = TlsFiles::ensure(&tls, &["127.0.0.1"]).expect("made");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&tls.join("ca.key")), 0o600);
        let ca = std::fs::read(&files.ca).expect("ca");
        TlsFiles::ensure(&tls, &["127.0.0.1"]).expect("again");
        assert_eq!(std::fs::read(&files.ca).expect("ca"), ca, "kept");
        assert!(server_config(&files.cert, &files.key).is_ok());
        assert!(client_config(&files.ca).is_ok());
        assert!(
            client_config(&files.key).is_err(),
            "a key is no certificate"
        );
    }
}
