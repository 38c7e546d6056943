//! The tower layers every request passes through, one small layer per file. [`crate::app`]
//! stacks them and says why each sits where it does.
//!
//! - [`trace`]: request id, trace span and the access log line;
//! - [`metrics`]: request counts, latency, bytes and the in-flight gauge, with a drop guard;
//! - [`rescue`]: the one place where an error becomes an HTTP answer;
//! - [`timeout`]: a deadline for the whole request, up to its response headers;
//! - [`concurrency`]: a bound on the requests being worked on at once;
//! - [`identity`]: who the client is (when `[access]` is on), or a 401/403/429.
//!
//! Each layer names its own future (no boxing): a cache hit passes through all of them without
//! an allocation of theirs, which is measurable at a hundred thousand requests a second.

pub mod concurrency;
pub mod identity;
pub mod metrics;
pub mod rescue;
pub mod timeout;
pub mod trace;
