//! The config's shape. Field docs give each key's meaning and default; the README lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::secret::{ClientSecret, Password, RequiredSecret, SecretSetting, Token};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Always present: the loader fills in `cache.dir` before the config is read.
    pub cache: CacheConfig,
    /// Upstreams in priority order: the first that has a project owns it, whole.
    #[serde(rename = "upstream", default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Name patterns pinned to one upstream.
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
    /// Names that may move to a lower upstream despite the owner memory.
    #[serde(rename = "release", default)]
    pub releases: Vec<ReleaseConfig>,
    #[serde(default)]
    pub ownership: OwnershipConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub egress: EgressConfig,
    /// Who may use pipgate and what each client may read. Default: off (anyone who can reach
    /// the listener reads everything, as a sidecar on 127.0.0.1 wants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessConfig>,
    /// Uploads through pipgate to upstreams that declare an `upload_url`. Default: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishConfig>,
}

/// `[publish]`: the upload API (`POST /upload/{upstream}/`), forwarded with pipgate's own
/// credential for that upstream. Needs `[access]`: no upload is ever anonymous.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// The upstream `POST /upload/` publishes to. Default: none (only `/upload/{upstream}/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Largest upload body accepted (413 beyond). Default `1GiB`.
    #[serde(default = "default_max_upload_bytes", with = "byte_size")]
    pub max_bytes: u64,
    /// Deadline for one upload, body and upstream answer together. Default `10m`.
    #[serde(default = "default_upload_timeout", with = "duration")]
    pub timeout: Duration,
    /// Who may publish what where; a client needs one rule that allows it.
    #[serde(rename = "rule", default)]
    pub rules: Vec<PublishRuleConfig>,
    /// `default`, resolved when the config loads.
    #[serde(skip)]
    pub(super) default_index: Option<usize>,
}

impl PublishConfig {
    /// The position of `default` in the upstream list.
    pub fn default_upstream(&self) -> Option<usize> {
        self.default_index
    }
}

fn default_max_upload_bytes() -> u64 {
    1 << 30
}
fn default_upload_timeout() -> Duration {
    Duration::from_secs(600)
}

/// `[[publish.rule]]`: these clients may publish these projects to this upstream. A client
/// matches when its token name is in `tokens`, its htpasswd user in `users`, or (an OIDC
/// token) every claim in `claims` matches its globs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRuleConfig {
    /// A name for messages and logs. Default: `rule N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub upstream: String,
    /// Project names or `*` patterns, matched after normalization.
    pub projects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// OIDC claim name to glob (or list of globs); every one must match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub claims: std::collections::BTreeMap<String, ClaimRule>,
    #[serde(skip)]
    pub(super) upstream_index: usize,
}

impl PublishRuleConfig {
    pub fn upstream_position(&self) -> usize {
        self.upstream_index
    }
}

/// A set of upstreams, by their position in the config (at most 64 upstreams).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UpstreamSet(u64);

impl UpstreamSet {
    /// Most upstreams a config may list, so that a set fits in one word.
    pub const MAX: usize = 64;

    /// Every upstream, whatever their number.
    pub const ALL: UpstreamSet = UpstreamSet(u64::MAX);

    /// The first `count` upstreams: every upstream of a config with `count` of them.
    pub fn first(count: usize) -> UpstreamSet {
        UpstreamSet(if count >= 64 { u64::MAX } else { (1u64 << count) - 1 })
    }

    pub fn with(self, position: usize) -> UpstreamSet {
        UpstreamSet(self.0 | (1 << position))
    }

    pub fn contains(self, position: usize) -> bool {
        position < 64 && self.0 & (1 << position) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: UpstreamSet) -> UpstreamSet {
        UpstreamSet(self.0 | other.0)
    }
}

