//! Reading, overlaying, deserializing and checking the config.

use std::fmt;
use std::path::{Path, PathBuf};

use super::env::{self, Environment, Overlay};
use super::model::{
    AZURE_DEVOPS_SCOPE, AZURE_STORAGE_SCOPE, AccessConfig, AuthConfig, AzureAuthConfig, AzureIdentity,
    Config, PublishConfig, ReadList, SharedStoreConfig, SharedStoreKind, TokenPresentation, UpstreamConfig,
    UpstreamSet,
};
use super::secret::{INLINE_SECRET_KEYS, SecretSource};
use crate::pypi::name::normalize_pattern;

/// The config pipgate runs when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Where the config text comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("the embedded default config"),
        }
    }
}

/// A config that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or the environment variable that set the key.
    pub origin: String,
    /// The key, as `upstream[0].url`, when the error has one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: key `{key}`: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads the config from `source`, applies `PIPGATE_*` overlays from `env`, and checks it.
pub fn load(source: &ConfigSource, env: &dyn Environment) -> Result<Config, ConfigError> {
    let text = match source {
        ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: source.to_string(),
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?,
        ConfigSource::Embedded => DEFAULT_CONFIG.to_owned(),
    };
    load_text(&text, source, env)
}

/// Reads config `text` as if it came from `source` (which error messages name), applies
/// `PIPGATE_*` overlays from `env`, and checks it.
pub fn load_text(text: &str, source: &ConfigSource, env: &dyn Environment) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
        origin: source.to_string(),
        key: None,
        message: format!("not valid TOML: {}", e.to_string().trim_end()),
    })?;
    let overlays = env::overlays(env);
    for overlay in &overlays {
        let secret = overlay.path.last().is_some_and(|key| INLINE_SECRET_KEYS.contains(&key.as_str()));
        let value =
            if secret { toml::Value::String(overlay.value.clone()) } else { overlay_value(&overlay.value) };
        set_path(&mut table, &overlay.path, value).map_err(|message| ConfigError {
            origin: format!("environment variable {}", overlay.variable),
            key: Some(env::display_path(&overlay.path)),
            message,
        })?;
    }
    fill_default_cache_dir(&mut table, env);
    let errors = Errors { source, overlays: &overlays };
    let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        errors.at(&key, e.into_inner().to_string())
    })?;
    check(&mut config, env, &errors)?;
    Ok(config)
}

/// Builds errors that name the environment variable when one set the key, else the file.
struct Errors<'a> {
    source: &'a ConfigSource,
    overlays: &'a [Overlay],
}

impl Errors<'_> {
    fn at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let from_env = self.overlays.iter().rev().find(|o| {
            let set = env::display_path(&o.path);
            key == set || key.starts_with(&format!("{set}.")) || key.starts_with(&format!("{set}["))
        });
        ConfigError {
            origin: match from_env {
                Some(overlay) => format!("environment variable {} (over {})", overlay.variable, self.source),
                None => self.source.to_string(),
            },
            key: Some(key.to_owned()),
            message: message.into().trim_end().to_owned(),
        }
    }
}

