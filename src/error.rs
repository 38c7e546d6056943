//! The one place where errors become HTTP answers.
//!
//! Each answer is short plain text that says what failed and, for upstream failures, which
//! upstream; it never holds a credential or an upstream file URL. Upstream failures are also
//! logged here, once, with the same words.

use std::time::Duration;

use http::{Response, StatusCode, header};

use crate::body::{ResponseBody, full};
use crate::cache::files::FillError;
use crate::cache::metadata::MetadataFailure;
use crate::identity::Refusal;
use crate::pypi::{InvalidName, NotAcceptable, ProjectName};
use crate::resolve::ResolveError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid project name: {0}")]
    BadName(#[from] InvalidName),
    #[error("{0}")]
    NotAcceptable(#[from] NotAcceptable),
    #[error("project {0} is not on any upstream")]
    ProjectNotFound(ProjectName),
    #[error("{filename:?} is not a file of project {project} on upstream {upstream:?}")]
    FileNotListed { project: ProjectName, filename: String, upstream: String },
    #[error("not found")]
    NotFound,
    /// The method is not served here; the value lists those that are (`Allow`).
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    Upstream(#[from] ResolveError),
    /// A download failed after pipgate had taken it on (broken off, wrong bytes, disk error).
    #[error("download of {filename:?} from upstream {upstream:?} failed: {error}")]
    Download { upstream: String, filename: String, error: FillError },
    /// A request path and query longer than `server.max_url_bytes`.
    #[error("the URL is longer than the {0}-byte limit")]
    UriTooLong(usize),
    /// An admin endpoint while no `[admin]` token is configured.
    #[error("the admin endpoints are off: set a token in [admin] to use them")]
    AdminOff,
    /// An admin endpoint without the admin token.
    #[error("the admin endpoints need the admin token: Authorization: Bearer <token>")]
    AdminUnauthorized,
    /// A release of a name pipgate remembers no owner for.
    #[error("project {0} has no remembered owner: there is nothing to release")]
    NothingToRelease(ProjectName),
    /// The whole request took longer than `server.request_timeout` to reach its headers.
    #[error("pipgate did not answer within {0:?}")]
    RequestTimeout(Duration),
    /// Client authentication or read access refused the request.
    #[error("{0}")]
    Access(#[from] Refusal),
    /// An upload pipgate will not forward (malformed, or to an upstream that takes none).
    #[error("{0}")]
    BadUpload(String),
    /// An upload over `publish.max_bytes`.
    #[error("the upload is larger than the {0}-byte limit (publish.max_bytes)")]
    UploadTooLarge(u64),
    /// An upload of a name that belongs elsewhere.
    #[error("{0}")]
    PublishRefused(String),
    /// Metadata pipgate offers for a wheel could not be read out of it.
    #[error("metadata of {filename:?} from upstream {upstream:?}: {error}")]
    Metadata { upstream: String, filename: String, error: MetadataFailure },
    /// A read route was sent a request body (or body framing), which it never takes.
    #[error("a {0} request takes no body")]
    UnexpectedBody(&'static str),
}

impl ServeError {
    /// A failure of `upstream` while serving a file or page it owns.
    pub fn upstream(upstream: &str, error: UpstreamError) -> Self {
        ServeError::Upstream(ResolveError::upstream_failed(upstream, error))
    }

    /// A file fill of `upstream` failed. An upstream that never answered with the file is an
    /// upstream failure like any other (same statuses as for pages); a download that broke off
    /// or turned out wrong is a failed download.
    pub fn fill_failed(upstream: &str, filename: &str, error: FillError) -> Self {
        match error {
            FillError::Upstream(error) => {
                ServeError::Upstream(ResolveError::Upstream { upstream: upstream.to_owned(), error })
            }
            error => {
                ServeError::Download { upstream: upstream.to_owned(), filename: filename.to_owned(), error }
            }
        }
    }

    /// Reading the metadata of `filename`, a wheel of `upstream`, failed. An upstream that
    /// failed is an upstream failure like any other.
    pub fn metadata_failed(upstream: &str, filename: &str, error: MetadataFailure) -> Self {
        match error {
            MetadataFailure::Upstream(error) => {
                ServeError::Upstream(ResolveError::Upstream { upstream: upstream.to_owned(), error })
            }
            error => {
                ServeError::Metadata { upstream: upstream.to_owned(), filename: filename.to_owned(), error }
            }
        }
    }

    /// The table: which error is which status.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadName(_) => StatusCode::BAD_REQUEST,
            ServeError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ServeError::ProjectNotFound(_)
            | ServeError::FileNotListed { .. }
            | ServeError::NotFound
            | ServeError::NothingToRelease(_) => StatusCode::NOT_FOUND,
            ServeError::AdminOff => StatusCode::FORBIDDEN,
            ServeError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ServeError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            ServeError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ServeError::Upstream(e) => match e {
                ResolveError::Upstream { error, .. } => match **error {
                    UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    UpstreamError::Throttled { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                },
                // A broken feed and a held name fail closed like any upstream failure.
                ResolveError::Unhealthy { .. } | ResolveError::Held { .. } => StatusCode::BAD_GATEWAY,
            },
            ServeError::Download { error: FillError::Io(_), .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ServeError::Download { .. } => StatusCode::BAD_GATEWAY,
            ServeError::Metadata { error: MetadataFailure::Cache(_), .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Metadata { .. } => StatusCode::BAD_GATEWAY,
            ServeError::RequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Access(refusal) => match refusal {
                Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                refusal if refusal.wants_credentials() => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            },
            ServeError::UnexpectedBody(_) | ServeError::BadUpload(_) => StatusCode::BAD_REQUEST,
            ServeError::UploadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::PublishRefused(_) => StatusCode::FORBIDDEN,
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let message = self.to_string();
        match &self {
            ServeError::Upstream(e) => {
                tracing::warn!(upstream = e.upstream(), status = status.as_u16(), "{message}")
            }
            ServeError::Download { upstream, .. } | ServeError::Metadata { upstream, .. } => {
                tracing::warn!(%upstream, status = status.as_u16(), "{message}")
            }
            ServeError::RequestTimeout(_) => tracing::warn!(status = status.as_u16(), "{message}"),
            _ => {}
        }
        let mut builder =
            Response::builder().status(status).header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if let ServeError::MethodNotAllowed(allowed) = self {
            builder = builder.header(header::ALLOW, allowed.replace(" or ", ", "));
        }
        if let ServeError::Upstream(ResolveError::Upstream { error, .. }) = &self
            && let UpstreamError::Throttled { retry_after: Some(seconds) } = **error
        {
            builder = builder.header(header::RETRY_AFTER, seconds);
        }
        if let ServeError::Access(refusal) = &self {
            if let Refusal::RateLimited { retry_after } = refusal {
                builder = builder.header(header::RETRY_AFTER, *retry_after);
            } else if refusal.wants_credentials() {
                // pip and uv then look in netrc or a keyring and try again with a credential.
                builder = builder.header(header::WWW_AUTHENTICATE, "Basic realm=\"pipgate\"");
            }
        }
        if let ServeError::AdminUnauthorized = self {
            builder = builder.header(header::WWW_AUTHENTICATE, "Bearer realm=\"pipgate-admin\"");
        }
        builder.body(full(format!("{message}\n"))).expect("static headers are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_gateway_statuses_and_name_the_upstream() {
        for (error, status) in [
            (UpstreamError::Timeout(std::time::Duration::from_secs(3)), StatusCode::GATEWAY_TIMEOUT),
            (UpstreamError::Throttled { retry_after: Some(7) }, StatusCode::SERVICE_UNAVAILABLE),
            (UpstreamError::AuthRejected(StatusCode::UNAUTHORIZED), StatusCode::BAD_GATEWAY),
            (UpstreamError::SignInPage, StatusCode::BAD_GATEWAY),
        ] {
            let response = ServeError::upstream("corp", error).into_response();
            assert_eq!(response.status(), status);
        }
        let throttled = ServeError::upstream("corp", UpstreamError::Throttled { retry_after: Some(7) });
        assert_eq!(throttled.into_response().headers()[header::RETRY_AFTER], "7");
        let shown = ServeError::upstream("corp", UpstreamError::SignInPage).to_string();
        assert!(shown.starts_with("upstream \"corp\""), "{shown}");
    }
}
