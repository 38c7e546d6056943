//! Builds pipgate from its config: the upstreams with their credentials, the owner rule over
//! them, the caches, and the service stack that answers requests. This is the one place that
//! knows how the pieces are stacked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::body::ResponseBody;
use crate::cache::files::FileStore;
use crate::cache::page_disk::PageDisk;
use crate::cache::{Freshness, PageCache};
use crate::config::{Config, Environment};
use crate::handler::simple::RootCache;
use crate::metrics::Metrics;
use crate::resolve::{Resolver, Route};
use crate::server::Server;
use crate::upstream::{Upstream, UpstreamError, UpstreamSettings};

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    pub metrics: Arc<Metrics>,
    pub pages: Arc<PageCache>,
    pub files: Arc<FileStore>,
    pub root: RootCache,
    /// `Cache-Control` of fresh index pages, built once from `cache.client_max_age`.
    pub fresh_cache_control: http::HeaderValue,
}

/// pipgate could not be built from a config that loaded.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream {upstream:?}: {source}")]
    Credential { upstream: String, source: crate::auth::AuthError },
    #[error("upstream {upstream:?}: {source}")]
    Client { upstream: String, source: UpstreamError },
    #[error("cannot use the cache directory {}: {source}", dir.display())]
    Cache { dir: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The service hyper drives for every request.
pub type AppService = BoxCloneSyncService<Request<hyper::body::Incoming>, Response<ResponseBody>, Infallible>;

impl App {
    pub fn from_config(config: &Config, env: &dyn Environment) -> Result<App, BuildError> {
        let metrics = Arc::new(Metrics::register(prometheus::Registry::new()));
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            let credential = match &upstream.auth {
                Some(auth) => {
                    Some(crate::auth::from_config(&upstream.name, auth, env, metrics.clone()).map_err(
                        |source| BuildError::Credential { upstream: upstream.name.clone(), source },
                    )?)
                }
                None => None,
            };
            let built = Upstream::new(UpstreamSettings {
                name: upstream.name.clone(),
                base: upstream.url.clone(),
                credential,
                connect_timeout: upstream.connect_timeout,
                timeout: upstream.timeout,
                max_page_bytes: config.server.max_page_bytes,
                metrics: metrics.clone(),
            })
            .map_err(|source| BuildError::Client { upstream: upstream.name.clone(), source })?;
            upstreams.push(Arc::new(built));
        }
        let routes = config
            .routes
            .iter()
            .map(|route| Route {
                patterns: route.projects.clone(),
                upstream: config
                    .upstreams
                    .iter()
                    .position(|u| u.name == route.upstream)
                    .expect("routes name known upstreams; checked when the config loaded"),
            })
            .collect();
        let cache = &config.cache;
        let resolver = Arc::new(Resolver::new(upstreams, routes, cache.negative_ttl));
        let dir = cache.dir.clone().expect("the cache dir is filled in when the config loads");
        let cache_error = |source| BuildError::Cache { dir: dir.clone(), source };
        let disk = PageDisk::open(&dir, ownership_fingerprint(config)).map_err(cache_error)?;
        let files = FileStore::open(&dir, cache.max_size).map_err(cache_error)?;
        let freshness = Freshness {
            index_ttl: cache.index_ttl,
            max_stale: cache.max_stale,
            revalidate_interval: cache.revalidate_interval,
            negative_ttl: cache.negative_ttl,
        };
        let pages =
            Arc::new(PageCache::new(resolver, cache.memory_max_size, Some(disk), freshness, metrics.clone()));
        Ok(App {
            metrics,
            pages,
            files,
            root: RootCache::new(cache.index_ttl),
            fresh_cache_control: http::HeaderValue::from_str(&format!(
                "max-age={}, public",
                cache.client_max_age.as_secs()
            ))
            .expect("digits and ASCII"),
        })
    }

    /// The request stack, outermost first.
    pub fn service(self: Arc<Self>, config: &Config) -> AppService {
        let service = ServiceBuilder::new()
            // Bound the work in flight: requests past the limit wait for a slot instead of
            // opening ever more upstream connections and buffers (I6).
            .concurrency_limit(config.server.max_concurrent_requests)
            .service_fn(move |request| {
                let app = self.clone();
                async move { crate::handler::handle(&app, request).await }
            });
        BoxCloneSyncService::new(service)
    }
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

/// Builds pipgate from `config`, binds its listener and starts serving in the background.
pub async fn start(config: &Config, env: &dyn Environment) -> Result<Server, BuildError> {
    let app = Arc::new(App::from_config(config, env)?);
    let addr = config.server.listen;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| BuildError::Listen { addr, source })?;
    Ok(Server::spawn(listener, app.service(config), config.server.shutdown_grace))
}
