//! OIDC identity tokens (JWTs), such as the one a GitHub Actions job with `id-token: write`
//! gets, admitted by rules over their claims.
//!
//! A token is accepted when its signature verifies with one of its issuer's published keys
//! (JWKS), `iss` is the rule's issuer exactly, `aud` is one of the rule's audiences, `exp` is in
//! the future (60 s leeway for clock skew), and every claim rule matches (`*` globs, so
//! `ref = "refs/heads/*"` admits every branch: exactly what Azure's federated credentials,
//! one subject per branch, cannot say). A token whose signature and audience are good but
//! whose claims match no rule is a valid identity that is not allowed: 403, not 401.
//!
//! Only public-key signatures are accepted (RSA, RSA-PSS, ECDSA, EdDSA), with the algorithm
//! the token names checked against the key's family and the key's own `alg`: `alg: none` and
//! HMAC tokens (the classic trick of signing HS256 with the issuer's public key as the secret)
//! never verify. Symmetric keys in a JWKS are ignored.
//!
//! Keys come from a URL (fetched at start, again when a token names an unknown `kid`, at most
//! once per [`REFRESH_SPACING`], and in the background when older than [`MAX_KEY_AGE`]) or a
//! file (re-read on an unknown `kid`). A verified token is remembered by its sha256 until it
//! expires, so the signature is checked once per token, not once per request.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use super::{AccessError, Client, Refusal, Who};
use crate::config::{OidcConfig, UpstreamSet};
use crate::glob::glob_match;
use crate::metrics::Metrics;
use crate::upstream::HttpClient;

/// Least time between two key refreshes caused by unknown `kid`s (a flood of made-up `kid`s
/// must not become a flood of JWKS requests).
pub const REFRESH_SPACING: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again in the background (a key the issuer withdrew stops
/// being trusted).
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Whether a secret has the shape of a JWT (three base64url parts, a JSON header first), so a
/// password that happens to contain dots is not sent through the JWT parser.
pub fn looks_like_jwt(secret: &str) -> bool {
    secret.starts_with("eyJ") && secret.bytes().filter(|&b| b == b'.').count() == 2
}

#[derive(Debug)]
pub struct Oidc {
    rules: Vec<Rule>,
    verified: moka::sync::Cache<[u8; 32], (Client, u64)>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    issuer: String,
    audience: Vec<String>,
    claims: Vec<(String, Vec<String>)>,
    reads: UpstreamSet,
    keys: Arc<KeySet>,
}

/// What [`Oidc::verify_now`] could say without waiting.
pub enum Now {
    Decided(Result<Client, Refusal>),
    /// The token names a key not fetched yet: refresh these keys, then ask again.
    NeedsKeys(Arc<KeySet>),
}

impl Oidc {
    pub fn new(
        rules: &[OidcConfig],
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Oidc>, AccessError> {
        let mut sets: Vec<Arc<KeySet>> = Vec::new();
        let mut built = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let source = match (&rule.jwks_url, &rule.jwks_file) {
                (Some(url), _) => Source::Url(url.clone()),
                (None, Some(file)) => Source::File(file.clone()),
                (None, None) => unreachable!("checked when the config loaded"),
            };
            // Rules that share a key source share its keys and its refreshes.
            let keys = match sets.iter().find(|set| set.source == source) {
                Some(set) => set.clone(),
                None => {
                    let key = format!("access.oidc[{i}]");
                    let set = KeySet::new(source, rule.name.clone(), client.clone(), metrics.clone())
                        .map_err(|message| AccessError { key, message })?;
                    sets.push(set.clone());
                    set
                }
            };
            built.push(Rule {
                name: rule.name.clone(),
                issuer: rule.issuer.clone(),
                audience: rule.audience.clone(),
                claims: rule.claims.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
                reads: rule.read.set(),
                keys,
            });
        }
        for set in &sets {
            if matches!(set.source, Source::Url(_)) {
                let set = set.clone();
                tokio::spawn(async move { set.refresh().await });
            }
        }
        let verified = moka::sync::Cache::builder().max_capacity(10_000).time_to_live(MAX_KEY_AGE).build();
        Ok(Arc::new(Oidc { rules: built, verified }))
    }

    /// Verifies `token` with the keys at hand.
    pub fn verify_now(&self, token: &str) -> Now {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((client, expires)) = self.verified.get(&hash) {
            if now < expires {
                return Now::Decided(Ok(client));
            }
            self.verified.invalidate(&hash);
        }
        let rejected = |reason: String| Now::Decided(Err(Refusal::Rejected(format!("OIDC token: {reason}"))));
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return rejected("not a valid JWT (or its alg is not a public-key signature)".into()),
        };
        if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return rejected(format!(
                "algorithm {:?} is not accepted: only public-key signatures are",
                header.alg
            ));
        }
        let unverified: serde_json::Value = match jsonwebtoken::dangerous::insecure_decode_claims(token) {
            Ok(claims) => claims,
            Err(_) => return rejected("its claims are not JSON".into()),
        };
        let Some(issuer) = unverified.get("iss").and_then(|v| v.as_str()) else {
            return rejected("it has no iss claim".into());
        };
        let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.issuer == issuer).collect();
        if rules.is_empty() {
            return rejected(format!("issuer {issuer:?} is not trusted"));
        }
        let mut matched: Vec<&Rule> = Vec::new();
        let mut claims_of_match = None;
        let mut not_allowed = None;
        let mut failure = None;
        for rule in rules {
            let Some(key) = rule.keys.find(header.kid.as_deref(), header.alg) else {
                if rule.keys.may_refresh() {
                    return Now::NeedsKeys(rule.keys.clone());
                }
                failure.get_or_insert_with(|| match &header.kid {
                    Some(kid) => format!("its signing key {kid:?} is not among the issuer's keys"),
                    None => "it names no key (kid) and the issuer has more than one".to_owned(),
                });
                continue;
            };
            let mut validation = Validation::new(header.alg);
            validation.set_issuer(&[&rule.issuer]);
            validation.set_audience(&rule.audience);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                Ok(data) => match rule.unmet_claim(&data.claims) {
                    None => {
                        matched.push(rule);
                        claims_of_match = Some(data.claims);
                    }
                    Some(unmet) => {
                        not_allowed.get_or_insert(unmet);
                    }
                },
                Err(error) => {
                    failure.get_or_insert_with(|| describe(&error));
                }
            }
        }
        if let Some(claims) = claims_of_match {
            let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let expires = claims.get("exp").and_then(serde_json::Value::as_u64).unwrap_or(now);
            let reads = matched.iter().fold(UpstreamSet::default(), |set, rule| set.union(rule.reads));
            let rules = matched.iter().map(|r| r.name.clone()).collect();
            let client = Client { who: Who::Oidc { rules, subject, claims: Arc::new(claims) }, reads };
            self.verified.insert(hash, (client.clone(), expires));
            return Now::Decided(Ok(client));
        }
        if let Some(unmet) = not_allowed {
            return Now::Decided(Err(Refusal::NotAllowed(unmet)));
        }
        rejected(failure.unwrap_or_else(|| "no rule accepted it".into()))
    }
}

