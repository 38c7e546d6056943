//! OIDC identity tokens as GitHub Actions presents them, against a JWKS served on loopback and
//! tokens signed in the test:
//! - a good token (RS256, the issuer's key, the right audience, claims matching the `*`
//!   rules) reads, as `Bearer` and as the Basic password pip sends from the index URL;
//! - expired, wrong audience, wrong issuer, a bad signature, `alg: none`, and HS256 signed
//!   with the issuer's public key as the secret are 401; a valid token whose claims match no
//!   rule is 403, naming the claim;
//! - a token signed with a key the JWKS did not have when pipgate fetched it makes one
//!   refresh and is then accepted; a flood of made-up `kid`s makes no more than one;
//! - a JWKS file works like a URL;
//! - rules say what each token may read: a feature-branch token that may read only the
//!   public upstream is refused the private project, never given the public name.

use crate::support;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use support::fake_index::FakeIndex;
use support::jwt::{Jwks, SigningKey, sign, sign_as, signing_key};
use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, wheel};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "https://pipgate.acme.example";

/// GitHub Actions' claims for a job in `acme/widgets` on `git_ref`.
fn claims(git_ref: &str) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("repo:acme/widgets:ref:{git_ref}"),
        "repository": "acme/widgets",
        "repository_owner": "acme",
        "ref": git_ref,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct World {
    public: FakeIndex,
    jwks: Jwks,
    key: SigningKey,
    pipgate: Pipgate,
    _private: FakeIndex,
}

/// Two rules for one issuer: main-branch jobs of `acme` read everything; any branch of
/// `acme/widgets` reads the public upstream.
async fn world() -> World {
    let key = signing_key("k1");
    let jwks = Jwks::start(vec![key.jwk.clone()]).await;
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("acme-core", wheel::build("acme-core", "99.0", "attacker"));
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let access = format!(
        r#"
[access]
max_failures_per_minute = 1000

[[access.oidc]]
name = "acme-main"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{url}"
claims = {{ repository_owner = "acme", ref = ["refs/heads/main", "refs/tags/v*"] }}

[[access.oidc]]
name = "widgets-branches"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{url}"
claims = {{ repository = "acme/widgets", ref = "refs/heads/*" }}
read = ["pypi"]
"#,
        url = jwks.url
    );
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], &access);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    eventually("pipgate fetched the JWKS at start", || async { jwks.count() == 1 }).await;
    World { public, jwks, key, pipgate, _private: private }
}