/// Meaning checks that types alone cannot make, plus small normalizations.
fn check(config: &mut Config, env: &dyn Environment, errors: &Errors<'_>) -> Result<(), ConfigError> {
    if config.upstreams.is_empty() {
        return Err(errors.at("upstream", "at least one [[upstream]] is required"));
    }
    for (i, upstream) in config.upstreams.iter_mut().enumerate() {
        let key = |field: &str| format!("upstream[{i}].{field}");
        let name_ok = !upstream.name.is_empty()
            && upstream
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(errors.at(
                &key("name"),
                format!(
                    "{:?} is not a valid upstream name: use lowercase letters, digits, '-' and '_'",
                    upstream.name
                ),
            ));
        }
        let url = &mut upstream.url;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(errors.at(
                &key("url"),
                format!("scheme {:?} is not supported: use https (or http)", url.scheme()),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Never echo the URL: it holds a credential.
            return Err(
                errors.at(&key("url"), "the URL holds a credential; remove it and set `auth` instead")
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(errors.at(&key("url"), "an index URL takes no query string or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        if let Some(auth) = &upstream.auth {
            check_auth(auth, env, &key("auth"), errors)?;
        }
    }
    for (i, a) in config.upstreams.iter().enumerate() {
        if config.upstreams[..i].iter().any(|b| b.name == a.name) {
            return Err(errors
                .at(&format!("upstream[{i}].name"), format!("upstream name {:?} is used twice", a.name)));
        }
    }
    for (i, route) in config.routes.iter_mut().enumerate() {
        route.upstream_index =
            named_upstream(&config.upstreams, &route.upstream, &format!("route[{i}].upstream"), errors)?;
        if route.projects.is_empty() {
            return Err(
                errors.at(&format!("route[{i}].projects"), "a route needs at least one project pattern")
            );
        }
        for (j, pattern) in route.projects.iter_mut().enumerate() {
            *pattern = normalize_pattern(pattern)
                .map_err(|e| errors.at(&format!("route[{i}].projects[{j}]"), format!("{pattern:?}: {e}")))?;
        }
    }
    for (i, release) in config.releases.iter_mut().enumerate() {
        if release.projects.is_empty() {
            return Err(
                errors.at(&format!("release[{i}].projects"), "a release needs at least one project pattern")
            );
        }
        for (j, pattern) in release.projects.iter_mut().enumerate() {
            *pattern = normalize_pattern(pattern).map_err(|e| {
                errors.at(&format!("release[{i}].projects[{j}]"), format!("{pattern:?}: {e}"))
            })?;
        }
    }
    let server = &config.server;
    for (key, value) in [
        ("max_header_bytes", server.max_header_bytes),
        ("max_headers", server.max_headers),
        ("max_url_bytes", server.max_url_bytes),
        ("max_connections", server.max_connections),
        ("max_concurrent_requests", server.max_concurrent_requests),
        ("max_streams_per_connection", server.max_streams_per_connection as usize),
    ] {
        if value == 0 {
            return Err(errors.at(&format!("server.{key}"), "must be at least 1"));
        }
    }
    let ownership = &config.ownership;
    if !(ownership.shadow_checks_per_second > 0.0 && ownership.shadow_checks_per_second.is_finite()) {
        return Err(errors.at("ownership.shadow_checks_per_second", "must be a number above 0"));
    }
    for (key, value) in
        [("health_interval", ownership.health_interval), ("shadow_recheck", ownership.shadow_recheck)]
    {
        if value.is_zero() {
            return Err(errors.at(&format!("ownership.{key}"), "must be longer than 0s"));
        }
    }
    if config.cache.slots == 0 {
        return Err(errors.at("cache.slots", "must be at least 1"));
    }
    if let Some(shared) = config.cache.shared.as_mut() {
        check_shared(shared, env, errors)?;
    }
    if ownership.max_remembered == 0 {
        return Err(errors.at("ownership.max_remembered", "must be at least 1"));
    }
    if let Some(source) = config.admin.token.source() {
        check_secret(source, env, "admin", errors)?;
    }
    if config.upstreams.len() > UpstreamSet::MAX {
        return Err(errors.at("upstream", format!("at most {} upstreams are supported", UpstreamSet::MAX)));
    }
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    if let Some(access) = config.access.as_mut() {
        check_access(access, &names, errors)?;
    }
    for (i, upstream) in config.upstreams.iter().enumerate() {
        if let Some(upload) = &upstream.upload_url {
            let same_origin = upload.scheme() == upstream.url.scheme()
                && upload.host_str() == upstream.url.host_str()
                && upload.port_or_known_default() == upstream.url.port_or_known_default();
            if !same_origin {
                return Err(errors.at(
                    &format!("upstream[{i}].upload_url"),
                    "must be on the upstream's own origin (scheme, host and port): its credential goes there",
                ));
            }
        }
    }
    if let Some(publish) = config.publish.as_mut() {
        if config.access.is_none() {
            return Err(errors.at("publish", "publishing needs client authentication: add [access]"));
        }
        check_publish(publish, &config.upstreams, errors)?;
    }
    Ok(())
}

/// `[cache.shared]`: a container, credentials that fit the kind of store, a usable prefix.
fn check_shared(
    shared: &mut SharedStoreConfig,
    env: &dyn Environment,
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    let key = |field: &str| format!("cache.shared.{field}");
    if shared.container.is_empty() {
        return Err(errors.at(&key("container"), "must name the container (Azure) or bucket (S3)"));
    }
    shared.prefix = shared.prefix.trim_matches('/').to_owned();
    if shared.prefix.is_empty()
        || shared.prefix.split('/').any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(errors.at(&key("prefix"), "must be a key prefix such as \"pipgate\" or \"ci/pipgate\""));
    }
    for (field, value) in [("wait", shared.wait), ("retry_interval", shared.retry_interval)] {
        if value.is_zero() {
            return Err(errors.at(&key(field), "must be longer than 0s"));
        }
    }
    if let Some(url) = &shared.url
        && !matches!(url.scheme(), "http" | "https")
    {
        return Err(errors.at(&key("url"), "must be an http(s) URL"));
    }
    let azure_kinds: Vec<&str> = [
        ("azure", shared.azure.is_some()),
        ("account_key_file", shared.account_key_file.is_some()),
        ("sas_file", shared.sas_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let s3_keys = [shared.access_key_id_file.is_some(), shared.secret_access_key_file.is_some()];
    match shared.kind {
        SharedStoreKind::Azure => {
            if shared.account.as_deref().is_none_or(str::is_empty) {
                return Err(errors.at(&key("account"), "an Azure store needs its storage account"));
            }
            match azure_kinds.as_slice() {
                [_] => {}
                [] => {
                    return Err(errors.at(
                        "cache.shared",
                        "an Azure store needs a credential: azure = \"workload-identity\" (or another identity), account_key_file or sas_file",
                    ));
                }
                many => {
                    return Err(errors.at(
                        "cache.shared",
                        format!("give one Azure credential, not {}", many.join(" and ")),
                    ));
                }
            }
            if s3_keys.contains(&true) {
                return Err(errors.at(&key("access_key_id_file"), "S3 keys do not apply to an Azure store"));
            }
            if let Some(azure) = &shared.azure {
                check_azure(azure, env, &key("azure"), errors)?;
            }
            if let Some(azure) = shared.azure.as_mut()
                && azure.scope == AZURE_DEVOPS_SCOPE
            {
                // The identity's default scope is Azure DevOps'; a store needs Azure Storage's.
                azure.scope = AZURE_STORAGE_SCOPE.to_owned();
                azure.present_as = TokenPresentation::Bearer;
            }
        }
        SharedStoreKind::S3 => {
            if let Some(first) = azure_kinds.first() {
                return Err(errors.at(&key(first), "Azure credentials do not apply to an S3 store"));
            }
            if let Some(region) = &shared.region
                && region.is_empty()
            {
                return Err(errors.at(&key("region"), "must name a region, or be left out"));
            }
            if s3_keys[0] != s3_keys[1] {
                return Err(errors.at(
                    "cache.shared",
                    "give both access_key_id_file and secret_access_key_file, or neither (the AWS chain)",
                ));
            }
        }
    }
    for (field, path) in [
        ("account_key_file", &shared.account_key_file),
        ("sas_file", &shared.sas_file),
        ("access_key_id_file", &shared.access_key_id_file),
        ("secret_access_key_file", &shared.secret_access_key_file),
    ] {
        if let Some(path) = path {
            read_secret_file(path).map_err(|message| errors.at(&key(field), message))?;
        }
    }
    Ok(())
}

/// The position of the upstream called `name`, or an error at `key` that lists the names.
fn named_upstream<U: AsRef<str>>(
    upstreams: &[U],
    name: &str,
    key: &str,
    errors: &Errors<'_>,
) -> Result<usize, ConfigError> {
    upstreams.iter().position(|u| u.as_ref() == name).ok_or_else(|| {
        let names: Vec<&str> = upstreams.iter().map(AsRef::as_ref).collect();
        errors.at(key, format!("no upstream is named {name:?} (known: {})", names.join(", ")))
    })
}

impl AsRef<str> for UpstreamConfig {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// `[publish]`: the default and every rule name an upstream that takes uploads; every rule
/// names who it admits.
fn check_publish(
    publish: &mut PublishConfig,
    upstreams: &[UpstreamConfig],
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    let uploading = |name: &str, key: &str| -> Result<usize, ConfigError> {
        let position = named_upstream(upstreams, name, key, errors)?;
        if upstreams[position].upload_url.is_none() {
            return Err(errors.at(key, format!("upstream {name:?} has no upload_url")));
        }
        Ok(position)
    };
    if let Some(default) = &publish.default {
        publish.default_index = Some(uploading(default, "publish.default")?);
    }
    if publish.rules.is_empty() {
        return Err(
            errors.at("publish.rule", "at least one [[publish.rule]] is required: nobody could publish")
        );
    }
    for (i, rule) in publish.rules.iter_mut().enumerate() {
        let key = |field: &str| format!("publish.rule[{i}].{field}");
        rule.upstream_index = uploading(&rule.upstream, &key("upstream"))?;
        if rule.projects.is_empty() {
            return Err(errors.at(&key("projects"), "a rule needs at least one project pattern"));
        }
        for (j, pattern) in rule.projects.iter_mut().enumerate() {
            *pattern = normalize_pattern(pattern).map_err(|e| {
                errors.at(&format!("publish.rule[{i}].projects[{j}]"), format!("{pattern:?}: {e}"))
            })?;
        }
        if rule.tokens.is_empty() && rule.users.is_empty() && rule.claims.is_empty() {
            return Err(
                errors.at(&format!("publish.rule[{i}]"), "names nobody: give tokens, users or claims")
            );
        }
        if rule.name.is_none() {
            rule.name = Some(format!("rule {i}"));
        }
    }
    Ok(())
}

/// `[access]`: at least one credential kind, read lists that name upstreams, token hashes in
/// their one spelling, readable files, one JWKS source per OIDC rule.
fn check_access(
    access: &mut AccessConfig,
    upstreams: &[String],
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    if access.tokens.is_empty() && access.htpasswd.is_empty() && access.oidc.is_empty() {
        return Err(errors.at(
            "access",
            "names no credential kind: add [[access.token]], [[access.htpasswd]] or [[access.oidc]], or remove [access] to turn client authentication off",
        ));
    }
    access.anonymous_set = upstream_set(&access.anonymous, upstreams, "access.anonymous", errors)?;
    if access.max_failures_per_minute == 0 {
        return Err(errors.at("access.max_failures_per_minute", "must be at least 1"));
    }
    for (i, token) in access.tokens.iter_mut().enumerate() {
        let key = |field: &str| format!("access.token[{i}].{field}");
        if token.name.trim().is_empty() {
            return Err(errors.at(&key("name"), "must not be empty"));
        }
        let hex = token.hash.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(errors.at(
                &key("hash"),
                "must be \"sha256:\" and 64 hex digits, as `pipgate hash-token` prints it (never the token itself)",
            ));
        }
        token.hash = token.hash.to_ascii_lowercase();
        resolve_reads(&mut token.read, upstreams, &key("read"), errors)?;
    }
    for (i, htpasswd) in access.htpasswd.iter_mut().enumerate() {
        let key = |field: &str| format!("access.htpasswd[{i}].{field}");
        std::fs::metadata(&htpasswd.file)
            .map_err(|e| errors.at(&key("file"), format!("cannot read {}: {e}", htpasswd.file.display())))?;
        resolve_reads(&mut htpasswd.read, upstreams, &key("read"), errors)?;
    }
    for (i, oidc) in access.oidc.iter_mut().enumerate() {
        let key = |field: &str| format!("access.oidc[{i}].{field}");
        if oidc.name.trim().is_empty() {
            return Err(errors.at(&key("name"), "must not be empty"));
        }
        if oidc.issuer.is_empty() {
            return Err(errors.at(&key("issuer"), "must not be empty"));
        }
        if oidc.audience.is_empty() || oidc.audience.iter().any(String::is_empty) {
            return Err(errors.at(&key("audience"), "give at least one non-empty audience"));
        }
        match (&oidc.jwks_url, &oidc.jwks_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(
                    errors.at(&format!("access.oidc[{i}]"), "give exactly one of jwks_url or jwks_file")
                );
            }
            (Some(url), None) => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(host)) => host == "localhost",
                    None => false,
                };
                if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                    return Err(errors.at(
                        &key("jwks_url"),
                        "must be https (plain http only on a loopback address): whoever can change the keys can sign in as anyone",
                    ));
                }
            }
            (None, Some(file)) => {
                std::fs::metadata(file).map_err(|e| {
                    errors.at(&key("jwks_file"), format!("cannot read {}: {e}", file.display()))
                })?;
            }
        }
        for (claim, rule) in &oidc.claims {
            if rule.0.is_empty() {
                return Err(
                    errors.at(&format!("access.oidc[{i}].claims.{claim}"), "give at least one pattern")
                );
            }
        }
        resolve_reads(&mut oidc.read, upstreams, &key("read"), errors)?;
    }
    Ok(())
}

