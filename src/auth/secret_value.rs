//! A secret read from the config, the environment or a file.
//!
//! A file is re-read when its modification time changes, so a Kubernetes secret that is
//! rotated in place takes effect without a restart.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::AuthError;
use crate::config::{Environment, SecretSource};
use crate::secret::Secret;

#[derive(Debug)]
pub enum SecretValue {
    Fixed(Secret),
    File { path: PathBuf, cached: Mutex<Option<(SystemTime, Secret)>> },
}

impl SecretValue {
    /// Resolves `source` now: an env var is read once, a file is checked for readability.
    pub fn new(source: SecretSource, env: &dyn Environment) -> Result<Self, AuthError> {
        let value = match source {
            SecretSource::Inline(secret) => SecretValue::Fixed(secret),
            SecretSource::Env(var) => match env.var(&var) {
                Some(value) if !value.is_empty() => SecretValue::Fixed(Secret::new(value)),
                _ => return Err(AuthError::MissingEnv(var)),
            },
            SecretSource::File(path) => SecretValue::File { path, cached: Mutex::new(None) },
        };
        value.current()?;
        Ok(value)
    }

    /// The value now: for a file, re-read if it changed since the last read.
    pub fn current(&self) -> Result<Secret, AuthError> {
        match self {
            SecretValue::Fixed(secret) => Ok(secret.clone()),
            SecretValue::File { path, cached } => {
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|e| {
                    AuthError::SecretFile(format!("cannot read secret file {}: {e}", path.display()))
                })?;
                let mut cached = cached.lock().expect("secret cache lock");
                if let Some((at, secret)) = cached.as_ref()
                    && *at == modified
                {
                    return Ok(secret.clone());
                }
                let secret =
                    Secret::new(crate::config::read_secret_file(path).map_err(AuthError::SecretFile)?);
                *cached = Some((modified, secret.clone()));
                Ok(secret)
            }
        }
    }
}
