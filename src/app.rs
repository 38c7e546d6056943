//! Builds pipgate from its config and assembles the service: the one place that knows how the
//! pieces are stacked.
//!
//! Below the layers the house is a clean stack, each part using only those under it: the pure
//! domain ([`crate::pypi`]), then config, upstream credentials, the upstream client, the owner
//! rule, the caches, the index facade and the shared state, then the handlers, the layers and
//! this file. The listener ([`crate::server`]) takes the finished service and knows nothing of
//! what is inside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::auth::SecretValue;
use crate::cache::files::FileStore;
use crate::cache::metadata::MetadataStore;
use crate::cache::page_disk::PageDisk;
use crate::cache::shared::{SharedTier, TierSettings};
use crate::cache::{Freshness, PageCache, RootCache};
use crate::config::{Config, Environment};
use crate::handler::{Router, Surface};
use crate::identity::Access;
use crate::identity::publish::PublishRules;
use crate::index::Index;
use crate::layers::concurrency::ConcurrencyLimitLayer;
use crate::layers::identity::IdentityLayer;
use crate::layers::metrics::MetricsLayer;
use crate::layers::rescue::RescueLayer;
use crate::layers::timeout::TimeoutLayer;
use crate::layers::trace::TraceLayer;
use crate::metrics::Metrics;
use crate::resolve::{OwnerMemory, Resolver, ResolverSettings, Route};
use crate::server::tls::TlsFiles;
use crate::server::{HttpService, Limits, Server};
use crate::state::{Publishing, State};
use crate::upstream::{Egress, HttpClient, Upstream, UpstreamError, UpstreamSettings};

