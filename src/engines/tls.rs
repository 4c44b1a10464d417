//! Private certificate authorities for the engines' TLS connections.
//!
//! Every driver verifies the server's certificate; these helpers let a
//! configured CA file be trusted (`kv.tls_ca_file`, `queue.tls_ca_file`)
//! and tell a verification failure apart from a server that is down. The
//! relational and document engines take their CA in the URL instead
//! (`sslrootcert=`, `tlsCAFile=`), which their drivers read.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::error::{Error, ErrorKind, Result};

/// The PEM text of the CA file at `path`, set by the configuration key
/// `key`, after checking that it holds at least one certificate. A missing
/// or unreadable file, or one without a certificate, is a `Config` error
/// naming the key and the path.
pub fn read_ca_file(key: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("{key}: cannot read `{}`: {e}", path.display()),
        )
        .with_field(key.to_owned())
    })?;
    let certificates =
        CertificateDer::pem_slice_iter(&pem).collect::<std::result::Result<Vec<_>, _>>();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!("{key}: `{}` holds no certificate in PEM", path.display()),
        )
        .with_field(key.to_owned())),
    }
}

/// Whether `error`, or an error it wraps, is a TLS failure that trying
/// again will not cure: a certificate that does not verify (unknown
/// issuer, wrong name, expired), or a peer that does not speak TLS.
pub fn is_handshake_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        find_rustls(error),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::InvalidMessage(_)
                | rustls::Error::AlertReceived(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
                | rustls::Error::PeerIncompatible(_)
                | rustls::Error::PeerMisbehaved(_)
        )
    )
}

/// The rustls error inside `error`. `io::Error::source` skips the error it
/// wraps (it answers that error's own source), and drivers keep errors in
/// an `Arc`, so both are opened by hand.
fn find_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        && let Some(tls) = find_rustls(inner)
    {
        return Some(tls);
    }
    if let Some(inner) = error.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
        && let Some(tls) = find_rustls(&**inner)
    {
        return Some(tls);
    }
    error.source().and_then(find_rustls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_names_the_key_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = read_ca_file("kv.tls_ca_file", &missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().starts_with("kv.tls_ca_file: cannot read `"));
        assert!(e.message().contains("nope.pem"), "{}", e.message());
        assert_eq!(e.field(), Some("kv.tls_ca_file"));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = read_ca_file("queue.tls_ca_file", &empty).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().contains("holds no certificate in PEM")
                && e.message().contains("empty.pem"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_ca_file_with_a_certificate_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let pem = read_ca_file("kv.tls_ca_file", &path).unwrap();
        assert_eq!(pem, ca.cert.pem().into_bytes());
    }

    #[test]
    fn certificate_failures_are_found_through_wrappers() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(io);
        assert!(is_handshake_failure(&shared));
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        ));
        assert!(is_handshake_failure(&io));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_handshake_failure(&refused));
    }
}