/// `[access]`: client authentication and what each client may read. On when present; it must
/// name at least one credential kind (`[[access.token]]`, `[[access.htpasswd]]`,
/// `[[access.oidc]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Upstreams a client that presents no credential may read (for example the public one).
    /// Default: none, so every index request needs a credential.
    #[serde(default)]
    pub anonymous: Vec<String>,
    /// Rejected credentials one client address may present in a minute; past that it gets 429
    /// until the minute is over, without its credentials being checked. Default `20`.
    #[serde(default = "default_max_failures_per_minute")]
    pub max_failures_per_minute: u32,
    /// Static tokens, each stored as a hash only.
    #[serde(rename = "token", default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<AccessTokenConfig>,
    /// htpasswd files (bcrypt entries), re-read when they change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub htpasswd: Vec<HtpasswdConfig>,
    /// OIDC identity tokens (JWTs) with claim rules, such as GitHub Actions'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<OidcConfig>,
    /// `anonymous`, resolved when the config loads.
    #[serde(skip)]
    pub(super) anonymous_set: UpstreamSet,
}

impl AccessConfig {
    /// What a client without a credential may read.
    pub fn anonymous_reads(&self) -> UpstreamSet {
        self.anonymous_set
    }
}

fn default_max_failures_per_minute() -> u32 {
    20
}

/// What a credential kind lets its clients read: `read = ["corp", "pypi"]`, default every
/// upstream. Resolved to a set when the config loads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReadList {
    pub names: Option<Vec<String>>,
    #[serde(skip)]
    pub(super) set: UpstreamSet,
}

impl ReadList {
    pub fn set(&self) -> UpstreamSet {
        self.set
    }
}

/// `[[access.token]]`: a static token, known only by its hash (`pipgate hash-token` prints
/// one). Presented as `Authorization: Bearer <token>` or as the password of Basic auth with
/// any username.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenConfig {
    /// Who holds the token, for logs and (later) publish rules.
    pub name: String,
    /// `sha256:<64 hex digits>`.
    pub hash: String,
    /// Upstreams this token may read. Default: every upstream.
    #[serde(default, skip_serializing_if = "ReadList::is_default")]
    pub read: ReadList,
}

impl ReadList {
    fn is_default(&self) -> bool {
        self.names.is_none()
    }
}

/// `[[access.htpasswd]]`: users and bcrypt hashes in an htpasswd file (`htpasswd -B`),
/// presented as Basic auth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    pub file: PathBuf,
    /// Upstreams these users may read. Default: every upstream.
    #[serde(default, skip_serializing_if = "ReadList::is_default")]
    pub read: ReadList,
}

/// `[[access.oidc]]`: JWTs from one issuer for one audience, admitted when every claim rule
/// matches. Presented as `Authorization: Bearer <jwt>` or as a Basic password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// This rule's name, for logs.
    pub name: String,
    /// The exact `iss` claim, as `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// Accepted `aud` values: one string or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Where the issuer publishes its signing keys (https; http only on a loopback address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<Url>,
    /// A JWKS file instead of `jwks_url`, re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// Claim name to `*` glob, or to a list of globs of which one must match. Every listed
    /// claim must match. Default: none (any token of the issuer and audience).
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, ClaimRule>,
    /// Upstreams tokens matching this rule may read. Default: every upstream.
    #[serde(default, skip_serializing_if = "ReadList::is_default")]
    pub read: ReadList,
}

/// One glob or a list of globs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimRule(#[serde(deserialize_with = "one_or_many")] pub Vec<String>);

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(one)) => Ok(vec![one]),
        Ok(OneOrMany::Many(many)) => Ok(many),
        Err(_) => Err(serde::de::Error::custom("expected a string or a list of strings")),
    }
}