/// pipgate could not be built from a config that loaded.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{upstream}: {source}")]
    Credential { upstream: String, source: crate::auth::AuthError },
    #[error("upstream {upstream:?}: {source}")]
    Client { upstream: String, source: UpstreamError },
    #[error("cannot use the cache directory {}: {source}", dir.display())]
    Cache { dir: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("CA file {}: {reason}", file.display())]
    CaFile { file: PathBuf, reason: String },
    #[error("{0}")]
    Access(#[from] crate::identity::AccessError),
    #[error("[cache.shared]: {0}")]
    SharedStore(#[from] crate::cache::shared::store::StoreError),
}

/// The request stack, outermost first. A request walks down it; its answer walks back up.
/// `surface` says which paths this listener serves (all, or the index or admin half); `slots`
/// is the concurrency limit, shared by the listeners that serve the index.
pub fn service(
    state: Arc<State>,
    config: &Config,
    surface: Surface,
    slots: &ConcurrencyLimitLayer,
) -> HttpService {
    let server = &config.server;
    let stack = ServiceBuilder::new()
        // Outermost, so every log line below (the access line included) carries the request
        // id, and `X-Request-Id` is set on the final answer.
        .layer(TraceLayer::new(server.trust_request_id))
        // Counts every answer (errors included, with their real status, since the rescue is
        // below), holds the in-flight gauge until the body is sent or dropped, and then writes
        // the access line.
        .layer(MetricsLayer::new(state.metrics.clone()))
        // The one place where an error becomes an answer. It sits above the timeout and the
        // limit so that their errors go through the same table as the handlers'.
        .layer(RescueLayer)
        // Bounds the wait for headers, including the wait for a slot below (I6). An upload's
        // answer comes only after its whole body went upstream: it has `publish.timeout`.
        .layer(TimeoutLayer::new(
            server.request_timeout,
            config.publish.as_ref().map_or(server.request_timeout, |p| p.timeout),
        ))
        // Bounds the work in flight: requests past the limit wait for a slot instead of
        // opening ever more upstream connections and buffers (I6).
        .layer(slots.clone())
        // Who the client is (only with `[access]`, and not on the admin listener, whose
        // endpoints have their own token). Under the limit, so a flood of bad credentials
        // cannot take more slots than anyone else; above the router, so a refused client
        // reaches no handler and the index always knows who is asking.
        .option_layer(state.access.clone().filter(|_| surface != Surface::Admin).map(IdentityLayer::new))
        .service(Router::new(state, surface, server.max_url_bytes));
    BoxCloneSyncService::new(stack)
}

/// Builds the shared state from `config`: the upstreams with their credentials, the owner
/// rule over them, the caches, and the index facade over all of it.
pub async fn state(config: &Config, env: &dyn Environment) -> Result<State, BuildError> {
    let metrics = Arc::new(Metrics::register(prometheus::Registry::new()));
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    let token_upstreams: Vec<&str> = config
        .upstreams
        .iter()
        .filter(|u| matches!(u.auth, Some(crate::config::AuthConfig::Azure(_))))
        .map(|u| u.name.as_str())
        .collect();
    metrics.initialize(&names, &token_upstreams);
    let global_roots = match &config.egress.ca_file {
        Some(file) => read_roots(file)?,
        None => Vec::new(),
    };
    let egress = Egress::from_env(env);
    if egress.is_some() {
        tracing::info!("upstream connections follow HTTPS_PROXY, HTTP_PROXY and NO_PROXY");
    }
    let mut upstreams = Vec::with_capacity(config.upstreams.len());
    for upstream in &config.upstreams {
        let mut extra_roots = global_roots.clone();
        if let Some(file) = &upstream.ca_file {
            extra_roots.extend(read_roots(file)?);
        }
        let credential = match &upstream.auth {
            Some(auth) => Some(
                crate::auth::from_config(&upstream.name, auth, env, metrics.clone())
                    .map_err(|source| BuildError::Credential { upstream: upstream.name.clone(), source })?,
            ),
            None => None,
        };
        let built = Upstream::new(UpstreamSettings {
            name: upstream.name.clone(),
            base: upstream.url.clone(),
            upload_url: upstream.upload_url.clone(),
            synthesize_metadata: upstream.synthesize_metadata,
            credential,
            connect_timeout: upstream.connect_timeout,
            timeout: upstream.timeout,
            max_page_bytes: config.server.max_page_bytes,
            extra_roots,
            egress: egress.clone(),
            metrics: metrics.clone(),
        })
        .map_err(|source| BuildError::Client { upstream: upstream.name.clone(), source })?;
        upstreams.push(Arc::new(built));
    }
    let routes = config
        .route_targets()
        .map(|(route, upstream)| Route { patterns: route.projects.clone(), upstream })
        .collect();
    let cache = &config.cache;
    let cache_error = |source| BuildError::Cache { dir: cache.dir.clone(), source };
    let dir_lock = crate::cache::dir_lock::claim_waiting(&cache.dir, cache.slots, cache.lock_wait)
        .await
        .map_err(cache_error)?;
    if cache.slots > 1 {
        tracing::info!(dir = %dir_lock.dir.display(), "cache slot taken");
    }
    let dir = &dir_lock.dir;
    let fingerprint = ownership_fingerprint(config);
    let ownership = &config.ownership;
    let owners = OwnerMemory::open(dir, &fingerprint, ownership.max_remembered).map_err(cache_error)?;
    let resolver = Arc::new(Resolver::new(ResolverSettings {
        upstreams,
        routes,
        negative_ttl: cache.negative_ttl,
        owners,
        hold: config.upstreams.iter().map(|u| u.hold).collect(),
        releases: config.releases.iter().flat_map(|r| r.projects.iter().cloned()).collect(),
        health_checked: config.upstreams.iter().map(|u| u.is_health_checked()).collect(),
        health_interval: ownership.health_interval,
        shadow_check: ownership.shadow_check,
        shadow_checks_per_second: ownership.shadow_checks_per_second,
        shadow_recheck: ownership.shadow_recheck,
        metrics: metrics.clone(),
    }));
    let disk = PageDisk::open(dir, fingerprint.clone()).map_err(cache_error)?;
    let shared = match &cache.shared {
        Some(shared) => Some(shared_tier(shared, &fingerprint, env, &metrics)?),
        None => None,
    };
    let files = FileStore::open(dir, cache.max_size, shared.clone()).map_err(cache_error)?;
    let freshness = Freshness {
        index_ttl: cache.index_ttl,
        max_stale: cache.max_stale,
        revalidate_interval: cache.revalidate_interval,
        negative_ttl: cache.negative_ttl,
    };
    let metadata = Arc::new(MetadataStore::new(files.clone(), cache.metadata_memory_size));
    let pages = Arc::new(PageCache::new(
        resolver,
        cache.memory_max_size,
        Some(disk),
        freshness,
        metadata,
        shared,
        metrics.clone(),
    ));
    let index = Index::new(pages, files, RootCache::new(cache.index_ttl), metrics.clone());
    for (name, cap) in [("index", cache.memory_max_size), ("file", cache.max_size)] {
        metrics.cache_max_bytes.with_label_values(&[name]).set(i64::try_from(cap).unwrap_or(i64::MAX));
    }
    let fresh_cache_control =
        http::HeaderValue::from_str(&format!("max-age={}, public", cache.client_max_age.as_secs()))
            .expect("digits and ASCII");
    let admin_token = match config.admin.token.source() {
        Some(source) => Some(
            SecretValue::new(source.clone(), env)
                .map_err(|source| BuildError::Credential { upstream: "[admin] token".to_owned(), source })?,
        ),
        None => None,
    };
    let access = match &config.access {
        Some(access) => {
            let client = HttpClient::new(Duration::from_secs(10), &global_roots, egress.clone())
                .map_err(|source| BuildError::Client { upstream: "[access] JWKS".to_owned(), source })?;
            Some(Access::new(access, client, metrics.clone())?)
        }
        None => None,
    };
    let publish = config.publish.as_ref().map(|publish| Publishing {
        rules: PublishRules::new(&publish.rules),
        default: publish.default_upstream(),
        max_bytes: publish.max_bytes,
        timeout: publish.timeout,
    });
    for upstream in config.upstreams.iter().filter(|u| u.upload_url.is_some()) {
        for result in ["ok", "refused", "rejected", "failed"] {
            metrics.publishes.with_label_values(&[&upstream.name, result]);
        }
    }
    Ok(State { index, metrics, fresh_cache_control, admin_token, access, publish, _dir_lock: dir_lock })
}

/// The CA certificates in a PEM file; an unreadable file or one without a certificate stops
/// the start, naming the file.
fn read_roots(file: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BuildError> {
    use rustls::pki_types::pem::PemObject;
    let error = |reason: String| BuildError::CaFile { file: file.to_owned(), reason };
    let roots: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(file)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(e.to_string()))?;
    if roots.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// What decides ownership: the upstreams in order and the routes. Pages stored on disk under
/// another fingerprint are not trusted after a restart.
fn ownership_fingerprint(config: &Config) -> String {
    let mut hasher = Sha256::new();
    for upstream in &config.upstreams {
        hasher.update(format!("upstream {} {}\n", upstream.name, upstream.url));
    }
    for route in &config.routes {
        hasher.update(format!("route {} {}\n", route.upstream, route.projects.join(" ")));
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

/// The shared tier `[cache.shared]` names. Pages are shared under the ownership fingerprint,
/// so a replica with other upstreams or routes never trusts them.
fn shared_tier(
    shared: &crate::config::SharedStoreConfig,
    fingerprint: &str,
    env: &dyn Environment,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<Arc<SharedTier>, BuildError> {
    let store = crate::cache::shared::store::build(
        shared,
        shared.wait.max(Duration::from_secs(30)),
        env,
        metrics.clone(),
    )?;
    let kind = match shared.kind {
        crate::config::SharedStoreKind::Azure => "azure",
        crate::config::SharedStoreKind::S3 => "s3",
    };
    let settings = TierSettings {
        prefix: shared.prefix.clone(),
        wait: shared.wait,
        retry_interval: shared.retry_interval,
        pages: shared.pages.then(|| fingerprint.to_owned()),
        kind,
    };
    tracing::info!(store = kind, container = %shared.container, prefix = %shared.prefix, pages = shared.pages, "shared tier on object storage");
    Ok(SharedTier::new(store, settings, metrics.clone()))
}

/// A running pipgate: the index listener, and the TLS and admin listeners when configured.
#[derive(Debug)]
pub struct Running {
    index: Server,
    tls: Option<Server>,
    admin: Option<Server>,
}

impl Running {
    /// The address of the index listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.index.local_addr()
    }

    /// The address of the admin listener (`server.admin_listen`), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Server::local_addr)
    }

    /// The address of the TLS listener (`server.tls.listen`), if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(Server::local_addr)
    }

    /// Stops every listener and drains them.
    pub async fn shutdown(self) {
        let optional = |server: Option<Server>| async move {
            if let Some(server) = server {
                server.shutdown().await;
            }
        };
        tokio::join!(self.index.shutdown(), optional(self.tls), optional(self.admin));
    }
}

/// Builds pipgate from `config`, binds its listeners and starts serving in the background.
pub async fn start(config: &Config, env: &dyn Environment) -> Result<Running, BuildError> {
    let state = Arc::new(state(config, env).await?);
    let server = &config.server;
    let limits = Limits {
        header_read_timeout: server.header_read_timeout,
        max_header_bytes: server.max_header_bytes,
        max_headers: server.max_headers,
        max_connections: server.max_connections,
        max_streams: server.max_streams_per_connection,
        shutdown_grace: server.shutdown_grace,
    };
    let bind = |addr| async move {
        crate::server::listen(addr).map_err(|source| BuildError::Listen { addr, source })
    };
    // Without an admin listener, every listener serves everything.
    let index_surface = if server.admin_listen.is_some() { Surface::Index } else { Surface::All };
    // The plain and TLS listeners share one limit; the admin listener has its own, so metrics
    // can still be scraped while the index is saturated.
    let slots = ConcurrencyLimitLayer::new(server.max_concurrent_requests);
    let index_service = || service(state.clone(), config, index_surface, &slots);
    let record_peer = state.access.is_some();
    // Everything that can fail is done before the first listener starts serving, so a failed
    // start leaves nothing running (and the cache directory's lock free).
    let tls_acceptor = match &server.tls {
        Some(tls) => {
            let files = TlsFiles { cert: tls.cert.clone(), key: tls.key.clone() };
            Some((crate::server::tls::acceptor(files, state.metrics.clone())?, bind(tls.listen).await?))
        }
        None => None,
    };
    let index_listener = bind(server.listen).await?;
    let admin_listener = match server.admin_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let index = Server::spawn(index_listener, index_service(), limits, None, record_peer);
    let tls = tls_acceptor.map(|(acceptor, listener)| {
        Server::spawn(listener, index_service(), limits, Some(acceptor), record_peer)
    });
    let admin = admin_listener.map(|listener| {
        let own = ConcurrencyLimitLayer::new(server.max_concurrent_requests);
        let admin_service = service(state.clone(), config, Surface::Admin, &own);
        Server::spawn(listener, admin_service, limits, None, false)
    });
    Ok(Running { index, tls, admin })
}
