//! Azure identities (managed identity, workload identity, service principal, Azure CLI) as
//! upstream credentials, through the `azure_identity` crate.
//!
//! Each fetch builds a new `azure_identity` credential, so it never answers from the crate's own
//! token cache: pipgate decides when to refresh (see [`super::refresh`]), including right after
//! a feed rejected a token that the crate would still consider valid. The crate's own retries
//! are off; the refresh loop retries with backoff. The token is presented as Basic auth with
//! any username (what Azure Artifacts expects) or as a Bearer token.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use super::certificate::CertificateAssertion;
use super::refresh::{FreshToken, RefreshingToken, TokenSource};
use super::static_kinds::sensitive;
use super::{AuthError, BoxFuture, Credential, SecretValue};
use crate::config::{AzureAuthConfig, AzureIdentity, Environment, TokenPresentation};

/// An upstream credential backed by an Entra token that refreshes itself.
#[derive(Debug)]
pub struct AzureCredential {
    token: RefreshingToken,
    present_as: TokenPresentation,
    username: String,
}

impl AzureCredential {
    /// Starts fetching tokens for `upstream` right away (readiness waits for the first).
    pub fn start(
        upstream: &str,
        config: &AzureAuthConfig,
        env: &dyn Environment,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, AuthError> {
        let client_secret = match config.client_secret.source() {
            Some(source) => Some(SecretValue::new(source.clone(), env)?),
            None => None,
        };
        let authority_host = env
            .var("AZURE_AUTHORITY_HOST")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "https://login.microsoftonline.com".to_owned());
        let source = Arc::new(AzureTokenSource { config: config.clone(), client_secret, authority_host });
        Ok(AzureCredential {
            token: RefreshingToken::spawn(upstream.to_owned(), source, metrics),
            present_as: config.present_as,
            username: config.username.clone(),
        })
    }
}

impl Credential for AzureCredential {
    fn authorization(&self) -> BoxFuture<'_, Result<HeaderValue, AuthError>> {
        Box::pin(async move {
            let token = self.token.current().await?;
            match self.present_as {
                TokenPresentation::Basic => {
                    let encoded = STANDARD.encode(format!("{}:{}", self.username, token.value.expose()));
                    sensitive(format!("Basic {encoded}"))
                }
                TokenPresentation::Bearer => sensitive(format!("Bearer {}", token.value.expose())),
            }
        })
    }

    fn rejected(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.token.replace_rejected())
    }

    fn is_ready(&self) -> bool {
        self.token.is_ready()
    }
}

struct AzureTokenSource {
    config: AzureAuthConfig,
    client_secret: Option<SecretValue>,
    /// Where Entra lives (`AZURE_AUTHORITY_HOST`, as azure_identity reads it), for the audience
    /// of certificate assertions.
    authority_host: String,
}

impl AzureTokenSource {
    fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        let client_options = || ClientOptions { retry: RetryOptions::none(), ..Default::default() };
        let config = &self.config;
        let built: azure_core::Result<Arc<dyn TokenCredential>> =
            match (config.identity, &config.certificate_file) {
                (AzureIdentity::ManagedIdentity, _) => {
                    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                        user_assigned_id: config.client_id.clone().map(UserAssignedId::ClientId),
                        client_options: client_options(),
                    }))
                    .map(|c| c as Arc<dyn TokenCredential>)
                }
                (AzureIdentity::WorkloadIdentity, _) => {
                    WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                        credential_options: ClientAssertionCredentialOptions {
                            client_options: client_options(),
                        },
                        client_id: config.client_id.clone(),
                        tenant_id: config.tenant_id.clone(),
                        ..Default::default()
                    }))
                    .map(|c| c as Arc<dyn TokenCredential>)
                }
                (AzureIdentity::ServicePrincipal, Some(certificate_file)) => {
                    let assertion = CertificateAssertion::new(
                        config.client_id.clone().unwrap_or_default(),
                        &self.authority_host,
                        config.tenant_id.as_deref().unwrap_or_default(),
                        certificate_file.clone(),
                    );
                    ClientAssertionCredential::new(
                        config.tenant_id.clone().unwrap_or_default(),
                        config.client_id.clone().unwrap_or_default(),
                        assertion,
                        Some(ClientAssertionCredentialOptions { client_options: client_options() }),
                    )
                    .map(|c| c as Arc<dyn TokenCredential>)
                }
                (AzureIdentity::ServicePrincipal, None) => {
                    let secret = self.client_secret.as_ref().ok_or("no client secret configured")?;
                    let secret = secret.current().map_err(|e| e.to_string())?;
                    ClientSecretCredential::new(
                        config.tenant_id.as_deref().unwrap_or_default(),
                        config.client_id.clone().unwrap_or_default(),
                        azure_core::credentials::Secret::new(secret.expose().to_owned()),
                        Some(ClientSecretCredentialOptions { client_options: client_options() }),
                    )
                    .map(|c| c as Arc<dyn TokenCredential>)
                }
                (AzureIdentity::AzureCli, _) => AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    tenant_id: config.tenant_id.clone(),
                    ..Default::default()
                }))
                .map(|c| c as Arc<dyn TokenCredential>),
            };
        built.map_err(|e| crate::error_chain::display_chain(&e))
    }
}

impl TokenSource for AzureTokenSource {
    fn fetch(&self) -> BoxFuture<'_, Result<FreshToken, String>> {
        Box::pin(async move {
            let credential = self.credential()?;
            let token = credential
                .get_token(&[self.config.scope.as_str()], None)
                .await
                .map_err(|e| crate::error_chain::display_chain(&e))?;
            Ok(FreshToken {
                value: crate::secret::Secret::new(token.token.secret()),
                expires_at: std::time::SystemTime::from(token.expires_on),
            })
        })
    }
}
