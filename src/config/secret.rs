//! Secret settings: every credential key comes in three spellings, `x` (inline), `x_env` (the
//! name of an environment variable) and `x_file` (a file, re-read when it changes), of which
//! exactly one is given. One type reads all of them ([`SecretSetting`]), with one deserializer
//! and one check, for every kind of credential: basic passwords, bearer tokens, Azure client
//! secrets and whatever comes next.
//!
//! The setting is flattened into its credential's table, so it also sees the table's unknown
//! keys, and rejects them (serde's `deny_unknown_fields` does not combine with `flatten`).
//! Inline values are [`Secret`]s: no error message, `Debug` or serialized form shows them.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::Secret;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    Env(String),
    File(PathBuf),
}

/// The three key names of one secret, and the other keys its table allows (for messages).
pub trait SecretKey {
    /// `[x, x_env, x_file]`.
    const NAMES: [&'static str; 3];
    /// The keys of the surrounding table, named in the "unknown key" message.
    const TABLE_KEYS: &'static [&'static str];
}

macro_rules! secret_key {
    ($(#[$doc:meta])* $ty:ident, $name:literal, [$($other:literal),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty;
        impl SecretKey for $ty {
            const NAMES: [&'static str; 3] = [$name, concat!($name, "_env"), concat!($name, "_file")];
            const TABLE_KEYS: &'static [&'static str] =
                &[$($other,)* $name, concat!($name, "_env"), concat!($name, "_file")];
        }
    };
}

secret_key!(
    /// `password`, `password_env`, `password_file` of `auth.basic`.
    Password, "password", ["username"]
);
secret_key!(
    /// `token`, `token_env`, `token_file` of `auth.bearer`.
    Token, "token", []
);
secret_key!(
    /// `client_secret`, `client_secret_env`, `client_secret_file` of `auth.azure`.
    ClientSecret, "client_secret",
    ["identity", "client_id", "tenant_id", "certificate_file", "scope", "present_as", "username"]
);

/// Every inline secret key: environment overlays for these are always read as strings, so a
/// numeric token never becomes a TOML integer (whose type error would print it).
pub const INLINE_SECRET_KEYS: [&str; 3] = [Password::NAMES[0], Token::NAMES[0], ClientSecret::NAMES[0]];

/// A secret given in at most one of its three spellings, or not at all (an Azure service
/// principal may use a certificate instead; the admin token is optional).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSetting<K> {
    source: Option<SecretSource>,
    key: PhantomData<K>,
}

impl<K> SecretSetting<K> {
    pub fn new(source: Option<SecretSource>) -> Self {
        SecretSetting { source, key: PhantomData }
    }

    pub fn source(&self) -> Option<&SecretSource> {
        self.source.as_ref()
    }
}

impl<K> Default for SecretSetting<K> {
    fn default() -> Self {
        SecretSetting::new(None)
    }
}

impl<K> fmt::Debug for SecretSetting<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Secret`'s own Debug redacts an inline value.
        self.source.fmt(f)
    }
}

/// A secret that must be given: the credential is useless without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredSecret<K> {
    source: SecretSource,
    key: PhantomData<K>,
}

impl<K> RequiredSecret<K> {
    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

/// The one deserializer: reads the flattened table's remaining keys, takes at most one of the
/// three spellings, and refuses anything else.
fn read_source<'de, K: SecretKey, A: MapAccess<'de>>(mut map: A) -> Result<Option<SecretSource>, A::Error> {
    let [inline, env, file] = K::NAMES;
    let mut found: Option<(String, SecretSource)> = None;
    while let Some(key) = map.next_key::<String>()? {
        let source = if key == inline {
            SecretSource::Inline(map.next_value()?)
        } else if key == env {
            SecretSource::Env(map.next_value()?)
        } else if key == file {
            SecretSource::File(map.next_value()?)
        } else {
            return Err(de::Error::unknown_field(&key, K::TABLE_KEYS));
        };
        if let Some((first, _)) = &found {
            return Err(de::Error::custom(format!(
                "`{first}` and `{key}` are both given; give exactly one of {inline}, {env} or {file}"
            )));
        }
        found = Some((key, source));
    }
    Ok(found.map(|(_, source)| source))
}

struct SourceVisitor<K>(PhantomData<K>);

impl<'de, K: SecretKey> Visitor<'de> for SourceVisitor<K> {
    type Value = Option<SecretSource>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [inline, env, file] = K::NAMES;
        write!(f, "one of {inline}, {env} or {file}")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_source::<K, A>(map)
    }
}

impl<'de, K: SecretKey> Deserialize<'de> for SecretSetting<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SourceVisitor::<K>(PhantomData)).map(SecretSetting::new)
    }
}

impl<'de, K: SecretKey> Deserialize<'de> for RequiredSecret<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [inline, env, file] = K::NAMES;
        match deserializer.deserialize_map(SourceVisitor::<K>(PhantomData))? {
            Some(source) => Ok(RequiredSecret { source, key: PhantomData }),
            None => Err(de::Error::custom(format!("give exactly one of {inline}, {env} or {file}"))),
        }
    }
}

/// Writes the one given spelling (an inline value as `<redacted>`), for `check-config`.
fn serialize_source<K: SecretKey, S: Serializer>(
    source: Option<&SecretSource>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let [inline, env, file] = K::NAMES;
    let mut map = serializer.serialize_map(Some(usize::from(source.is_some())))?;
    match source {
        Some(SecretSource::Inline(secret)) => map.serialize_entry(inline, secret)?,
        Some(SecretSource::Env(var)) => map.serialize_entry(env, var)?,
        Some(SecretSource::File(path)) => map.serialize_entry(file, path)?,
        None => {}
    }
    map.end()
}

impl<K: SecretKey> Serialize for SecretSetting<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_source::<K, S>(self.source.as_ref(), serializer)
    }
}

impl<K: SecretKey> Serialize for RequiredSecret<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_source::<K, S>(Some(&self.source), serializer)
    }
}
