//! TLS for a source: trust what the operator gave in `tls.ca_file`, and say in words what
//! is wrong with a certificate that is refused.
//!
//! A Confluence behind a self-signed certificate is common, and `openssl req -x509` makes
//! one with `CA:TRUE`, which webpki refuses as a server certificate even when it is a trust
//! anchor (`CaUsedAsEndEntity`). So a certificate in `ca_file` is trusted two ways: as a CA
//! for the chain the server presents (webpki, unchanged), and — exactly that certificate,
//! byte for byte — as the server's own certificate (pinning).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// A rustls client configuration trusting the certificates of `ca_file` (as CAs and, each
/// exactly, as a server certificate) and the system's CAs.
pub fn client_config(ca_file: &Path) -> Result<rustls::ClientConfig, String> {
    let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls.ca_file {}: not a PEM certificate file ({e})",
                ca_file.display()
            )
        })?;
    if pinned.is_empty() {
        return Err(format!(
            "tls.ca_file {}: holds no PEM certificate",
            ca_file.display()
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(pinned.iter().cloned());
    if added == 0 {
        return Err(format!(
            "tls.ca_file {}: no usable certificate in it",
            ca_file.display()
        ));
    }
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("tls.ca_file {}: {e}", ca_file.display()))?;
    let verifier = Arc::new(PinnedOrWebPki { pinned, webpki });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts a server certificate equal to one of `pinned`; otherwise asks webpki.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// What is wrong, in words, when `e` (or an error it wraps) is a TLS failure; `None` when
/// it is not one.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r));
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(describe(r));
        }
        cur = err.source();
    }
    // Wrapped where its type cannot be seen (hyper's connector boxes it): rustls's words.
    describe_text(&super::chain_text(e))
}

const TRUST_IT: &str = "if this is the right server, put its certificate (or the CA that signed it) in PEM form in tls.ca_file";

fn describe(e: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return format!("the TLS handshake failed ({e}): check that url's port serves HTTPS");
    };
    let named = match cert {
        CertificateError::UnknownIssuer => "UnknownIssuer",
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "Expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "NotValidYet"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "NotValidForName"
        }
        CertificateError::Revoked => "Revoked",
        _ => "",
    };
    describe_text(&format!("invalid peer certificate: {named} {cert:?}"))
        .unwrap_or_else(|| format!("the server's certificate was refused ({cert:?}); {TRUST_IT}"))
}

/// The words for a TLS failure from its text (rustls's `Debug` names of the problem).
fn describe_text(text: &str) -> Option<String> {
    let has = |needle: &str| text.contains(needle);
    let said = if has("CaUsedAsEndEntity") {
        format!(
            "the server presents a CA certificate (CA:TRUE: typically a self-signed one, as `openssl req -x509` makes by default) as its own certificate, which is refused unless trusted explicitly; {TRUST_IT}"
        )
    } else if has("UnknownIssuer") {
        format!(
            "the server's certificate is self-signed or signed by a CA this host does not trust; {TRUST_IT}"
        )
    } else if has("NotValidYet") {
        "the server's certificate is not valid yet: check the clocks of this host and the server"
            .to_owned()
    } else if has("Expired") {
        "the server's certificate has expired (or this host's clock is wrong): renew the certificate on the server".to_owned()
    } else if has("NotValidForName") {
        "the server's certificate is not issued for the host name in url: use a name the certificate lists, or reissue the certificate for this name".to_owned()
    } else if has("Revoked") {
        "the server's certificate has been revoked".to_owned()
    } else if has("invalid peer certificate") {
        format!("the server's certificate was refused ({text}); {TRUST_IT}")
    } else if has("HandshakeFailure") || has("received fatal alert") || has("InvalidMessage") {
        format!("the TLS handshake failed ({text}): check that url's port serves HTTPS")
    } else {
        return None;
    };
    Some(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_said_in_words() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        let said = explain(&io).expect("a TLS error inside an io::Error");
        assert!(
            said.contains("self-signed") && said.contains("tls.ca_file"),
            "{said}"
        );
        let expired = explain(&rustls::Error::InvalidCertificate(
            CertificateError::Expired,
        ));
        assert!(expired.unwrap().contains("expired"));
        let name = explain(&rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(name.unwrap().contains("host name"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&plain), None);
        // Boxed out of sight, as hyper's connector does: recognised by rustls's words.
        let boxed = std::io::Error::other(
            "client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        );
        let said = explain(&boxed).expect("recognised");
        assert!(
            said.contains("CA:TRUE") && said.contains("tls.ca_file"),
            "{said}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_config(&path).unwrap_err();
        assert!(e.contains("ca.pem"), "{e}");
    }
}