/// `[egress]`: how pipgate reaches its upstreams.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// PEM file of CA certificates trusted for every upstream on top of the platform's roots
    /// (a TLS-inspecting proxy's CA). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `[ownership]`: owner memory, feed health and shadow detection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipConfig {
    /// Look for privately owned names on the lower upstreams, in the background. Default
    /// `true`. Each check asks a lower (usually public) index for a private name, which tells
    /// that index the name exists; turn it off where that matters more than knowing.
    #[serde(default = "default_true")]
    pub shadow_check: bool,
    /// How often the root of each health-checked upstream is probed; a project 404 from such an
    /// upstream counts only within this long of a good probe. Default `60s`.
    #[serde(default = "default_health_interval", with = "duration")]
    pub health_interval: Duration,
    /// How often a shadowed name is checked again on the lower upstreams. Default `1h`.
    #[serde(default = "default_shadow_recheck", with = "duration")]
    pub shadow_recheck: Duration,
    /// Most shadow checks sent to lower upstreams per second. Default `2`.
    #[serde(default = "default_shadow_checks_per_second")]
    pub shadow_checks_per_second: f64,
    /// Most projects whose owner is remembered; the oldest record goes first. Default `100000`.
    #[serde(default = "default_max_remembered")]
    pub max_remembered: usize,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        OwnershipConfig {
            shadow_check: true,
            health_interval: default_health_interval(),
            shadow_recheck: default_shadow_recheck(),
            shadow_checks_per_second: default_shadow_checks_per_second(),
            max_remembered: default_max_remembered(),
        }
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_shadow_recheck() -> Duration {
    Duration::from_secs(3600)
}
fn default_shadow_checks_per_second() -> f64 {
    2.0
}
fn default_max_remembered() -> usize {
    100_000
}

/// `[[release]]`: projects allowed to move to a lower upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    /// Names or `*` patterns, matched after normalization.
    pub projects: Vec<String>,
}

/// `[admin]`: the admin endpoints (`/admin/…`), off unless a token is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminConfig {
    /// `token`, `token_env` or `token_file`: what `Authorization: Bearer …` must carry.
    #[serde(flatten)]
    pub token: SecretSetting<Token>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A TLS listener beside the plain one: `{ listen, cert, key }`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// A second address for `/metrics`, `/admin/…` and the health endpoints; when set, the
    /// index port answers 404 for the first two. Default: none (all on `listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// Take the request id from an incoming `X-Request-Id` (only when every request reaches
    /// pipgate through a proxy that sets it). Default `false`: pipgate makes its own.
    #[serde(default)]
    pub trust_request_id: bool,
    /// Largest upstream index page accepted, in bytes. Default 64 MiB (PyPI's largest pages are
    /// a few MiB).
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: u64,
    /// Most requests served at once; more wait. Default 1024.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// How long in-flight requests may finish after a shutdown signal. Default `30s`.
    #[serde(default = "default_shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open. Default `30s`.
    #[serde(default = "default_header_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    /// Largest request line plus headers, in bytes. Default `65536`.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request headers. Default `100`.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Longest request path plus query, in bytes; longer ones get 414. Default `8192`.
    #[serde(default = "default_max_url_bytes")]
    pub max_url_bytes: usize,
    /// Most connections open at once; more wait to be accepted. Default `10000`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection. Default `100`.
    #[serde(default = "default_max_streams")]
    pub max_streams_per_connection: u32,
    /// Deadline for a whole request up to its response headers (a body may stream longer).
    /// Default `5m`: a range request on a cold file waits for the whole file.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            admin_listen: None,
            tls: None,
            trust_request_id: false,
            max_page_bytes: default_max_page_bytes(),
            max_concurrent_requests: default_max_concurrent_requests(),
            shutdown_grace: default_shutdown_grace(),
            request_timeout: default_request_timeout(),
            header_read_timeout: default_header_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_url_bytes: default_max_url_bytes(),
            max_connections: default_max_connections(),
            max_streams_per_connection: default_max_streams(),
        }
    }
}

