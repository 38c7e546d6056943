//! Typed configuration: a TOML file (or the embedded default) with `PIPGATE_*` overlays.
//!
//! The text is parsed once into types that cannot be wrong (`SocketAddr`, `Url`, `Duration`,
//! normalized route patterns, resolvable secret sources); nothing downstream re-checks strings.
//! Every error names the source (file or environment variable), the key and what was expected.

mod env;
mod load;
mod model;
mod secret;

pub use env::{Environment, MapEnv, ProcessEnv};
pub use load::{ConfigError, ConfigSource, DEFAULT_CONFIG, load, load_text, read_secret_file};
pub use model::{
    AZURE_DEVOPS_SCOPE, AccessConfig, AccessTokenConfig, AdminConfig, AuthConfig, AzureAuthConfig,
    AzureIdentity, BasicAuthConfig, BearerAuthConfig, CacheConfig, ClaimRule, Config, HtpasswdConfig,
    OidcConfig, OwnershipConfig, PublishConfig, PublishRuleConfig, ReadList, ReleaseConfig, RouteConfig,
    ServerConfig, SharedStoreConfig, SharedStoreKind, TokenPresentation, UpstreamConfig, UpstreamSet,
};
pub use secret::{RequiredSecret, SecretKey, SecretSetting, SecretSource};
