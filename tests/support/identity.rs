//! Fake identity endpoints on 127.0.0.1 that issue short-lived tokens into a [`TokenBook`]:
//! the App Service managed-identity protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), which
//! azure_identity accepts over plain http, and (with [`super::tls`]) an Entra token endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::fake_index::TokenBook;

/// What the endpoint saw and does.
#[derive(Default)]
pub struct Behaviour {
    pub issued: AtomicUsize,
    pub failing: AtomicBool,
    /// Form fields of token requests (Entra flows), for assertions.
    pub forms: Mutex<Vec<HashMap<String, String>>>,
}

#[derive(Clone)]
pub struct IdentityEndpoint {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
}

impl IdentityEndpoint {
    /// Starts the endpoint; `tls` serves HTTPS with the given config (Entra needs https).
    pub async fn start(
        book: TokenBook,
        lifetime: Duration,
        header_secret: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> IdentityEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Behaviour::default());
        let lifetime = Arc::new(Mutex::new(lifetime));
        let endpoint = IdentityEndpoint { addr, behaviour: behaviour.clone() };
        let secret = header_secret.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (book, behaviour, lifetime, secret, tls) =
                    (book.clone(), behaviour.clone(), lifetime.clone(), secret.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        answer(req, book.clone(), behaviour.clone(), lifetime.clone(), secret.clone())
                    });
                    super::tls::serve_connection(stream, tls, service).await;
                });
            }
        });
        endpoint
    }

    pub fn issued(&self) -> usize {
        self.behaviour.issued.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.behaviour.failing.store(failing, Ordering::SeqCst);
    }
}

async fn answer(
    req: Request<Incoming>,
    book: TokenBook,
    behaviour: Arc<Behaviour>,
    lifetime: Arc<Mutex<Duration>>,
    secret: String,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    if behaviour.failing.load(Ordering::SeqCst) {
        return reply(500, r#"{"error":"temporarily_unavailable"}"#.to_owned());
    }
    let path = req.uri().path().to_owned();
    let lifetime = *lifetime.lock().unwrap();
    let n = behaviour.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("canary-tok-{n}");
    if path.ends_with("/oauth2/v2.0/token") {
        // Entra: client credentials (client_secret) or client assertion (workload identity).
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
        behaviour.forms.lock().unwrap().push(form);
        book.issue(&token, lifetime);
        let json = serde_json::json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": token});
        return reply(200, json.to_string());
    }
    // App Service managed identity.
    if req.headers().get("x-identity-header").is_none_or(|v| v != secret.as_str()) {
        behaviour.issued.fetch_sub(1, Ordering::SeqCst);
        return reply(401, r#"{"error":"bad identity header"}"#.to_owned());
    }
    book.issue(&token, lifetime);
    let expires_on = (SystemTime::now() + lifetime).duration_since(UNIX_EPOCH).unwrap().as_secs();
    let json = serde_json::json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": "499b84ac-1321-427f-aa17-267ca6975798",
        "token_type": "Bearer",
    });
    reply(200, json.to_string())
}
