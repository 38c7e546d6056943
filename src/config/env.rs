//! The process environment, read through a trait so tests never mutate the real one.
//!
//! Two kinds of variables reach the config:
//! - overlays: `PIPGATE_{KEY}` sets any config key; nested keys join with `__` and array
//!   elements are numbered (`PIPGATE_SERVER__LISTEN`, `PIPGATE_UPSTREAM__0__URL`). A value that
//!   parses as a TOML value (a number, a boolean, an inline array or table) is taken as such,
//!   anything else as a string, so `PIPGATE_UPSTREAM='[{name = "pypi", url = "…"}]'` replaces a
//!   whole list.
//! - secret sources named by the config itself (`password_env = "CORP_PAT"`).

use std::collections::HashMap;

/// The prefix of config overlay variables.
pub const PREFIX: &str = "PIPGATE_";

/// Variables that belong to the CLI rather than to config keys.
const NOT_KEYS: [&str; 3] = ["PIPGATE_CONFIG", "PIPGATE_LOG", "PIPGATE_LOG_FORMAT"];

/// Read access to environment variables.
pub trait Environment: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable, for the `PIPGATE_` overlay scan.
    fn all(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

/// A fixed set of variables, for tests.
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        MapEnv(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }
}

impl Environment for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One overlay: the key path it sets and the variable it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Overlay {
    pub variable: String,
    pub path: Vec<String>,
    /// The raw value, which may be a secret: never shown by `Debug`.
    pub value: String,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("variable", &self.variable)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The `PIPGATE_*` overlays, sorted so that lists fill in index order.
pub fn overlays(env: &dyn Environment) -> Vec<Overlay> {
    let mut found: Vec<Overlay> = env
        .all()
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && !NOT_KEYS.contains(&name.as_str()))
        .map(|(variable, value)| {
            let path = variable[PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
            Overlay { variable, path, value }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Renders a key path as a person writes it: `upstream[0].auth.basic.password_env`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_names_become_key_paths() {
        let env = MapEnv::new([
            ("PIPGATE_UPSTREAM__0__AUTH__BASIC__PASSWORD_ENV", "X"),
            ("PIPGATE_CONFIG", "/etc/pipgate.toml"),
            ("HOME", "/root"),
        ]);
        let found = overlays(&env);
        assert_eq!(found.len(), 1);
        assert_eq!(display_path(&found[0].path), "upstream[0].auth.basic.password_env");
    }
}
