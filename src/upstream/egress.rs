//! Egress through an HTTP proxy, as enterprise networks require: `HTTPS_PROXY`, `HTTP_PROXY`
//! and `NO_PROXY` (or their lowercase forms), read once at start.
//!
//! A proxied connection is a `CONNECT` tunnel to the upstream's host and port (for https and
//! plain http upstreams alike), so TLS still runs end to end between pipgate and the upstream
//! and the upstream's credential never passes the proxy in the clear. Credentials in the proxy
//! URL (`http://user:password@proxy:3128`) go only to the proxy, as `Proxy-Authorization`, and
//! the URL is never logged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::config::Environment;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The proxy rules from the environment.
#[derive(Clone)]
pub struct Egress {
    matcher: Arc<Matcher>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The proxy URLs may hold credentials.
        f.write_str("Egress { .. }")
    }
}

impl Egress {
    /// `None` when neither `HTTPS_PROXY` nor `HTTP_PROXY` is set.
    pub fn from_env(env: &dyn Environment) -> Option<Egress> {
        let var = |upper: &str| {
            env.var(upper).or_else(|| env.var(&upper.to_ascii_lowercase())).filter(|v| !v.is_empty())
        };
        let (https, http) = (var("HTTPS_PROXY"), var("HTTP_PROXY"));
        if https.is_none() && http.is_none() {
            return None;
        }
        let mut builder = Matcher::builder();
        if let Some(https) = https {
            builder = builder.https(https);
        }
        if let Some(http) = http {
            builder = builder.http(http);
        }
        if let Some(no) = var("NO_PROXY") {
            builder = builder.no(no);
        }
        Some(Egress { matcher: Arc::new(builder.build()) })
    }
}

/// Connects directly, or through the proxy's tunnel when the rules say so.
#[derive(Clone)]
pub struct EgressConnector {
    direct: HttpConnector,
    egress: Option<Egress>,
}

impl EgressConnector {
    pub fn new(direct: HttpConnector, egress: Option<Egress>) -> Self {
        EgressConnector { direct, egress }
    }
}

impl tower::Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let direct = self.direct.clone();
        let intercept = self.egress.as_ref().and_then(|egress| egress.matcher.intercept(&destination));
        match intercept {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(
                    async move { tunnel.oneshot(destination).await.map_err(|e| Box::new(e) as BoxError) },
                )
            }
            None => {
                Box::pin(
                    async move { direct.oneshot(destination).await.map_err(|e| Box::new(e) as BoxError) },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn rules_come_from_either_spelling_and_no_proxy_applies() {
        assert!(Egress::from_env(&MapEnv::default()).is_none());
        let env =
            MapEnv::new([("https_proxy", "http://user:pw@proxy.test:3128"), ("NO_PROXY", "feed.internal")]);
        let egress = Egress::from_env(&env).unwrap();
        let proxied = egress.matcher.intercept(&"https://pkgs.dev.azure.com/x".parse().unwrap()).unwrap();
        assert_eq!(proxied.uri().host(), Some("proxy.test"));
        assert!(proxied.basic_auth().is_some());
        assert!(egress.matcher.intercept(&"https://feed.internal/simple/".parse().unwrap()).is_none());
        assert!(!format!("{egress:?}").contains("pw"));
    }
}
