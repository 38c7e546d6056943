//! OIDC in tests: RSA signing keys with their JWKs, a JWKS endpoint on loopback that counts
//! its requests, and tokens signed in the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// An RSA signing key with its `kid`, and the JWK that publishes it.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_pem: String,
    pub jwk: Jwk,
}

pub fn signing_key(kid: &str) -> SigningKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let encoding = EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    SigningKey { kid: kid.to_owned(), encoding, public_pem: key.public_key_pem(), jwk }
}

/// A JWKS endpoint on loopback that counts its requests.
pub struct Jwks {
    pub url: String,
    pub keys: Arc<Mutex<Vec<Jwk>>>,
    requests: Arc<AtomicUsize>,
}

impl Jwks {
    pub async fn start(keys: Vec<Jwk>) -> Jwks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(keys));
        let requests = Arc::new(AtomicUsize::new(0));
        let (shared, count) = (keys.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (keys, count) = (shared.clone(), count.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let body =
                            serde_json::to_vec(&JwkSet { keys: keys.lock().unwrap().clone() }).unwrap();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                                body,
                            ))))
                        }
                    });
                    super::tls::serve_connection(stream, None, service).await;
                });
            }
        });
        Jwks { url, keys, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub fn sign(key: &SigningKey, claims: &serde_json::Value) -> String {
    sign_as(&key.encoding, &key.kid, claims)
}

pub fn sign_as(encoding: &EncodingKey, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, encoding).unwrap()
}
