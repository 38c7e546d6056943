//! pipgate: an authenticating, caching PyPI simple-index proxy.
pub mod config;
pub mod pypi;
pub mod secret;