fn resolve_reads(
    read: &mut ReadList,
    upstreams: &[String],
    key: &str,
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    read.set = match &read.names {
        Some(names) => upstream_set(names, upstreams, key, errors)?,
        None => UpstreamSet::first(upstreams.len()),
    };
    Ok(())
}

/// The positions of `names` in the upstream list; `*` is every upstream.
fn upstream_set(
    names: &[String],
    upstreams: &[String],
    key: &str,
    errors: &Errors<'_>,
) -> Result<UpstreamSet, ConfigError> {
    let mut set = UpstreamSet::default();
    for (j, name) in names.iter().enumerate() {
        if name == "*" {
            set = set.union(UpstreamSet::first(upstreams.len()));
            continue;
        }
        set = set.with(named_upstream(upstreams, name, &format!("{key}[{j}]"), errors)?);
    }
    Ok(set)
}

fn check_auth(
    auth: &AuthConfig,
    env: &dyn Environment,
    key: &str,
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    match auth {
        AuthConfig::Basic(basic) => {
            check_secret(basic.password.source(), env, &format!("{key}.basic"), errors)
        }
        AuthConfig::Bearer(bearer) => {
            check_secret(bearer.token.source(), env, &format!("{key}.bearer"), errors)
        }
        AuthConfig::Azure(azure) => check_azure(azure, env, &format!("{key}.azure"), errors),
    }
}

