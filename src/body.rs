//! The response body type shared by every handler.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Errors a response body can end with; hyper aborts the stream on one.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any response body: ready bytes or a stream from an upstream.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of ready bytes.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}
