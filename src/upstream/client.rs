//! The HTTP client under every upstream: hyper over rustls (aws-lc-rs), HTTP/1 and HTTP/2,
//! with connection pooling and the system's trusted roots (`SSL_CERT_FILE` is honoured), plus
//! any extra CA certificates the config names (a TLS-inspecting corporate proxy's).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

use super::UpstreamError;
use super::egress::{Egress, EgressConnector};

/// A request body that streams (an upload).
pub type StreamingBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<EgressConnector>, Empty<Bytes>>,
    /// The same connector pool's twin for requests with a body (uploads).
    streaming: Client<HttpsConnector<EgressConnector>, StreamingBody>,
}

impl HttpClient {
    /// `extra_roots` are trusted on top of the platform's roots; `egress` routes connections
    /// through a proxy.
    pub fn new(
        connect_timeout: Duration,
        extra_roots: &[CertificateDer<'static>],
        egress: Option<Egress>,
    ) -> Result<Self, UpstreamError> {
        install_crypto_provider();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable platform certificates are skipped, as hyper-rustls' own loader does.
        let (platform, _skipped) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| UpstreamError::Connect(format!("an extra CA certificate is unusable: {e}")))?;
        }
        if platform + extra_roots.len() == 0 {
            return Err(UpstreamError::Connect("no trusted root certificates".into()));
        }
        // No ALPN here: the connector sets it (and refuses a config that has it already).
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(EgressConnector::new(http, egress));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60));
        let streaming = builder.build(https.clone());
        let inner = builder.build(https);
        Ok(HttpClient { inner, streaming })
    }

    /// Sends a request whose body streams (an upload); nothing is retried.
    pub async fn send_body(
        &self,
        request: Request<StreamingBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.streaming.request(request).await.map_err(|e| UpstreamError::from_client(&e))
    }

    pub async fn request(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, UpstreamError> {
        self.inner.request(request).await.map_err(|e| UpstreamError::from_client(&e))
    }
}

/// rustls needs one process-wide crypto provider; aws-lc-rs is the only one we build.
fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
