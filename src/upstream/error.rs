//! What can go wrong with an upstream. Messages name the upstream and never hold a credential,
//! a query string or a full download URL (Azure's carry SAS tokens).

use std::time::Duration;

use http::StatusCode;

use crate::auth::AuthError;
use crate::pypi::simple::PageError;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("rejected the credential (HTTP {0})")]
    AuthRejected(StatusCode),
    #[error("answered 203 with a sign-in page: the credential was not accepted")]
    SignInPage,
    #[error("redirected to a sign-in page: the credential was not accepted")]
    SignInRedirect,
    #[error("is throttling requests (HTTP 429){}", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    Throttled { retry_after: Option<u64> },
    #[error("redirected an index page to another origin ({0})")]
    CrossOriginRedirect(String),
    #[error("redirected from https to plain http, which pipgate refuses")]
    InsecureRedirect,
    #[error("listed or redirected to an unusable URL ({0})")]
    UnsupportedUrl(String),
    #[error("sent a redirect without a usable Location")]
    BadRedirect,
    #[error("redirected more than {0} times")]
    TooManyRedirects(usize),
    #[error("answered with content type {0:?}, which is not a simple-API page")]
    WrongContentType(String),
    #[error("sent a page larger than the {0}-byte limit")]
    PageTooLarge(u64),
    #[error("sent a page with content encoding {0:?}, which pipgate did not ask for")]
    WrongContentEncoding(String),
    #[error("sent a page that does not parse: {0}")]
    BadPage(#[from] PageError),
    #[error("broke off the answer: {0}")]
    Body(String),
    #[error("credential unavailable: {0}")]
    Credential(#[from] AuthError),
}

impl UpstreamError {
    /// A fixed word for the kind of failure, for the `outcome` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Status(_) => "status",
            UpstreamError::AuthRejected(_) => "auth_rejected",
            UpstreamError::SignInPage | UpstreamError::SignInRedirect => "sign_in",
            UpstreamError::Throttled { .. } => "throttled",
            UpstreamError::CrossOriginRedirect(_)
            | UpstreamError::InsecureRedirect
            | UpstreamError::UnsupportedUrl(_)
            | UpstreamError::BadRedirect
            | UpstreamError::TooManyRedirects(_) => "redirect",
            UpstreamError::WrongContentType(_)
            | UpstreamError::WrongContentEncoding(_)
            | UpstreamError::PageTooLarge(_)
            | UpstreamError::BadPage(_) => "bad_page",
            UpstreamError::Body(_) => "body",
            UpstreamError::Credential(_) => "credential",
        }
    }

    /// Builds a connect error from a client error, keeping the cause chain (hyper's top-level
    /// message is just "client error") and nothing that could hold a URL.
    pub fn from_client(error: &(dyn std::error::Error + 'static)) -> Self {
        UpstreamError::Connect(crate::error_chain::display_chain(error))
    }
}