/// The one check of a secret setting (that exactly one spelling is given, the deserializer
/// already made sure): it is available now, an env var that is set, a file that reads.
fn check_secret(
    source: &SecretSource,
    env: &dyn Environment,
    key: &str,
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    match source {
        SecretSource::Env(var) if env.var(var).is_none_or(|v| v.is_empty()) => {
            Err(errors.at(key, format!("environment variable {var} is not set or empty")))
        }
        SecretSource::File(path) => read_secret_file(path).map(drop).map_err(|m| errors.at(key, m)),
        _ => Ok(()),
    }
}

fn check_azure(
    azure: &AzureAuthConfig,
    env: &dyn Environment,
    key: &str,
    errors: &Errors<'_>,
) -> Result<(), ConfigError> {
    let secret = azure.client_secret.source();
    if azure.identity != AzureIdentity::ServicePrincipal {
        if secret.is_some() || azure.certificate_file.is_some() {
            return Err(errors
                .at(key, "a client secret or certificate only goes with identity = \"service-principal\""));
        }
        return Ok(());
    }
    for (field, value) in [("tenant_id", &azure.tenant_id), ("client_id", &azure.client_id)] {
        if value.as_deref().is_none_or(str::is_empty) {
            return Err(errors.at(&format!("{key}.{field}"), "required for identity = \"service-principal\""));
        }
    }
    let one_of =
        "give exactly one of client_secret, client_secret_env, client_secret_file or certificate_file";
    match (&azure.certificate_file, secret) {
        (Some(_), Some(_)) | (None, None) => Err(errors.at(key, one_of)),
        (Some(path), None) => std::fs::metadata(path).map(drop).map_err(|e| {
            errors.at(&format!("{key}.certificate_file"), format!("cannot read {}: {e}", path.display()))
        }),
        (None, Some(source)) => check_secret(source, env, key, errors),
    }
}

