//! What every request handler shares: the index facade, the metrics, and the few answer
//! settings fixed at start. Built by [`crate::app`], read by the handlers; it lives apart from
//! both so that neither imports the other.

use std::sync::Arc;

use http::HeaderValue;

use crate::auth::SecretValue;
use crate::cache::dir_lock::DirLock;
use crate::identity::Access;
use crate::identity::publish::PublishRules;
use crate::index::Index;
use crate::metrics::Metrics;

/// `[publish]`, ready: the rules and the limits.
#[derive(Debug)]
pub struct Publishing {
    pub rules: PublishRules,
    /// Where `POST /upload/` goes.
    pub default: Option<usize>,
    pub max_bytes: u64,
    pub timeout: std::time::Duration,
}

#[derive(Debug)]
pub struct State {
    pub index: Index,
    pub metrics: Arc<Metrics>,
    /// `Cache-Control` of fresh index pages, built once from `cache.client_max_age`.
    pub fresh_cache_control: HeaderValue,
    /// What `/admin/…` requests must present; `None` turns the admin endpoints off.
    pub admin_token: Option<SecretValue>,
    /// The client authenticator, when `[access]` is configured: then index routes need the
    /// client that the identity layer records.
    pub access: Option<Arc<Access>>,
    /// The upload API, when `[publish]` is configured.
    pub publish: Option<Publishing>,
    /// The cache directory's lock, held as long as pipgate runs.
    pub _dir_lock: DirLock,
}
