//! The object store behind the shared tier, built from `[cache.shared]` with the credentials
//! platform teams already have: for Azure Blob Storage an Entra identity (pipgate's own Azure
//! identity code, scope `https://storage.azure.com/.default`), an account key or a SAS token
//! from a secret file; for S3 the standard AWS chain (environment, IRSA web identity, container
//! and instance metadata) or static keys from secret files. Secret files are re-read when they
//! change, so a rotated key takes effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::azure::{AzureAccessKey, AzureCredential, MicrosoftAzureBuilder};
use object_store::{ClientOptions, CredentialProvider, ObjectStore, RetryConfig};

use crate::auth::{Credential, SecretValue};
use crate::config::{Environment, SecretSource, SharedStoreConfig, SharedStoreKind};
use crate::metrics::Metrics;

/// The name the store's Azure identity refreshes its tokens under (`pipgate_token_*` metrics).
pub const STORE_CREDENTIAL_NAME: &str = "shared-store";

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Credential(#[from] crate::auth::AuthError),
    #[error("{0}")]
    Store(#[from] object_store::Error),
}

/// Builds the store `config` names. Requests time out after `timeout`; the store's own retries
/// are kept short, since a failing store is stepped around (see the tier), not waited for.
pub fn build(
    config: &SharedStoreConfig,
    timeout: Duration,
    env: &dyn Environment,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let options =
        ClientOptions::new().with_timeout(timeout).with_connect_timeout(timeout.min(Duration::from_secs(5)));
    let retry = RetryConfig { max_retries: 1, retry_timeout: timeout, ..RetryConfig::default() };
    let allow_http = config.url.as_ref().is_some_and(|u| u.scheme() == "http");
    let file = |path: &std::path::PathBuf| SecretValue::new(SecretSource::File(path.clone()), env);
    match config.kind {
        SharedStoreKind::Azure => {
            let mut builder = MicrosoftAzureBuilder::new()
                .with_account(config.account.clone().unwrap_or_default())
                .with_container_name(&config.container)
                .with_client_options(options)
                .with_retry(retry)
                .with_allow_http(allow_http);
            if let Some(url) = &config.url {
                builder = builder.with_endpoint(url.as_str().trim_end_matches('/').to_owned());
            }
            let provider: Arc<dyn CredentialProvider<Credential = AzureCredential>> =
                if let Some(azure) = &config.azure {
                    let identity =
                        crate::auth::AzureCredential::start(STORE_CREDENTIAL_NAME, azure, env, metrics)?;
                    Arc::new(EntraToken(Arc::new(identity)))
                } else if let Some(path) = &config.account_key_file {
                    Arc::new(AccountKey(file(path)?))
                } else if let Some(path) = &config.sas_file {
                    Arc::new(SasToken(file(path)?))
                } else {
                    unreachable!("the loader requires one Azure credential")
                };
            Ok(Arc::new(builder.with_credentials(provider).build()?))
        }
        SharedStoreKind::S3 => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&config.container)
                .with_client_options(options)
                .with_retry(retry)
                .with_allow_http(allow_http);
            if let Some(region) = config
                .region
                .clone()
                .or_else(|| env.var("AWS_REGION"))
                .or_else(|| env.var("AWS_DEFAULT_REGION"))
            {
                builder = builder.with_region(region);
            }
            if let Some(url) = &config.url {
                builder = builder.with_endpoint(url.as_str().trim_end_matches('/'));
            }
            if let (Some(id), Some(secret)) = (&config.access_key_id_file, &config.secret_access_key_file) {
                builder =
                    builder.with_credentials(Arc::new(StaticKeys { id: file(id)?, secret: file(secret)? }));
            }
            Ok(Arc::new(builder.build()?))
        }
    }
}

fn credential_error(error: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic { store: "shared", source: error.to_string().into() }
}

/// An Entra token from pipgate's own refreshing Azure identity.
#[derive(Debug)]
struct EntraToken(Arc<dyn Credential>);

#[async_trait::async_trait]
impl CredentialProvider for EntraToken {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let header = self.0.authorization().await.map_err(credential_error)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| credential_error("the Azure identity did not give a bearer token"))?;
        Ok(Arc::new(AzureCredential::BearerToken(token.to_owned())))
    }
}

/// A storage account key from a secret file.
#[derive(Debug)]
struct AccountKey(SecretValue);

#[async_trait::async_trait]
impl CredentialProvider for AccountKey {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let key = self.0.current().map_err(credential_error)?;
        let key = AzureAccessKey::try_new(key.expose())
            .map_err(|_| credential_error("the account key is not base64"))?;
        Ok(Arc::new(AzureCredential::AccessKey(key)))
    }
}

/// A SAS token (`sv=…&sig=…`, with or without a leading `?`) from a secret file.
#[derive(Debug)]
struct SasToken(SecretValue);

#[async_trait::async_trait]
impl CredentialProvider for SasToken {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let sas = self.0.current().map_err(credential_error)?;
        let pairs = url::form_urlencoded::parse(sas.expose().trim_start_matches('?').as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Arc::new(AzureCredential::SASToken(pairs)))
    }
}

/// Static S3 keys from two secret files.
#[derive(Debug)]
struct StaticKeys {
    id: SecretValue,
    secret: SecretValue,
}

#[async_trait::async_trait]
impl CredentialProvider for StaticKeys {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(Arc::new(AwsCredential {
            key_id: self.id.current().map_err(credential_error)?.expose().to_owned(),
            secret_key: self.secret.current().map_err(credential_error)?.expose().to_owned(),
            token: None,
        }))
    }
}