impl Rule {
    /// The first claim rule the verified `claims` do not meet, in words, or `None`.
    fn unmet_claim(&self, claims: &serde_json::Value) -> Option<String> {
        let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("?");
        let unmet = unmet_claim(claims, self.claims.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        Some(format!("OIDC subject {subject:?} is not allowed: {unmet} of rule {:?}", self.name))
    }
}

/// The first of `rules` (claim name and globs, one of which must match) that the verified
/// `claims` do not meet, in words (`its claim ref = refs/heads/x does not match
/// (refs/heads/main)`), or `None` when all are met. Array claims match when any element does.
pub fn unmet_claim<'a>(
    claims: &serde_json::Value,
    rules: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> Option<String> {
    for (claim, patterns) in rules {
        let values: Vec<String> = match claims.get(claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items.iter().map(scalar).collect(),
            Some(value) => vec![scalar(value)],
        };
        let met = values.iter().any(|value| patterns.iter().any(|p| glob_match(p, value)));
        if !met {
            let shown = if values.is_empty() { "(missing)".to_owned() } else { values.join(", ") };
            return Some(format!("its claim {claim} = {shown} does not match ({})", patterns.join(" or ")));
        }
    }
    None
}

/// A claim value as text: strings as they are, numbers and booleans as JSON writes them.
fn scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why `jsonwebtoken` refused a token, in words that name no secret.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "its audience (aud) is not accepted".into(),
        ErrorKind::InvalidIssuer => "its issuer (iss) is not accepted".into(),
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "its algorithm does not fit the issuer's key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        _ => "it is malformed".into(),
    }
}

/// Where a rule's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Url(url::Url),
    File(std::path::PathBuf),
}