/// `[server.tls]`: HTTPS (HTTP/1.1 and HTTP/2 by ALPN) on its own address, with a certificate
/// chain and key from PEM files that are re-read when they change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_page_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_concurrent_requests() -> usize {
    1024
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_url_bytes() -> usize {
    8192
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_streams() -> u32 {
    100
}

/// `[cache]`: index pages in memory and on disk, artifacts on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Where pages and files are kept. Default: `$XDG_CACHE_HOME/pipgate`, else
    /// `$HOME/.cache/pipgate`, else `pipgate` in the system's temporary directory; the loader
    /// fills the default in before the config is read, so it is always set here.
    pub dir: PathBuf,
    /// Disk space for cached files; least recently used ones go first. Default `10GiB`.
    #[serde(default = "default_max_size", with = "byte_size")]
    pub max_size: u64,
    /// Memory for index pages (parsed and rendered). Default `256MiB`.
    #[serde(default = "default_memory_size", with = "byte_size")]
    pub memory_max_size: u64,
    /// Memory for wheel metadata that pipgate reads out of wheels (see
    /// `upstream[].synthesize_metadata`); it is kept on disk too. Default `8MiB`.
    #[serde(default = "default_metadata_memory_size", with = "byte_size")]
    pub metadata_memory_size: u64,
    /// How long an index page is fresh. Default `10m`.
    #[serde(default = "default_index_ttl", with = "duration")]
    pub index_ttl: Duration,
    /// How long past `index_ttl` a page may still be served while its upstream fails (and,
    /// within it, served at once while a refresh runs). Default `24h`.
    #[serde(default = "default_max_stale", with = "duration")]
    pub max_stale: Duration,
    /// Least time between two upstream revalidations of one page that clients force with
    /// `Cache-Control: max-age=0` (pip sends it on every request). Default `30s`.
    #[serde(default = "default_revalidate_interval", with = "duration")]
    pub revalidate_interval: Duration,
    /// How long an upstream's 404 for a project is remembered. Default `1m`.
    #[serde(default = "default_negative_ttl", with = "duration")]
    pub negative_ttl: Duration,
    /// `Cache-Control: max-age` sent to clients with fresh index pages. Default `60s`.
    #[serde(default = "default_client_max_age", with = "duration")]
    pub client_max_age: Duration,
    /// How many pipgate processes may share `dir`, each in a `slot-N` directory of its own
    /// (runner sidecars on one node). Default `1`: `dir` itself, for one process.
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// How long a start waits for a free cache directory (slot) held by another pipgate, as
    /// in a rolling update on one volume. Default `60s`.
    #[serde(default = "default_lock_wait", with = "duration")]
    pub lock_wait: Duration,
    /// `[cache.shared]`: a second tier on object storage that replicas and runner sidecars
    /// share. Default: none (local disk only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedStoreConfig>,
}

/// Which object store holds the shared tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedStoreKind {
    /// Azure Blob Storage (or Azurite).
    Azure,
    /// Amazon S3 or an S3-compatible store.
    S3,
}

/// The Entra scope of Azure Storage.
pub const AZURE_STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// `[cache.shared]`: verified files (and, with `pages`, parsed index pages) on object storage,
/// content-addressed under `prefix`, so every replica and sidecar fills from it before asking
/// an upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedStoreConfig {
    pub kind: SharedStoreKind,
    /// The Azure container, or the S3 bucket.
    pub container: String,
    /// The Azure storage account (required for `azure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The store's URL. Default: `https://{account}.blob.core.windows.net` for Azure, AWS's
    /// endpoint for `region` for S3. Azurite: `http://127.0.0.1:10000/devstoreaccount1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    /// The S3 region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Key prefix inside the container, so one container can serve several pipgate fleets.
    /// Default `pipgate`.
    #[serde(default = "default_shared_prefix")]
    pub prefix: String,
    /// Longest a client request waits for the store to start answering before the file is
    /// fetched from the upstream instead. Default `2s`.
    #[serde(default = "default_shared_wait", with = "duration")]
    pub wait: Duration,
    /// While the store is failing, how often it is tried again. Default `30s`.
    #[serde(default = "default_shared_retry", with = "duration")]
    pub retry_interval: Duration,
    /// Share parsed index pages too, so a new replica can serve (stale) pages while an
    /// upstream is down. Default `false`.
    #[serde(default)]
    pub pages: bool,
    /// An Azure identity, as for an upstream (`azure = "workload-identity"`, …); its scope
    /// defaults to Azure Storage's.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_azure_auth")]
    pub azure: Option<AzureAuthConfig>,
    /// Azure: a file holding the storage account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_file: Option<PathBuf>,
    /// Azure: a file holding a SAS token (`sv=…&sig=…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_file: Option<PathBuf>,
    /// S3: files holding static keys. Without them, the standard AWS chain is used
    /// (environment, web identity as IRSA sets it up, container and instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
}

