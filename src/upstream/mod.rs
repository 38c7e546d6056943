//! One upstream index: its HTTP client, its credential, and the two things pipgate asks of it,
//! a project page and a file.
//!
//! Requests are built here and nowhere else, so the credential rules hold in one place (I4):
//! the `Authorization` header goes only to the upstream's own scheme, host and port; redirects
//! are followed by this code, not by the HTTP client, and lose the header when they leave the
//! origin (Azure sends downloads to blob storage with a SAS URL). Client headers are never
//! copied onto upstream requests.

mod body;
mod client;
mod egress;
mod error;
mod page;
mod ranged;
mod upload;

pub use body::{Expected, VerifiedBody};
pub use client::{HttpClient, StreamingBody};
pub use egress::Egress;
pub use error::UpstreamError;
pub use page::{PageAnswer, Validators};
pub use ranged::{ByteRange, RangeAnswer};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use url::Url;

use crate::auth::Credential;
use crate::metrics::Metrics;

/// Redirects followed for one request: enough for feed → blob storage, with room to spare.
const MAX_REDIRECTS: usize = 5;

/// Sent on every upstream request. Azure DevOps answers an unauthenticated request with a 401
/// instead of a redirect to its sign-in page when it sees this; other servers ignore it.
const AZURE_SUPPRESS_REDIRECT: (&str, &str) = ("x-tfs-fedauthredirect", "Suppress");

const USER_AGENT: &str = concat!("pipgate/", env!("CARGO_PKG_VERSION"));

/// An upstream index, ready to be asked.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    /// The name as a header value (`X-Pipgate-Upstream`), built once.
    name_header: HeaderValue,
    base: Url,
    /// Where uploads go (`upload_url`), if anywhere.
    upload_url: Option<Url>,
    /// Whether pipgate offers metadata for wheels this upstream lists without it.
    synthesize_metadata: bool,
    credential: Option<Arc<dyn Credential>>,
    client: HttpClient,
    timeout: Duration,
    max_page_bytes: u64,
    metrics: Arc<Metrics>,
    /// Set by a 429: until then no request is sent and callers get `Throttled` at once. A CI
    /// fleet behind pipgate is one identity to the feed, so hammering on would only extend it.
    throttled_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Back-off after a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Longest back-off a `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Settings for [`Upstream::new`].
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub base: Url,
    pub upload_url: Option<Url>,
    pub synthesize_metadata: bool,
    pub credential: Option<Arc<dyn Credential>>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_page_bytes: u64,
    /// CA certificates trusted on top of the platform's (`egress.ca_file`, `upstream[].ca_file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The proxy rules (`HTTPS_PROXY` and friends), if any.
    pub egress: Option<Egress>,
    pub metrics: Arc<Metrics>,
}

