//! Who the client is, and which upstreams it may read (I10).
//!
//! Off unless the config has `[access]`. When on, a client presents a credential as HTTP
//! Basic (what pip, uv, poetry and pdm send from the index URL's userinfo, netrc or keyring) or
//! as a Bearer token, and is one of:
//!
//! - a static token ([`tokens`]), known to pipgate only by its sha256;
//! - a user of an htpasswd file ([`htpasswd`]), bcrypt-hashed, the file re-read on change;
//! - the holder of an OIDC identity token ([`oidc`]), such as a GitHub Actions workflow's,
//!   admitted by `*`-glob rules over its claims;
//! - nobody: anonymous, reading only the upstreams `access.anonymous` names.
//!
//! Each kind says which upstreams its clients may read. The owner rule runs first and
//! unchanged, and only then is the owner checked against the client's reads: a project owned
//! by an upstream the client may not read is refused (401 for an anonymous client, so pip asks
//! its keyring or netrc; 403 otherwise), **never** answered from a later upstream the client
//! may read. Access rules therefore cannot re-open dependency confusion.
//!
//! A presented credential that is not accepted is a 401, counted, and counted against the
//! client's address: past `access.max_failures_per_minute` that address gets 429 for the rest
//! of the minute without its credentials being checked (bcrypt is deliberately slow, so
//! guessing would also cost CPU). No credential ever reaches a log line or an error message.
//!
//! Two identities never mix: this module knows who the *client* is; [`crate::auth`] holds
//! pipgate's own credentials towards its upstreams. Nothing here goes upstream.

pub mod htpasswd;
pub mod oidc;
pub mod publish;
pub mod tokens;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, header};

use crate::config::{AccessConfig, UpstreamSet};
use crate::metrics::Metrics;
use crate::upstream::HttpClient;

pub use tokens::hash_token;

/// The address a request came from, which the listener records in the request's extensions
/// when client authentication is on (failed attempts are limited per address).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Who a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Client authentication is off: everyone reads everything.
    Anyone,
    /// No credential presented; reads `access.anonymous`.
    Anonymous,
    /// A static token, by its configured name.
    Token { name: String },
    /// An htpasswd user.
    User { name: String },
    /// An OIDC token admitted by the named rules (the `sub` claim identifies the holder); its
    /// verified claims, for publish rules.
    Oidc { rules: Vec<String>, subject: String, claims: Arc<serde_json::Value> },
}

/// An authenticated (or anonymous) client and what it may read.
#[derive(Debug, Clone)]
pub struct Client {
    pub who: Who,
    pub reads: UpstreamSet,
}

impl Client {
    /// The client of a pipgate without `[access]`.
    pub const EVERYONE: Client = Client { who: Who::Anyone, reads: UpstreamSet::ALL };

    /// Whether the client may read what `upstream` (a position in the config) owns.
    pub fn may_read(&self, upstream: usize) -> bool {
        self.reads.contains(upstream)
    }

    pub fn is_anonymous(&self) -> bool {
        self.who == Who::Anonymous
    }

    /// The client in words, for logs and 403 messages: names only, never a credential.
    pub fn describe(&self) -> String {
        match &self.who {
            Who::Anyone => "any client".to_owned(),
            Who::Anonymous => "an anonymous client".to_owned(),
            Who::Token { name } => format!("token {name:?}"),
            Who::User { name } => format!("user {name:?}"),
            Who::Oidc { rules, subject, .. } => {
                format!("OIDC subject {subject:?} (rule {})", rules.join(", "))
            }
        }
    }
}

/// Why a request was refused before it reached the index, or an index answer withheld.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// No credential, where one is needed.
    #[error(
        "pipgate needs a credential: give the index URL a user and password or token (or use netrc or a keyring)"
    )]
    Missing,
    /// A credential that is not accepted; the reason names no secret.
    #[error("the credential was not accepted: {0}")]
    Rejected(String),
    /// A valid identity that no rule admits.
    #[error("{0}")]
    NotAllowed(String),
    /// Too many rejected credentials from this address in the last minute.
    #[error("too many rejected credentials from this address; try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The project's owner is an upstream the client may not read.
    #[error("{client} may not read upstream {upstream:?}, which owns project {project}")]
    Unreadable { client: String, anonymous: bool, project: String, upstream: String },
}

impl Refusal {
    /// 401 (`WWW-Authenticate` follows) when a credential would help, else 403 or 429.
    pub fn wants_credentials(&self) -> bool {
        match self {
            Refusal::Missing | Refusal::Rejected(_) => true,
            Refusal::Unreadable { anonymous, .. } => *anonymous,
            Refusal::NotAllowed(_) | Refusal::RateLimited { .. } => false,
        }
    }
}

