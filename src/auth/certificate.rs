//! A service principal's certificate, as the signed client assertion Entra ID accepts
//! (RFC 7523 JWT bearer, signed RS256, with the certificate's SHA-1 thumbprint in `x5t`).
//!
//! azure_identity's own certificate credential needs OpenSSL; this one signs with aws-lc-rs
//! (already pipgate's TLS provider) through `jsonwebtoken`, and plugs into the crate's
//! `ClientAssertionCredential`. The PEM file (certificate and private key) is read on every
//! token fetch, so a rotated certificate takes effect without a restart.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;

/// Lifetime of one assertion: Entra only needs it for the token request itself.
const ASSERTION_LIFETIME_S: u64 = 600;

#[derive(Debug)]
pub struct CertificateAssertion {
    client_id: String,
    /// The token endpoint, which is the assertion's audience.
    audience: String,
    file: PathBuf,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl CertificateAssertion {
    pub fn new(client_id: String, authority_host: &str, tenant_id: &str, file: PathBuf) -> Self {
        let audience = format!("{}/{tenant_id}/oauth2/v2.0/token", authority_host.trim_end_matches('/'));
        CertificateAssertion { client_id, audience, file }
    }

    /// Reads the PEM file and signs a fresh assertion. Messages never hold key material.
    pub fn sign(&self) -> Result<String, String> {
        let shown = self.file.display();
        let pem =
            std::fs::read(&self.file).map_err(|e| format!("cannot read certificate file {shown}: {e}"))?;
        let certificate = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("certificate file {shown} holds no CERTIFICATE block"))?;
        let key = private_key_block(&pem)
            .ok_or_else(|| format!("certificate file {shown} holds no PRIVATE KEY block"))?;
        let key = EncodingKey::from_rsa_pem(key)
            .map_err(|e| format!("the private key in {shown} is not an RSA key jsonwebtoken can use: {e}"))?;
        let thumbprint =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, certificate.as_ref());
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".to_owned());
        header.x5t = Some(URL_SAFE_NO_PAD.encode(thumbprint.as_ref()));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            aud: &self.audience,
            iss: &self.client_id,
            sub: &self.client_id,
            jti: random_id(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_S,
        };
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| format!("cannot sign the client assertion: {e}"))
    }
}

#[async_trait::async_trait]
impl azure_identity::ClientAssertion for CertificateAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.sign().map_err(|message| azure_core::Error::with_message(ErrorKind::Credential, message))
    }
}

/// The first `-----BEGIN … PRIVATE KEY-----` block of a PEM file, with its armour.
fn private_key_block(pem: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = text
        .match_indices("-----BEGIN ")
        .find(|(at, _)| {
            text[*at..].lines().next().is_some_and(|line| line.trim_end().ends_with("PRIVATE KEY-----"))
        })?
        .0;
    let end_marker = text[begin..].find("-----END ")? + begin;
    let end = text[end_marker..].find("KEY-----")? + end_marker + "KEY-----".len();
    Some(&pem[begin..end])
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_block_after_the_certificate() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
        let block = std::str::from_utf8(private_key_block(pem).unwrap()).unwrap();
        assert_eq!(block, "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----");
        assert!(private_key_block(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----").is_none());
    }
}