/// Which request is being made, for the redirect rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// An index page: redirects stay on the upstream's origin.
    Page,
    /// A file: redirects may leave the origin, without the credential.
    File,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Result<Self, UpstreamError> {
        let client =
            HttpClient::new(settings.connect_timeout, &settings.extra_roots, settings.egress.clone())?;
        let name_header = HeaderValue::from_str(&settings.name)
            .map_err(|_| UpstreamError::Connect("the upstream name is not a valid header value".into()))?;
        Ok(Upstream {
            name_header,
            name: settings.name.into(),
            base: settings.base,
            upload_url: settings.upload_url,
            synthesize_metadata: settings.synthesize_metadata,
            credential: settings.credential,
            client,
            timeout: settings.timeout,
            max_page_bytes: settings.max_page_bytes,
            metrics: settings.metrics,
            throttled_until: std::sync::Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a header value, for `X-Pipgate-Upstream`.
    pub fn name_header(&self) -> &HeaderValue {
        &self.name_header
    }

    /// The URL of `project`'s page on this upstream.
    pub fn project_url(&self, project: &crate::pypi::ProjectName) -> Url {
        self.base.join(&format!("{project}/")).expect("a normalized name is a valid path segment")
    }

    /// Whether pipgate offers PEP 658 metadata for wheels this upstream lists without it
    /// (`synthesize_metadata`).
    pub fn synthesizes_metadata(&self) -> bool {
        self.synthesize_metadata
    }

    /// Ready when its credential (if any) can authenticate: an Azure token has arrived.
    pub fn is_ready(&self) -> bool {
        self.credential.as_ref().is_none_or(|c| c.is_ready())
    }

    /// Counts a file of this upstream streamed to its clients without the cache, by `reason`
    /// (`pipgate_file_pass_through_total`).
    pub fn count_pass_through(&self, reason: &str) {
        self.metrics.pass_through.with_label_values(&[&self.name, reason]).inc();
    }

    /// Counts one request of `kind` and its latency, by outcome or error reason.
    fn record<T>(&self, kind: &str, started: std::time::Instant, outcome: Result<&'static str, &T>)
    where
        T: std::borrow::Borrow<UpstreamError>,
    {
        let outcome = match outcome {
            Ok(word) => word,
            Err(error) => error.borrow().reason(),
        };
        self.metrics.upstream_requests.with_label_values(&[&self.name, kind, outcome]).inc();
        self.metrics
            .upstream_seconds
            .with_label_values(&[&self.name, kind])
            .observe(started.elapsed().as_secs_f64());
    }

    /// `Err(Throttled)` while a 429's back-off lasts.
    fn check_throttle(&self) -> Result<(), UpstreamError> {
        let until = *self.throttled_until.lock().expect("throttle lock");
        match until.map(|u| u.saturating_duration_since(tokio::time::Instant::now())) {
            Some(left) if !left.is_zero() => {
                Err(UpstreamError::Throttled { retry_after: Some(left.as_secs().max(1)) })
            }
            _ => Ok(()),
        }
    }

    fn start_throttle(&self, headers: &http::HeaderMap) {
        let wait = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
            .min(MAX_RETRY_AFTER);
        tracing::warn!(upstream = %self.name, wait_s = wait.as_secs(), "upstream is throttling: backing off");
        *self.throttled_until.lock().expect("throttle lock") = Some(tokio::time::Instant::now() + wait);
    }

    /// Starts a file download from `url` (taken from this upstream's page), following
    /// redirects. The body is checked against `expected` as it streams.
    pub async fn fetch_file(
        &self,
        url: &str,
        expected: Expected,
    ) -> Result<Response<VerifiedBody>, UpstreamError> {
        let started = std::time::Instant::now();
        let result = async {
            let url = Url::parse(url).map_err(|_| UpstreamError::UnsupportedUrl("not a URL".into()))?;
            let (response, _) =
                tokio::time::timeout(self.timeout, self.send(url, "*/*", Purpose::File, None, None))
                    .await
                    .map_err(|_| UpstreamError::Timeout(self.timeout))??;
            let (parts, body) = response.into_parts();
            if parts.status != StatusCode::OK {
                return Err(page::status_error(parts.status, &parts.headers));
            }
            let body =
                VerifiedBody::new(body, self.name.clone(), expected, self.timeout, self.metrics.clone());
            Ok(Response::from_parts(parts, body))
        }
        .await;
        self.record("file", started, result.as_ref().map(|_| "ok"));
        result
    }

    /// Sends a GET, following redirects under the credential rules. Returns the answer and the
    /// URL it came from.
    async fn send(
        &self,
        mut url: Url,
        accept: &'static str,
        purpose: Purpose,
        validators: Option<&Validators>,
        range: Option<&HeaderValue>,
    ) -> Result<(Response<Incoming>, Url), UpstreamError> {
        let mut retried_auth = false;
        let mut redirects = 0;
        loop {
            self.check_throttle()?;
            // URLs come from upstream pages and redirects: anything but http(s), or anything an
            // HTTP request cannot carry, is an error for this file, never a panic.
            if !matches!(url.scheme(), "http" | "https") {
                return Err(UpstreamError::UnsupportedUrl(format!("scheme {:?}", url.scheme())));
            }
            let with_credential = self.credential.as_ref().filter(|_| same_origin(&url, &self.base));
            let mut request = Request::get(url.as_str())
                .header(header::USER_AGENT, USER_AGENT)
                .header(header::ACCEPT, accept)
                .header(AZURE_SUPPRESS_REDIRECT.0, AZURE_SUPPRESS_REDIRECT.1)
                .body(Empty::<Bytes>::new())
                .map_err(|_| UpstreamError::UnsupportedUrl("a URL no HTTP request can carry".into()))?;
            if let Some(credential) = with_credential {
                request.headers_mut().insert(header::AUTHORIZATION, credential.authorization().await?);
            }
            if let Some(validators) = validators {
                validators.apply(request.headers_mut());
            }
            if let Some(range) = range {
                request.headers_mut().insert(header::RANGE, range.clone());
            }
            if purpose == Purpose::Page {
                // Large pages (thousands of files) travel several times faster compressed; the
                // body is inflated under the page cap (see `page.rs`). Files are fetched as
                // they are, since their bytes are hashed.
                request.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            let response = self.client.request(request).await?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.start_throttle(response.headers());
            }
            if status == StatusCode::UNAUTHORIZED
                && !retried_auth
                && let Some(credential) = with_credential
            {
                // A token credential may refresh and deserve one more try; then fail closed.
                if credential.rejected().await {
                    retried_auth = true;
                    continue;
                }
            }
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok((response, url));
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(UpstreamError::TooManyRedirects(MAX_REDIRECTS));
            }
            let next = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or(UpstreamError::BadRedirect)?;
            if is_sign_in(&next) {
                return Err(UpstreamError::SignInRedirect);
            }
            if url.scheme() == "https" && next.scheme() != "https" {
                // A downgrade would expose the request (and a page's contents) to the network.
                return Err(UpstreamError::InsecureRedirect);
            }
            if purpose == Purpose::Page && !same_origin(&next, &self.base) {
                // The origin alone: the path and query of a redirect may carry a signature.
                return Err(UpstreamError::CrossOriginRedirect(next.origin().ascii_serialization()));
            }
            tracing::debug!(upstream = %self.name, host = next.host_str().unwrap_or("?"), "following a redirect");
            url = next;
        }
    }
}

/// Same scheme, host and port (default ports made explicit), as browsers define an origin.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Azure DevOps and Entra sign-in pages: a redirect there means the credential failed.
fn is_sign_in(url: &Url) -> bool {
    url.path().contains("/_signin")
        || matches!(
            url.host_str(),
            Some("login.microsoftonline.com" | "login.live.com" | "app.vssps.visualstudio.com")
        )
}

/// The value of a header as text, for messages.
fn header_text(value: Option<&HeaderValue>) -> String {
    value.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = Url::parse("https://pkgs.dev.azure.com/org/_packaging/feed/pypi/simple/").unwrap();
        for (other, same) in [
            ("https://pkgs.dev.azure.com/other/path", true),
            ("https://pkgs.dev.azure.com:443/x", true),
            ("http://pkgs.dev.azure.com/x", false),
            ("https://pkgs.dev.azure.com:8443/x", false),
            ("https://blob.core.windows.net/x?sig=abc", false),
            ("https://pkgs.dev.azure.com.evil.test/x", false),
        ] {
            assert_eq!(same_origin(&base, &Url::parse(other).unwrap()), same, "{other}");
        }
    }

    #[test]
    fn sign_in_pages_are_recognized() {
        assert!(!is_sign_in(&Url::parse("https://blob.core.windows.net/x?sig=abc").unwrap()));
        assert!(is_sign_in(&Url::parse("https://dev.azure.com/org/_signin?realm=x").unwrap()));
        assert!(is_sign_in(&Url::parse("https://login.microsoftonline.com/common/oauth2").unwrap()));
        assert!(!is_sign_in(&Url::parse("https://pkgs.dev.azure.com/org/simple/x/").unwrap()));
    }
}