/// Sets `cache.dir` to its default when neither the file nor an overlay gave one, so the
/// config type always holds a directory.
fn fill_default_cache_dir(table: &mut toml::Table, env: &dyn Environment) {
    let cache = table.entry("cache").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(cache) = cache
        && !cache.contains_key("dir")
    {
        let dir = default_cache_dir(env).to_string_lossy().into_owned();
        cache.insert("dir".to_owned(), toml::Value::String(dir));
    }
}

/// `$XDG_CACHE_HOME/pipgate`, else `$HOME/.cache/pipgate`, else `pipgate` in the system's
/// temporary directory: never inside the working directory, which may be a source checkout.
fn default_cache_dir(env: &dyn Environment) -> PathBuf {
    if let Some(dir) = env.var("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("pipgate");
    }
    if let Some(home) = env.var("HOME").filter(|d| !d.is_empty()) {
        return Path::new(&home).join(".cache/pipgate");
    }
    std::env::temp_dir().join("pipgate")
}

/// Reads a secret file, trimming one trailing newline (as `kubectl create secret` files have).
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// An overlay value: inline arrays and tables, integers and booleans parse as TOML; anything
/// else is a string (quote it, `'"123"'`, to force a string that looks like a number).
fn overlay_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    let looks_typed = trimmed.starts_with(['[', '{', '"', '\''])
        || trimmed == "true"
        || trimmed == "false"
        || trimmed.parse::<i64>().is_ok();
    if looks_typed
        && let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {trimmed}"))
        && let Some(value) = table.remove("v")
    {
        return value;
    }
    toml::Value::String(raw.to_owned())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".to_owned());
    };
    let mut current = toml::Value::Table(std::mem::take(table));
    let result = set_in(&mut current, parents, last, value);
    if let toml::Value::Table(t) = current {
        *table = t;
    }
    result
}

