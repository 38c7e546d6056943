//! Azure identities that sign in at Entra ID, against a fake token endpoint over HTTPS on
//! 127.0.0.1 (the crate insists on an https authority host), reached through the crate's own
//! configuration: `AZURE_AUTHORITY_HOST`, and `SSL_CERT_FILE` to trust the throwaway CA.
//! - workload identity: the client-assertion flow with the federated token file, as the AKS
//!   webhook sets it up (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`);
//! - service principal with a client secret read from a file (the client-credentials flow);
//! - in both, the feed gets the Entra token, and no secret reaches pipgate's trace-level logs.

use crate::support;

use std::time::Duration;

use support::binary::RunningBinary;
use support::fake_index::{FakeIndex, TokenBook};
use support::identity::IdentityEndpoint;
use support::tls::test_ca;
use support::{get, wheel};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "00000000-1111-2222-3333-444444444444";

struct Setup {
    feed: FakeIndex,
    entra: IdentityEndpoint,
    _ca: support::tls::TestCa,
}

async fn setup() -> (Setup, Vec<(&'static str, String)>) {
    let ca = test_ca();
    let book = TokenBook::default();
    let feed = FakeIndex::start().await;
    feed.require_tokens(book.clone());
    feed.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let entra =
        IdentityEndpoint::start(book, Duration::from_secs(3600), "unused", Some(ca.acceptor.clone())).await;
    let env = vec![
        ("AZURE_AUTHORITY_HOST", format!("https://127.0.0.1:{}/", entra.addr.port())),
        ("SSL_CERT_FILE", ca.ca_file.path().display().to_string()),
    ];
    (Setup { feed, entra, _ca: ca }, env)
}

fn config(feed: &FakeIndex, auth: &str) -> String {
    format!("[[upstream]]\nname = \"corp\"\nurl = \"{}\"\nauth = {{ azure = {auth} }}\n", feed.url())
}

async fn install_page(pipgate: &RunningBinary) {
    pipgate.wait_ready().await;
    let answer = get(&format!("{}/simple/acme-core/", pipgate.base), &[]).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_signs_in_with_the_federated_token() {
    let (s, mut env) = setup().await;
    let federated = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(federated.path(), "canary-federated-jwt").unwrap();
    env.push(("AZURE_CLIENT_ID", CLIENT.to_owned()));
    env.push(("AZURE_TENANT_ID", TENANT.to_owned()));
    env.push(("AZURE_FEDERATED_TOKEN_FILE", federated.path().display().to_string()));
    let pipgate = RunningBinary::start(&config(&s.feed, "\"workload-identity\""), &env).await;
    install_page(&pipgate).await;
    let forms = s.entra.behaviour.forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["client_id"], CLIENT);
    assert_eq!(forms[0]["client_assertion"], "canary-federated-jwt");
    assert_eq!(forms[0]["scope"], "499b84ac-1321-427f-aa17-267ca6975798/.default");
    let logs = pipgate.stop().await;
    for secret in ["canary-federated-jwt", "canary-tok-1"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_principal_signs_in_with_a_client_secret_file() {
    let (s, env) = setup().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "canary-client-secret\n").unwrap();
    let auth = format!(
        "{{ identity = \"service-principal\", tenant_id = \"{TENANT}\", client_id = \"{CLIENT}\", client_secret_file = \"{}\" }}",
        secret.path().display()
    );
    let pipgate = RunningBinary::start(&config(&s.feed, &auth), &env).await;
    install_page(&pipgate).await;
    let forms = s.entra.behaviour.forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["grant_type"], "client_credentials");
    assert_eq!(forms[0]["client_secret"], "canary-client-secret");
    let logs = pipgate.stop().await;
    for secret in ["canary-client-secret", "canary-tok-1"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_principal_signs_in_with_a_certificate() {
    let (s, env) = setup().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["pipgate-sp".to_owned()]).unwrap().self_signed(&key).unwrap();
    let pem_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem_file.path(), format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    let auth = format!(
        "{{ identity = \"service-principal\", tenant_id = \"{TENANT}\", client_id = \"{CLIENT}\", certificate_file = \"{}\" }}",
        pem_file.path().display()
    );
    let authority = env[0].1.clone();
    let pipgate = RunningBinary::start(&config(&s.feed, &auth), &env).await;
    install_page(&pipgate).await;

    let forms = s.entra.behaviour.forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    // The assertion is signed by the certificate's key, for this tenant's token endpoint.
    let assertion = &forms[0]["client_assertion"];
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    let audience = format!("{}/{TENANT}/oauth2/v2.0/token", authority.trim_end_matches('/'));
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT]);
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes()).unwrap();
    let decoded = jsonwebtoken::decode::<serde_json::Value>(assertion, &decoding, &validation)
        .expect("a valid assertion");
    assert_eq!(decoded.claims["sub"], CLIENT);
    let thumbprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.der());
    use base64::Engine;
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumbprint.as_ref());
    assert_eq!(decoded.header.x5t.as_deref(), Some(expected.as_str()));
    let logs = pipgate.stop().await;
    assert!(!logs.contains("PRIVATE KEY") && !logs.contains(assertion.as_str()), "key material was logged");
}
