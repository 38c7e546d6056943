//! The HTTP client under every upstream: hyper over rustls (aws-lc-rs), HTTP/1 and HTTP/2,
//! with connection pooling and the system's trusted roots (`SSL_CERT_FILE` is honoured).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamError;

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Result<Self, UpstreamError> {
        install_crypto_provider();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| UpstreamError::Connect(format!("no trusted root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpClient { inner })
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