fn default_shared_prefix() -> String {
    "pipgate".to_owned()
}
fn default_shared_wait() -> Duration {
    Duration::from_secs(2)
}
fn default_shared_retry() -> Duration {
    Duration::from_secs(30)
}

fn some_azure_auth<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<AzureAuthConfig>, D::Error> {
    azure_auth(deserializer).map(Some)
}

fn default_lock_wait() -> Duration {
    Duration::from_secs(60)
}

fn default_metadata_memory_size() -> u64 {
    8 << 20
}

fn default_slots() -> usize {
    1
}

fn default_max_size() -> u64 {
    10 << 30
}
fn default_memory_size() -> u64 {
    256 << 20
}
fn default_index_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_revalidate_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_client_max_age() -> Duration {
    Duration::from_secs(60)
}

/// `[[upstream]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Short name used in logs, errors, metrics and routes: lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// The index root, ending in `/simple/` or similar; a missing trailing `/` is added.
    pub url: Url,
    /// How pipgate authenticates to this upstream. Default: no credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Deadline for connecting. Default `10s`.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Deadline for an index page, and for the headers and each read of a file. Default `30s`.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// PEM file of CA certificates trusted for this upstream, on top of `egress.ca_file` and
    /// the platform's roots. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Keep the names this upstream has owned from moving to a lower upstream. Default `true`.
    #[serde(default = "default_true")]
    pub hold: bool,
    /// Probe this upstream's root and distrust its 404s while it is broken. Default: on for an
    /// upstream with `auth` (a private feed), off otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<bool>,
    /// Where this upstream takes uploads (the legacy upload API), on its own origin, e.g. an
    /// Azure feed's `…/_packaging/{feed}/pypi/upload/`. Default: none (no publishing here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<Url>,
    /// Offer PEP 658 metadata for wheels this upstream lists without it, read out of the wheel
    /// (by range requests, or from the cached wheel). Default `true`; metadata the upstream
    /// offers itself is passed through either way.
    #[serde(default = "default_true")]
    pub synthesize_metadata: bool,
}

impl UpstreamConfig {
    pub fn is_health_checked(&self) -> bool {
        self.health_check.unwrap_or(self.auth.is_some())
    }
}

fn default_true() -> bool {
    true
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `auth = { basic = { … } }`, `auth = { bearer = { … } }` or `auth = { azure = … }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    Basic(BasicAuthConfig),
    Bearer(BearerAuthConfig),
    Azure(#[serde(deserialize_with = "azure_auth")] AzureAuthConfig),
}

/// The Entra scope of Azure DevOps, which Artifacts feeds accept.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// Which Azure identity pipgate signs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureIdentity {
    /// The VM's or App Service's managed identity; `client_id` picks a user-assigned one.
    ManagedIdentity,
    /// AKS workload identity: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`
    /// as the webhook sets them (or `client_id`/`tenant_id` here).
    WorkloadIdentity,
    /// An app registration with a client secret or a certificate.
    ServicePrincipal,
    /// `az login` on a developer's machine.
    AzureCli,
}

/// How the Entra token is presented to the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPresentation {
    /// Basic auth with `username` and the token as password (what Azure Artifacts expects).
    #[default]
    Basic,
    Bearer,
}

/// `auth = { azure = "workload-identity" }`, or a table with `identity` and options.
/// (Unknown keys are refused by the flattened `client_secret` setting.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureAuthConfig {
    pub identity: AzureIdentity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `client_secret`, `client_secret_env` or `client_secret_file`, for a service principal.
    #[serde(flatten)]
    pub client_secret: SecretSetting<ClientSecret>,
    /// PEM file with the service principal's certificate and its RSA private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<PathBuf>,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub present_as: TokenPresentation,
    #[serde(default = "default_username")]
    pub username: String,
}

impl AzureAuthConfig {
    /// The defaults for `identity`, as the short form `azure = "…"` means.
    fn for_identity(identity: AzureIdentity) -> Self {
        AzureAuthConfig {
            identity,
            client_id: None,
            tenant_id: None,
            client_secret: SecretSetting::new(None),
            certificate_file: None,
            scope: default_scope(),
            present_as: TokenPresentation::default(),
            username: default_username(),
        }
    }
}

