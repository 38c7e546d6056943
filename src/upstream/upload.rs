//! Forwarding an upload (the legacy upload API) to an upstream's `upload_url` with pipgate's
//! own credential for it. The client's body streams through as it arrives, never held whole;
//! the client's credential never goes upstream. No redirect is followed: a body cannot be sent
//! twice, and a redirect of an upload is not something a feed does.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::client::StreamingBody;
use super::{AZURE_SUPPRESS_REDIRECT, USER_AGENT, Upstream, UpstreamError};

/// What the upstream answered an upload.
#[derive(Debug)]
pub struct UploadAnswer {
    pub status: StatusCode,
    /// The start of its body as text (feeds explain refusals there), without control
    /// characters.
    pub message: String,
}

/// Most of an upload answer's body kept for the message.
const MESSAGE_BYTES: usize = 2048;

impl Upstream {
    /// Whether this upstream takes uploads.
    pub fn takes_uploads(&self) -> bool {
        self.upload_url.is_some()
    }

    /// POSTs `body` (multipart, as the client framed it) to the upload URL, within `timeout`.
    pub async fn upload(
        &self,
        content_type: HeaderValue,
        content_length: Option<u64>,
        body: StreamingBody,
        timeout: Duration,
    ) -> Result<UploadAnswer, UpstreamError> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, self.send_upload(content_type, content_length, body))
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))
            .and_then(|r| r);
        self.record("upload", started, result.as_ref().map(|_| "ok"));
        result
    }

    async fn send_upload(
        &self,
        content_type: HeaderValue,
        content_length: Option<u64>,
        body: StreamingBody,
    ) -> Result<UploadAnswer, UpstreamError> {
        let url =
            self.upload_url.as_ref().ok_or_else(|| UpstreamError::UnsupportedUrl("no upload_url".into()))?;
        let mut request = Request::post(url.as_str())
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_TYPE, content_type)
            .header(AZURE_SUPPRESS_REDIRECT.0, AZURE_SUPPRESS_REDIRECT.1)
            .body(body)
            .map_err(|_| UpstreamError::UnsupportedUrl("a URL no HTTP request can carry".into()))?;
        if let Some(length) = content_length {
            request.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        // The upload URL is on the upstream's origin (checked when the config loads).
        if let Some(credential) = &self.credential {
            request.headers_mut().insert(header::AUTHORIZATION, credential.authorization().await?);
        }
        let response = self.client.send_body(request).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED
            && let Some(credential) = &self.credential
        {
            // Refresh a token for the next upload; this body is spent.
            credential.rejected().await;
        }
        let body = Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(UploadAnswer { status, message: message(&body) })
    }
}

/// The first line or so of an answer body, for a client to read.
fn message(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MESSAGE_BYTES)]);
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(300).collect()
}
