//! TLS for `http` checks on an `https://` URL: the client configuration a probe connects
//! with. The server's certificate is verified against the system's roots (read once per
//! process with `rustls-native-certs`: /etc/ssl/certs, or `SSL_CERT_FILE` / `SSL_CERT_DIR`),
//! unless the check says `tls_skip_verify` (Consul's name): then any certificate is taken,
//! its handshake signature still checked. rustls with the `ring` provider; TLS 1.2 and 1.3.
//!
//! Must not probe anything itself (`probe` does) nor read a certificate file a check names.

use std::sync::{Arc, OnceLock};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore};

/// rustls with ring: no C build beyond ring's own (aws-lc-rs would add cmake and minutes of
/// build on CI). rustls marks ring's provider deprecated for lacking post-quantum key
/// exchange, which a health check of a service on this host or its network does not need.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The system's trusted roots, loaded at the first https probe (a store that cannot be
/// read leaves it empty: every verified probe then fails, saying why).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                tracing::warn!(
                    errors = ?found.errors,
                    "https checks: no trusted root certificate found on this host: every \
                     verified https check will fail (set SSL_CERT_FILE, or tls_skip_verify)"
                );
            } else {
                tracing::debug!(added, ignored, "https checks: system roots loaded");
            }
            Arc::new(roots)
        })
        .clone()
}

/// The configuration of an https probe: the system's roots, or no verification.
pub fn client_config(skip_verify: bool) -> Arc<ClientConfig> {
    if skip_verify {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions");
        Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth(),
        )
    } else {
        with_roots(system_roots())
    }
}

/// A configuration verifying servers against `roots` (the system's, or a test's CA).
pub fn with_roots(roots: Arc<RootCertStore>) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `tls_skip_verify`: takes any certificate chain and name, and still checks that the
/// server holds the key of the certificate it sent (the handshake signature).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
