//! pipgate: an authenticating, caching PyPI simple-index proxy.
//!
//! pipgate serves one simple-index URL in front of ordered upstreams. For every project it
//! asks the upstreams in order and serves the first that knows the project, whole; an error
//! from a higher upstream fails closed instead of falling through to a public index. It holds
//! the upstream credentials itself, so clients need none.
//!
//! A request flows top to bottom through these modules:
//!
//! - [`server`]: the listener (HTTP/1 and HTTP/2) and graceful shutdown;
//! - [`app`]: builds everything from the [`config`] and stacks the service layers;
//! - [`handler`]: routes paths to the simple-page and file handlers;
//! - [`resolve`]: the owner rule over the ordered upstreams and routes;
//! - [`upstream`]: HTTP to one upstream, with its [`auth`] credential and the redirect rules;
//! - [`pypi`]: the pure domain: names, media types, the page model, URL rewriting;
//! - [`cache`]: index pages and files, kept and verified;
//! - [`metrics`]: the Prometheus registry the other parts record into;
//! - [`error`]: the single mapping from errors to HTTP answers.

pub mod app;
pub mod auth;
pub mod body;
pub mod cache;
pub mod config;
pub mod error;
pub mod handler;
pub mod metrics;
pub mod pypi;
pub mod resolve;
pub mod secret;
pub mod server;
pub mod upstream;
