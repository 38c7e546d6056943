//! pipgate: an authenticating, caching PyPI simple-index proxy.
//!
//! pipgate serves one simple-index URL in front of ordered upstreams. For every project it
//! asks the upstreams in order and serves the first that knows the project, whole; an error
//! from a higher upstream fails closed instead of falling through to a public index. It holds
//! the upstream credentials itself, so clients need none.
//!
//! The house, bottom to top (each part uses only those below it):
//!
//! - `pypi`: the pure domain: names, media types, the page model, HTML/JSON, URL rewriting;
//! - `config`: typed configuration from TOML and `PIPGATE_*` overlays;
//! - `auth`: upstream credentials (basic, bearer, Azure identities with refresh);
//! - `upstream`: HTTP to one upstream, with its credential and the redirect rules;
//! - `resolve`: the owner rule over the ordered upstreams and routes;
//! - `identity`: who the client is (tokens, htpasswd, OIDC) and which upstreams it may read;
//! - `cache`: index pages, files and the root list, kept and verified;
//! - `index`: the one door handlers use: a page, a file or the root list, with its owner;
//! - `state`: what all handlers share;
//! - `handler`: routes paths to the simple-page and file handlers;
//! - `layers`: request id and trace, metrics, rescue, timeout, concurrency limit, client identity;
//! - `app`: builds everything from the config and stacks the layers: read it first;
//! - `server`: the listener (HTTP/1 and HTTP/2) and graceful shutdown, given a service.
//!
//! Beside them: `error` (the one table from errors to answers), `metrics` (the registry the
//! parts record into), `secret` and `error_chain` (small helpers at the bottom).
//!
//! The public surface is what the binary, the tests and the benches need: starting a server
//! from a config, the config types, and the pure domain for parser tests and benches.

mod app;
mod auth;
mod body;
mod cache;
pub mod config;
mod error;
mod error_chain;
mod glob;
mod handler;
mod identity;
mod index;
mod layers;
mod metrics;
pub mod pypi;
mod resolve;
mod secret;
mod server;
mod state;
mod upstream;

pub use app::{BuildError, Running, start};
pub use identity::hash_token;
pub use identity::tokens::{MIN_TOKEN_CHARS, generate_token};
pub use server::notify::notify as notify_systemd;

/// The page-form compressors, for the criterion benches of the cold path (not an API).
#[doc(hidden)]
pub use cache::entry::cold_json_gzip;
#[doc(hidden)]
pub use cache::gzip::compress as gzip_page_form;