async fn page(w: &World, project: &str, authorization: &str) -> support::Answer {
    get(
        &format!("{}{project}/", w.pipgate.index_url()),
        &[("accept", PIP_ACCEPT), ("authorization", authorization)],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_github_actions_token_whose_claims_match_reads_as_bearer_and_as_a_basic_password() {
    let w = world().await;
    let token = sign(&w.key, &claims("refs/heads/main"));
    let answer = page(&w, "acme-core", &format!("Bearer {token}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.filenames(), ["acme_core-1.0-py3-none-any.whl"]);
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("oidc:{token}")));
    assert_eq!(page(&w, "acme-core", &basic).await.status, 200);
    let tag = sign(&w.key, &claims("refs/tags/v1.2.0"));
    assert_eq!(
        page(&w, "acme-core", &format!("Bearer {tag}")).await.status,
        200,
        "a tag matches refs/tags/v*"
    );
    assert_eq!(w.jwks.count(), 1, "verified with the keys fetched at start");
}

#[tokio::test]
async fn bad_tokens_are_401_and_a_valid_token_no_rule_admits_is_403() {
    let w = world().await;
    let mut expired = claims("refs/heads/main");
    expired["exp"] = serde_json::json!(jsonwebtoken::get_current_timestamp() - 3600);
    let mut audience = claims("refs/heads/main");
    audience["aud"] = serde_json::json!("https://someone-else.example");
    let mut issuer = claims("refs/heads/main");
    issuer["iss"] = serde_json::json!("https://evil.example");
    let good = sign(&w.key, &claims("refs/heads/main"));
    let (head, rest) = good.split_once('.').unwrap();
    let (body, _signature) = rest.split_once('.').unwrap();
    let mut forged_claims = claims("refs/heads/main");
    forged_claims["repository_owner"] = serde_json::json!("acme");
    forged_claims["sub"] = serde_json::json!("repo:mallory/x:ref:refs/heads/main");
    let forged = format!("{head}.{}.{}", b64(forged_claims.to_string().as_bytes()), _signature);
    let none = format!(
        "{}.{body}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"}).to_string().as_bytes())
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("k1".into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims("refs/heads/main"),
        &EncodingKey::from_secret(w.key.public_pem.as_bytes()),
    )
    .unwrap();
    for (token, says) in [
        (sign(&w.key, &expired), "it has expired"),
        (sign(&w.key, &audience), "audience"),
        (sign(&w.key, &issuer), "issuer \"https://evil.example\" is not trusted"),
        (forged, "signature does not verify"),
        (none, "not a valid JWT"),
        (hs256, "algorithm HS256 is not accepted"),
    ] {
        let answer = page(&w, "six", &format!("Bearer {token}")).await;
        assert_eq!(answer.status, 401, "{says}: {}", answer.text());
        assert!(answer.text().contains(says), "{says}: {}", answer.text());
        assert_eq!(answer.header("www-authenticate"), "Basic realm=\"pipgate\"");
    }
    let mut other_repo = claims("refs/heads/main");
    other_repo["repository_owner"] = serde_json::json!("mallory");
    other_repo["repository"] = serde_json::json!("mallory/widgets");
    let answer = page(&w, "six", &format!("Bearer {}", sign(&w.key, &other_repo))).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("its claim repository_owner = mallory does not match (acme) of rule \"acme-main\""),
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn a_branch_token_reads_only_the_public_upstream_and_never_gets_the_public_name() {
    let w = world().await;
    let branch = format!("Bearer {}", sign(&w.key, &claims("refs/heads/feature-x")));
    let refused = page(&w, "acme-core", &branch).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("may not read upstream \"corp\""), "{}", refused.text());
    assert_eq!(w.public.count("/simple/acme-core/"), 0);
    let six = page(&w, "six", &branch).await;
    assert_eq!((six.status.as_u16(), six.header("x-pipgate-upstream")), (200, "pypi"));
}

#[tokio::test]
async fn an_unknown_key_refreshes_the_jwks_once_and_made_up_keys_do_not_flood_it() {
    let w = world().await;
    let rotated = signing_key("k2");
    w.jwks.keys.lock().unwrap().push(rotated.jwk.clone());
    let token = sign(&rotated, &claims("refs/heads/main"));
    let answer = page(&w, "acme-core", &format!("Bearer {token}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(w.jwks.count(), 2, "one refresh for the new kid");

    let stranger = signing_key("made-up");
    let mut refused = Vec::new();
    for i in 0..20 {
        let token = sign_as(&stranger.encoding, &format!("made-up-{i}"), &claims("refs/heads/main"));
        refused.push(page(&w, "six", &format!("Bearer {token}")).await);
    }
    for answer in refused {
        assert_eq!(answer.status, 401);
        assert!(answer.text().contains("is not among the issuer's keys"), "{}", answer.text());
    }
    assert_eq!(w.jwks.count(), 2, "no refresh within the spacing after the last one");
}

#[tokio::test]
async fn a_jwks_file_works_like_a_url() {
    let key = signing_key("file-key");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&JwkSet { keys: vec![key.jwk.clone()] }).unwrap())
        .unwrap();
    let upstream = FakeIndex::start().await;
    upstream.add("six", wheel::build("six", "1.16.0", "public"));
    let access = format!(
        "[access]\n[[access.oidc]]\nname = \"file\"\nissuer = \"{ISSUER}\"\naudience = [\"other\", \"{AUDIENCE}\"]\njwks_file = \"{}\"\n",
        file.path().display()
    );
    let pipgate =
        Pipgate::start(&config_for(&[("pypi", &upstream.url())], &access), Default::default()).await;
    let token = sign(&key, &claims("refs/heads/anything"));
    let answer =
        get(&format!("{}six/", pipgate.index_url()), &[("authorization", &format!("Bearer {token}"))])
            .await
            .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}
