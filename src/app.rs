//! Builds pipgate from its config: the upstreams with their credentials, the owner rule over
//! them, and the service stack that answers requests. This is the one place that knows how the
//! pieces are stacked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::body::ResponseBody;
use crate::config::{Config, Environment};
use crate::resolve::{Resolver, Route};
use crate::server::Server;
use crate::upstream::{Upstream, UpstreamError, UpstreamSettings};

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    pub resolver: Resolver,
}

/// pipgate could not be built from a config that loaded.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream {upstream:?}: {source}")]
    Credential { upstream: String, source: crate::auth::AuthError },
    #[error("upstream {upstream:?}: {source}")]
    Client { upstream: String, source: UpstreamError },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The service hyper drives for every request.
pub type AppService = BoxCloneSyncService<Request<hyper::body::Incoming>, Response<ResponseBody>, Infallible>;

impl App {
    pub fn from_config(config: &Config, env: &dyn Environment) -> Result<App, BuildError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            let credential =
                match &upstream.auth {
                    Some(auth) => Some(crate::auth::from_config(auth, env).map_err(|source| {
                        BuildError::Credential { upstream: upstream.name.clone(), source }
                    })?),
                    None => None,
                };
            let built = Upstream::new(UpstreamSettings {
                name: upstream.name.clone(),
                base: upstream.url.clone(),
                credential,
                connect_timeout: upstream.connect_timeout,
                timeout: upstream.timeout,
                max_page_bytes: config.server.max_page_bytes,
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
        Ok(App { resolver: Resolver::new(upstreams, routes) })
    }

    /// The request stack, outermost first.
    pub fn service(self: Arc<Self>, config: &Config) -> AppService {
        let service = ServiceBuilder::new()
            // Shed nothing, but bound the work in flight: requests past the limit wait for a
            // slot instead of opening ever more upstream connections and buffers (I6).
            .concurrency_limit(config.server.max_concurrent_requests)
            .service_fn(move |request| {
                let app = self.clone();
                async move { crate::handler::handle(&app, request).await }
            });
        BoxCloneSyncService::new(service)
    }
}

/// Builds pipgate from `config`, binds its listener and starts serving in the background.
pub async fn start(config: &Config, env: &dyn Environment) -> Result<Server, BuildError> {
    let app = Arc::new(App::from_config(config, env)?);
    let addr = config.server.listen;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| BuildError::Listen { addr, source })?;
    Ok(Server::spawn(listener, app.service(config), config.server.shutdown_grace))
}
