//! Credentials that do not expire on their own: HTTP Basic (also Azure DevOps PATs) and a
//! fixed bearer token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use super::{AuthError, BoxFuture, Credential, SecretValue};

#[derive(Debug)]
pub struct BasicCredential {
    username: String,
    password: SecretValue,
}

impl BasicCredential {
    pub fn new(username: String, password: SecretValue) -> Self {
        BasicCredential { username, password }
    }
}

impl Credential for BasicCredential {
    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue, AuthError>> {
        Box::pin(async move {
            let password = self.password.current()?;
            let encoded = STANDARD.encode(format!("{}:{}", self.username, password.expose()));
            sensitive(format!("Basic {encoded}"))
        })
    }
}

#[derive(Debug)]
pub struct BearerCredential {
    token: SecretValue,
}

impl BearerCredential {
    pub fn new(token: SecretValue) -> Self {
        BearerCredential { token }
    }
}

impl Credential for BearerCredential {
    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue, AuthError>> {
        Box::pin(async move { sensitive(format!("Bearer {}", self.token.current()?.expose())) })
    }
}

/// A header value marked sensitive (never indexed by HPACK, shown as `Sensitive` in Debug).
pub fn sensitive(value: String) -> Result<HeaderValue, AuthError> {
    let mut header = HeaderValue::try_from(value).map_err(|_| AuthError::NotAHeader)?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{MapEnv, SecretSource};
    use crate::secret::Secret;

    #[tokio::test]
    async fn basic_encodes_user_and_password() {
        let password = SecretValue::new(SecretSource::Inline(Secret::new("pw")), &MapEnv::default()).unwrap();
        let header = BasicCredential::new("ci".into(), password).authorization().await.unwrap();
        assert_eq!(header, "Basic Y2k6cHc=");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("Y2k6cHc"));
    }

    #[tokio::test]
    async fn bearer_reads_env_once_and_files_on_change() {
        let env = MapEnv::new([("TOKEN", "from-env")]);
        let from_env =
            BearerCredential::new(SecretValue::new(SecretSource::Env("TOKEN".into()), &env).unwrap());
        assert_eq!(from_env.authorization().await.unwrap(), "Bearer from-env");

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "first").unwrap();
        let path = file.path().to_owned();
        let from_file =
            BearerCredential::new(SecretValue::new(SecretSource::File(path.clone()), &env).unwrap());
        assert_eq!(from_file.authorization().await.unwrap(), "Bearer first");
        // A rotated secret: new content and a new modification time.
        std::fs::write(&path, "second\n").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(from_file.authorization().await.unwrap(), "Bearer second");
    }

    #[test]
    fn a_missing_env_var_is_named() {
        let err = SecretValue::new(SecretSource::Env("NOPE".into()), &MapEnv::default()).unwrap_err();
        assert_eq!(err.to_string(), "environment variable NOPE is not set or empty");
    }
}