/// Reads `azure = "kind"` or `azure = { identity = "kind", … }`. A visitor rather than an
/// untagged enum, so that a mistake inside the table is reported as itself, not as "neither".
fn azure_auth<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AzureAuthConfig, D::Error> {
    struct AzureVisitor;
    impl<'de> serde::de::Visitor<'de> for AzureVisitor {
        type Value = AzureAuthConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an identity kind (\"managed-identity\", \"workload-identity\", \"service-principal\", \"azure-cli\") or a table with `identity` and its options")
        }
        fn visit_str<E: serde::de::Error>(self, kind: &str) -> Result<AzureAuthConfig, E> {
            let identity = AzureIdentity::deserialize(serde::de::value::StrDeserializer::<E>::new(kind))?;
            Ok(AzureAuthConfig::for_identity(identity))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<AzureAuthConfig, A::Error> {
            AzureAuthConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_any(AzureVisitor)
}

fn default_scope() -> String {
    AZURE_DEVOPS_SCOPE.to_owned()
}

/// HTTP Basic: a username and a password from exactly one of `password`, `password_env`,
/// `password_file`. An Azure DevOps PAT goes here, with any username.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BasicAuthConfig {
    #[serde(default = "default_username")]
    pub username: String,
    #[serde(flatten)]
    pub password: RequiredSecret<Password>,
}

fn default_username() -> String {
    "pipgate".to_owned()
}

/// A bearer token from exactly one of `token`, `token_env`, `token_file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BearerAuthConfig {
    #[serde(flatten)]
    pub token: RequiredSecret<Token>,
}

/// `[[route]]`: projects matching any pattern resolve only through `upstream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Project names or patterns with `*` (any run of characters), matched after PEP 503
    /// normalization: `acme-*` also covers `Acme_Core`.
    pub projects: Vec<String>,
    pub upstream: String,
    /// The position of `upstream` in the upstream list, found when the config loads.
    #[serde(skip)]
    pub(super) upstream_index: usize,
}

impl Config {
    /// Each route with the position of its upstream in `upstreams`.
    pub fn route_targets(&self) -> impl Iterator<Item = (&RouteConfig, usize)> {
        self.routes.iter().map(|route| (route, route.upstream_index))
    }
}

/// Sizes as people write them: `20GiB`, `512MiB`, `64kB`, or a plain number of bytes.
mod byte_size {
    use super::*;

    const UNITS: [(&str, u64); 9] = [
        ("tib", 1 << 40),
        ("gib", 1 << 30),
        ("mib", 1 << 20),
        ("kib", 1 << 10),
        ("tb", 1_000_000_000_000),
        ("gb", 1_000_000_000),
        ("mb", 1_000_000),
        ("kb", 1_000),
        ("b", 1),
    ];

    pub fn parse(raw: &str) -> Option<u64> {
        let lower = raw.trim().to_ascii_lowercase();
        let (number, factor) = UNITS
            .iter()
            .find_map(|(unit, factor)| lower.strip_suffix(unit).map(|n| (n.trim(), *factor)))
            .unwrap_or((lower.as_str(), 1));
        number.parse::<u64>().ok()?.checked_mul(factor)
    }

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => Ok(n),
            Raw::Text(text) => parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a size; write it like \"20GiB\" or \"512MiB\""
                ))
            }),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn sizes() {
            assert_eq!(super::parse("20GiB"), Some(20 << 30));
            assert_eq!(super::parse("512 MiB"), Some(512 << 20));
            assert_eq!(super::parse("64kB"), Some(64_000));
            assert_eq!(super::parse("1234"), Some(1234));
            assert_eq!(super::parse("lots"), None);
        }
    }
}

/// Durations as people write them: `30s`, `10m`, `1h 30m`.
mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(deserializer)?;
        humantime::parse_duration(&raw).map_err(|e| {
            serde::de::Error::custom(format!(
                "{raw:?} is not a duration ({e}); write it like \"30s\" or \"10m\""
            ))
        })
    }
}
