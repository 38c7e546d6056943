//! The tower layers every request passes through, one small layer per file. [`crate::app`]
//! stacks them and says why each sits where it does.
//!
//! - [`trace`]: request id, trace span and the access log line;
//! - [`metrics`]: request counts, latency, bytes and the in-flight gauge, with a drop guard;
//! - [`rescue`]: the one place where an error becomes an HTTP answer;
//! - [`timeout`]: a deadline for the whole request, up to its response headers;
//! - [`concurrency`]: a bound on the requests being worked on at once.

pub mod concurrency;
pub mod metrics;
pub mod rescue;
pub mod timeout;
pub mod trace;

use std::future::Future;
use std::pin::Pin;

/// The future type of these layers: boxed, so each layer stays a few readable lines. The cost
/// (one allocation per layer per request) is small next to a response.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;
