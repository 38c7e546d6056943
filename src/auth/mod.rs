//! Upstream credentials.
//!
//! Every kind of credential sits behind [`Credential`]: the upstream client asks it for an
//! `Authorization` value before each request to the credential's own origin, and tells it when
//! the upstream rejected that value, so token credentials can refresh. Static kinds (basic,
//! bearer) live here; identity-provider kinds plug in behind the same trait.

mod azure;
mod certificate;
mod refresh;
mod secret_value;
mod static_kinds;

pub use azure::AzureCredential;
pub use secret_value::SecretValue;
pub use static_kinds::{BasicCredential, BearerCredential};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::HeaderValue;

use crate::config::{AuthConfig, Environment};

/// A boxed future, so that [`Credential`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can authenticate requests to one upstream.
pub trait Credential: Send + Sync + fmt::Debug {
    /// The `Authorization` header value for the next request. Marked sensitive, so hyper's
    /// HTTP/2 encoder never indexes it.
    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue, AuthError>>;

    /// The upstream answered 401 to the value last handed out: a token credential refreshes
    /// (once, however many requests report it); a static one can do nothing. Resolves to
    /// whether a retry could succeed.
    fn rejected(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { false })
    }

    /// Whether the credential can authenticate now (readiness: a token is held).
    fn is_ready(&self) -> bool {
        true
    }
}

/// A credential could not produce a value. The message never holds the secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("environment variable {0} is not set or empty")]
    MissingEnv(String),
    #[error("{0}")]
    SecretFile(String),
    #[error("the credential holds characters not allowed in an HTTP header")]
    NotAHeader,
    #[error("no valid token: the identity endpoint has not provided one")]
    NoToken,
}

/// Builds the credential an upstream's config names. Token credentials start fetching at once.
pub fn from_config(
    upstream: &str,
    auth: &AuthConfig,
    env: &dyn Environment,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<dyn Credential>, AuthError> {
    Ok(match auth {
        AuthConfig::Azure(azure) => Arc::new(AzureCredential::start(upstream, azure, env, metrics)?),
        AuthConfig::Basic(basic) => {
            let password = SecretValue::new(basic.password.source().clone(), env)?;
            Arc::new(BasicCredential::new(basic.username.clone(), password))
        }
        AuthConfig::Bearer(bearer) => {
            Arc::new(BearerCredential::new(SecretValue::new(bearer.token.source().clone(), env)?))
        }
    })
}