fn set_in(node: &mut toml::Value, parents: &[String], last: &str, value: toml::Value) -> Result<(), String> {
    let Some((segment, rest)) = parents.split_first() else {
        return match node {
            toml::Value::Table(t) => {
                t.insert(last.to_owned(), value);
                Ok(())
            }
            toml::Value::Array(items) => {
                let slot = array_slot(items, last, || value.clone())?;
                *slot = value;
                Ok(())
            }
            _ => Err(format!("cannot set `{last}` inside a value that is not a table or list")),
        };
    };
    let next_is_index = rest.first().map_or(last, String::as_str).bytes().all(|b| b.is_ascii_digit());
    let empty = || {
        if next_is_index { toml::Value::Array(Vec::new()) } else { toml::Value::Table(toml::Table::new()) }
    };
    let child = match node {
        toml::Value::Table(t) => t.entry(segment.clone()).or_insert_with(empty),
        toml::Value::Array(items) => array_slot(items, segment, empty)?,
        _ => {
            return Err(format!("cannot set `{segment}` inside a value that is not a table or list"));
        }
    };
    set_in(child, rest, last, value)
}

/// The element at `index`, appending a new one when `index` is one past the end.
fn array_slot<'a>(
    items: &'a mut Vec<toml::Value>,
    index: &str,
    new: impl FnOnce() -> toml::Value,
) -> Result<&'a mut toml::Value, String> {
    let i: usize = index.parse().map_err(|_| format!("`{index}` is not a list index"))?;
    if i == items.len() {
        items.push(new());
    }
    let len = items.len();
    items.get_mut(i).ok_or_else(|| format!("list index {i} skips past the end (the list has {len} entries)"))
}

#[cfg(test)]
mod tests;
