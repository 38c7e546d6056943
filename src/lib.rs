//! pipgate: an authenticating, caching PyPI simple-index proxy.
pub mod pypi;