/// What the client presented.
enum Presented<'a> {
    Nothing,
    Bearer(&'a str),
    Basic { user: String, password: String },
}

/// The outcome of authenticating: decided at once (a token, a cached verification, a refusal)
/// or after slow work (bcrypt off the reactor, a JWKS fetch).
pub enum Attempt {
    Done(Result<Client, Refusal>),
    Pending(Pin<Box<dyn Future<Output = Result<Client, Refusal>> + Send>>),
}

/// The credential kinds of one kind of check, for metrics.
#[derive(Debug, Clone, Copy)]
enum Kind {
    None,
    Token,
    Htpasswd,
    Oidc,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Token => "token",
            Kind::Htpasswd => "htpasswd",
            Kind::Oidc => "oidc",
        }
    }
}

/// The client authenticator built from `[access]`.
#[derive(Debug)]
pub struct Access {
    anonymous: UpstreamSet,
    tokens: tokens::Tokens,
    htpasswd: Vec<Arc<htpasswd::Htpasswd>>,
    oidc: Arc<oidc::Oidc>,
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
    max_failures: u32,
    metrics: Arc<Metrics>,
}

/// `[access]` could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AccessError {
    pub key: String,
    pub message: String,
}

/// How long a failure counts against its address.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl Access {
    /// Builds the authenticator; htpasswd and JWKS files are read now, JWKS URLs fetched in
    /// the background.
    pub fn new(
        config: &AccessConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Access>, AccessError> {
        let tokens = tokens::Tokens::new(&config.tokens);
        let mut htpasswd = Vec::new();
        for (i, file) in config.htpasswd.iter().enumerate() {
            let key = format!("access.htpasswd[{i}].file");
            htpasswd.push(
                htpasswd::Htpasswd::open(&file.file, file.read.set())
                    .map_err(|message| AccessError { key, message })?,
            );
        }
        let oidc = oidc::Oidc::new(&config.oidc, client, metrics.clone())?;
        for kind in ["none", "token", "htpasswd", "oidc"] {
            for result in ["ok", "rejected", "forbidden", "rate_limited"] {
                metrics.client_auth.with_label_values(&[kind, result]);
            }
        }
        Ok(Arc::new(Access {
            anonymous: config.anonymous_reads(),
            tokens,
            htpasswd,
            oidc,
            failures: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(FAILURE_WINDOW).build(),
            max_failures: config.max_failures_per_minute,
            metrics,
        }))
    }

    /// Authenticates a request from its headers. `needs_identity` refuses anonymous clients
    /// whatever they may read (`/metrics` on the index port).
    pub fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        needs_identity: bool,
    ) -> Attempt {
        let presented = match presented(headers) {
            Ok(presented) => presented,
            Err(reason) => {
                return Attempt::Done(self.finish(Kind::None, peer, Err(Refusal::Rejected(reason))));
            }
        };
        if matches!(presented, Presented::Nothing) {
            let result = if self.anonymous.is_empty() || needs_identity {
                Err(Refusal::Missing)
            } else {
                Ok(Client { who: Who::Anonymous, reads: self.anonymous })
            };
            return Attempt::Done(self.finish(Kind::None, peer, result));
        }
        if let Some(ip) = peer
            && self.failures.get(&ip).is_some_and(|count| count.load(Ordering::Relaxed) >= self.max_failures)
        {
            return Attempt::Done(self.finish(
                Kind::None,
                peer,
                Err(Refusal::RateLimited { retry_after: FAILURE_WINDOW.as_secs() }),
            ));
        }
        let (user, secret) = match presented {
            Presented::Nothing => unreachable!("answered above"),
            Presented::Bearer(token) => (None, token.to_owned()),
            Presented::Basic { user, password } => (Some(user), password),
        };
        if let Some(client) = self.tokens.find(&secret) {
            return Attempt::Done(self.finish(Kind::Token, peer, Ok(client)));
        }
        if oidc::looks_like_jwt(&secret) {
            return match self.oidc.verify_now(&secret) {
                oidc::Now::Decided(result) => Attempt::Done(self.finish(Kind::Oidc, peer, result)),
                oidc::Now::NeedsKeys(keys) => {
                    let (this, oidc) = (self.clone(), self.oidc.clone());
                    Attempt::Pending(Box::pin(async move {
                        keys.refresh_for_unknown_key().await;
                        let result = match oidc.verify_now(&secret) {
                            oidc::Now::Decided(result) => result,
                            oidc::Now::NeedsKeys(_) => Err(Refusal::Rejected(
                                "its signing key is not among the issuer's keys".into(),
                            )),
                        };
                        this.finish(Kind::Oidc, peer, result)
                    }))
                }
            };
        }
        let Some(user) = user else {
            return Attempt::Done(self.finish(
                Kind::Token,
                peer,
                Err(Refusal::Rejected("unknown token".into())),
            ));
        };
        let Some(file) = self.htpasswd.iter().find(|f| f.has_user(&user)).cloned() else {
            let reason = if self.htpasswd.is_empty() { "unknown token" } else { "unknown user or token" };
            let kind = if self.htpasswd.is_empty() { Kind::Token } else { Kind::Htpasswd };
            return Attempt::Done(self.finish(kind, peer, Err(Refusal::Rejected(reason.into()))));
        };
        let client = |ok: bool, user: String, reads: UpstreamSet| {
            if ok {
                Ok(Client { who: Who::User { name: user }, reads })
            } else {
                Err(Refusal::Rejected(format!("wrong password for user {user:?}")))
            }
        };
        if let Some(ok) = file.cached(&user, &secret) {
            return Attempt::Done(self.finish(Kind::Htpasswd, peer, client(ok, user, file.reads())));
        }
        let this = self.clone();
        Attempt::Pending(Box::pin(async move {
            let ok = file.verify(&user, &secret).await;
            this.finish(Kind::Htpasswd, peer, client(ok, user, file.reads()))
        }))
    }

    /// Counts and logs the outcome, and counts a rejected credential against its address.
    fn finish(
        &self,
        kind: Kind,
        peer: Option<IpAddr>,
        result: Result<Client, Refusal>,
    ) -> Result<Client, Refusal> {
        let word = match &result {
            Ok(_) => "ok",
            Err(Refusal::Missing | Refusal::Rejected(_)) => "rejected",
            Err(Refusal::NotAllowed(_) | Refusal::Unreadable { .. }) => "forbidden",
            Err(Refusal::RateLimited { .. }) => "rate_limited",
        };
        self.metrics.client_auth.with_label_values(&[kind.as_str(), word]).inc();
        match &result {
            Err(Refusal::Rejected(reason)) => {
                tracing::info!(kind = kind.as_str(), peer = ?peer, %reason, "client credential rejected");
                if let Some(ip) = peer {
                    self.failures
                        .get_with(ip, || Arc::new(AtomicU32::new(0)))
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(Refusal::NotAllowed(reason)) => {
                tracing::info!(kind = kind.as_str(), peer = ?peer, %reason, "client not allowed");
            }
            Err(Refusal::RateLimited { .. }) => {
                tracing::debug!(peer = ?peer, "client address rate limited");
            }
            Ok(client) => tracing::debug!(client = %client.describe(), "client authenticated"),
            Err(_) => {}
        }
        result
    }
}

/// Reads `Authorization`: nothing, `Bearer <token>` or `Basic <base64 user:password>`. Any
/// other scheme, or a Basic value that does not decode, is an error that quotes nothing.
fn presented(headers: &HeaderMap) -> Result<Presented<'_>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Presented::Nothing);
    };
    let value = value.to_str().map_err(|_| "the Authorization header is not ASCII".to_owned())?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Presented::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| "the Basic credential is not base64 of user:password".to_owned())?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| "the Basic credential has no ':'".to_owned())?;
        if password.is_empty() {
            return Err("the Basic credential has an empty password".to_owned());
        }
        return Ok(Presented::Basic { user: user.to_owned(), password: password.to_owned() });
    }
    Err("use Basic or Bearer authorization".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn credentials_are_read_from_basic_and_bearer() {
        assert!(matches!(presented(&HeaderMap::new()), Ok(Presented::Nothing)));
        assert!(matches!(presented(&with_authorization("Bearer abc")), Ok(Presented::Bearer("abc"))));
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        match presented(&with_authorization(&format!("Basic {basic}"))) {
            Ok(Presented::Basic { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "s3:cret"))
            }
            _ => panic!("basic not read"),
        }
        for bad in ["Digest x", "Basic !!!", "Basic", "Bearer "] {
            let error = presented(&with_authorization(bad)).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!error.contains("!!!"), "{error}");
        }
        let empty = base64::engine::general_purpose::STANDARD.encode("alice:");
        assert!(presented(&with_authorization(&format!("Basic {empty}"))).is_err());
    }
}