/// The keys of one JWKS source.
#[derive(Debug)]
pub struct KeySet {
    source: Source,
    /// The first rule that uses the source, for logs and metrics.
    rule: String,
    keys: RwLock<Arc<Keys>>,
    /// When the last refresh for an unknown or old key started (successful or not).
    last_attempt: Mutex<Option<Instant>>,
    /// One refresh at a time; waiters re-check after it.
    refreshing: tokio::sync::Mutex<()>,
    client: HttpClient,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Keys {
    list: Vec<Key>,
    fetched: Option<Instant>,
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    /// The `alg` the JWK declares, if any: a token must use exactly that one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl KeySet {
    fn new(
        source: Source,
        rule: String,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<KeySet>, String> {
        for result in ["ok", "error"] {
            metrics.jwks_refreshes.with_label_values(&[&rule, result]);
        }
        let set = Arc::new(KeySet {
            source,
            rule,
            keys: RwLock::new(Arc::new(Keys::default())),
            last_attempt: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            client,
            metrics,
        });
        if let Source::File(file) = &set.source {
            let text =
                std::fs::read(file).map_err(|e| format!("cannot read JWKS file {}: {e}", file.display()))?;
            let keys = parse_jwks(&text).map_err(|e| format!("JWKS file {}: {e}", file.display()))?;
            *set.keys.write().expect("keys lock") = Arc::new(keys);
        }
        Ok(set)
    }

    /// The key a token with `kid` and `alg` must verify with. Old keys start a background
    /// refresh and are used meanwhile.
    fn find(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().expect("keys lock").clone();
        if keys.fetched.is_some_and(|at| at.elapsed() > MAX_KEY_AGE) && self.may_refresh() {
            let set = self.clone();
            tokio::spawn(async move { set.refresh_for_unknown_key().await });
        }
        let usable = |k: &&Key| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        let found = match kid {
            Some(kid) => keys.list.iter().find(|k| k.kid.as_deref() == Some(kid)).filter(usable),
            // Without a kid, only an issuer with one usable key is unambiguous.
            None => {
                let mut candidates = keys.list.iter().filter(usable);
                match (candidates.next(), candidates.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            }
        };
        found.map(|k| k.key.clone())
    }

    /// Whether a refresh may start now.
    fn may_refresh(&self) -> bool {
        self.last_attempt.lock().expect("attempt lock").is_none_or(|at| at.elapsed() >= REFRESH_SPACING)
    }

    /// Fetches the keys again unless another request did within [`REFRESH_SPACING`]. (The
    /// fetch at start does not count: a key rotated just after it is picked up at once.)
    pub async fn refresh_for_unknown_key(&self) {
        let _one = self.refreshing.lock().await;
        if self.may_refresh() {
            *self.last_attempt.lock().expect("attempt lock") = Some(Instant::now());
            self.refresh().await;
        }
    }

    async fn refresh(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(rule = %self.rule, keys = keys.list.len(), "OIDC signing keys loaded");
                *self.keys.write().expect("keys lock") = Arc::new(keys);
                self.metrics.jwks_refreshes.with_label_values(&[&self.rule, "ok"]).inc();
            }
            Err(error) => {
                tracing::warn!(rule = %self.rule, %error, "OIDC signing keys could not be loaded; keeping the last ones");
                self.metrics.jwks_refreshes.with_label_values(&[&self.rule, "error"]).inc();
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let url = match &self.source {
            Source::File(file) => {
                let file = file.clone();
                let text = tokio::task::spawn_blocking(move || std::fs::read(&file))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot read the JWKS file: {e}"))?;
                return parse_jwks(&text);
            }
            Source::Url(url) => url,
        };
        let request = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("{url} answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| format!("reading {url}: {e}"))
        })
        .await
        .map_err(|_| format!("{url} did not answer within 30 s"))??;
        parse_jwks(&answer)
    }
}

/// The usable public keys of a JWKS document.
fn parse_jwks(text: &[u8]) -> Result<Keys, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut list = Vec::new();
    for jwk in &set.keys {
        // A shared secret in a public key set is a mistake; never verify with one.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        let alg = match jwk.common.key_algorithm {
            Some(declared) => match Algorithm::try_from(declared) {
                Ok(alg) => Some(alg),
                Err(_) => continue,
            },
            None => None,
        };
        list.push(Key { kid: jwk.common.key_id.clone(), alg, key });
    }
    Ok(Keys { list, fetched: Some(Instant::now()) })
}
