//! Asking an upstream for a project page, and reading its answer under the fail-closed rule:
//! only a definite 404 or 410 means "not here"; every other non-page answer is an error.

use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use url::Url;

use super::{Purpose, Upstream, UpstreamError, header_text};
use crate::pypi::ProjectName;
use crate::pypi::media::{MediaType, UPSTREAM_ACCEPT};
use crate::pypi::simple::{
    ProjectList, ProjectPage, parse_project_html, parse_project_json, parse_root_html, parse_root_json,
};

/// An upstream's answer for one project.
#[derive(Debug)]
pub enum PageAnswer {
    Found(Box<ProjectPage>),
    /// A definite 404 or 410: the upstream does not hold the project.
    NotFound,
}

impl Upstream {
    /// Fetches and parses the page of `project`.
    pub async fn fetch_page(&self, project: &ProjectName) -> Result<PageAnswer, UpstreamError> {
        let url = self.base.join(&format!("{project}/")).expect("a normalized name is a valid path segment");
        match self.fetch_body(url).await? {
            None => Ok(PageAnswer::NotFound),
            Some((kind, body, final_url)) => {
                let page = match kind {
                    MediaType::JsonV1 => parse_project_json(&body, &final_url, project.as_str())?,
                    MediaType::HtmlV1 | MediaType::TextHtml => {
                        parse_project_html(&body, &final_url, project.as_str())?
                    }
                };
                Ok(PageAnswer::Found(Box::new(page)))
            }
        }
    }

    /// Fetches and parses the root page (the list of projects).
    pub async fn fetch_root(&self) -> Result<ProjectList, UpstreamError> {
        match self.fetch_body(self.base.clone()).await? {
            None => Err(UpstreamError::Status(StatusCode::NOT_FOUND)),
            Some((MediaType::JsonV1, body, _)) => Ok(parse_root_json(&body)?),
            Some((_, body, final_url)) => Ok(parse_root_html(&body, &final_url)?),
        }
    }

    /// GETs a simple-API URL within the upstream's deadline: `None` for 404/410, else the
    /// media type, the body (size-capped) and the URL it finally came from (for relative links).
    async fn fetch_body(&self, url: Url) -> Result<Option<(MediaType, bytes::Bytes, Url)>, UpstreamError> {
        let fetch = async {
            let (response, final_url) = self.send(url, UPSTREAM_ACCEPT, Purpose::Page).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(None);
            }
            if status != StatusCode::OK {
                return Err(status_error(status, response.headers()));
            }
            let content_type = header_text(response.headers().get(header::CONTENT_TYPE));
            let kind = MediaType::from_essence(&content_type)
                .ok_or_else(|| UpstreamError::WrongContentType(content_type.clone()))?;
            let body = Limited::new(response.into_body(), self.max_page_bytes as usize)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::PageTooLarge(self.max_page_bytes)
                    } else {
                        UpstreamError::Body(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Some((kind, body, final_url)))
        };
        tokio::time::timeout(self.timeout, fetch).await.map_err(|_| UpstreamError::Timeout(self.timeout))?
    }
}

/// The error for a non-200, non-404 answer.
pub(super) fn status_error(status: StatusCode, headers: &HeaderMap) -> UpstreamError {
    match status {
        StatusCode::NON_AUTHORITATIVE_INFORMATION => UpstreamError::SignInPage,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::AuthRejected(status),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::Throttled {
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        },
        _ => UpstreamError::Status(status),
    }
}
