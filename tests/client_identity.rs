//! Who may use pipgate (`[access]`), over real sockets:
//! - without a credential an index request is a 401 with `WWW-Authenticate: Basic
//!   realm="pipgate"`; health stays open; `/metrics` on the index port needs a credential;
//! - a static token, stored only as its hash, works as `Bearer` and as a Basic password with
//!   any user name (what pip sends from the index URL's userinfo), for pages and files;
//! - htpasswd users (bcrypt) get in with the right password only, and the file is re-read
//!   when it changes: a removed user is refused from then on; a non-bcrypt entry stops the
//!   start, naming the file and line;
//! - access per upstream: anonymous clients may read the public upstream only, and a project
//!   owned by the private upstream answers 401 (403 for a client that is known but may not
//!   read it), never the public upstream's page or file of the same name (I10); the root list
//!   shows each client only what it may read;
//! - rejected credentials are counted and limited per client address (429 with
//!   `Retry-After`), another address is not affected;
//! - no credential reaches a log line, even at trace level.

use crate::support;

use base64::Engine;
use support::binary::RunningBinary;
use support::fake_index::FakeIndex;
use support::{PIP_ACCEPT, Pipgate, config_for, eventually, get, wheel};

const TOKEN: &str = "pgt_test-token-canary-2d8f0e91";
const READER_TOKEN: &str = "pgt_public-only-token-5b1c7a";

struct World {
    private: FakeIndex,
    public: FakeIndex,
    pipgate: Pipgate,
    _htpasswd: tempfile::NamedTempFile,
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn htpasswd_file(users: &[(&str, &str)]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    write_htpasswd(file.path(), users);
    file
}

fn write_htpasswd(path: &std::path::Path, users: &[(&str, &str)]) {
    let text: String =
        users.iter().map(|(user, pw)| format!("{user}:{}\n", bcrypt::hash(pw, 4).unwrap())).collect();
    std::fs::write(path, text).unwrap();
}

/// A private feed with `acme-core` and `acme-secret`, a public index with an attacker's
/// `acme-core` and `six`; pipgate with a token that reads everything, one that reads only the
/// public upstream, an htpasswd user, and anonymous reads of the public upstream.
async fn world(extra: &str) -> World {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    private.add("acme-secret", wheel::build("acme-secret", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("acme-core", wheel::build("acme-core", "99.0", "attacker"));
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let htpasswd = htpasswd_file(&[("alice", "alice-pw-canary")]);
    let access = format!(
        r#"
[access]
anonymous = ["pypi"]
{extra}

[[access.token]]
name = "ci"
hash = "{}"

[[access.token]]
name = "reader"
hash = "{}"
read = ["pypi"]

[[access.htpasswd]]
file = "{}"
"#,
        pipgate::hash_token(TOKEN),
        pipgate::hash_token(READER_TOKEN),
        htpasswd.path().display()
    );
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], &access);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    World { private, public, pipgate, _htpasswd: htpasswd }
}

async fn page(w: &World, project: &str, authorization: Option<&str>) -> support::Answer {
    let mut headers = vec![("accept", PIP_ACCEPT)];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    get(&format!("{}{project}/", w.pipgate.index_url()), &headers).await.unwrap()
}

async fn metric(w: &World, line_start: &str) -> f64 {
    let scrape =
        get(&format!("{}/metrics", w.pipgate.base), &[("authorization", &format!("Bearer {TOKEN}"))])
            .await
            .unwrap();
    assert_eq!(scrape.status, 200);
    scrape
        .text()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn without_a_credential_only_health_is_open_and_private_projects_ask_for_one() {
    let w = world("").await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&format!("{}{path}", w.pipgate.base), &[]).await.unwrap().status, 200, "{path}");
    }
    let metrics = get(&format!("{}/metrics", w.pipgate.base), &[]).await.unwrap();
    assert_eq!(metrics.status, 401, "metrics need a credential on the index port");

    let refused = page(&w, "acme-core", None).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.header("www-authenticate"), "Basic realm=\"pipgate\"");
    assert!(refused.text().contains("may not read upstream \"corp\""), "{}", refused.text());
    assert!(!refused.text().contains("99.0"), "never the public page of a private name");
    // The attacker's file under the private name is not reachable either.
    let file = get(&format!("{}/files/acme-core/acme_core-99.0-py3-none-any.whl", w.pipgate.base), &[])
        .await
        .unwrap();
    assert_eq!(file.status, 401);
    assert_eq!(w.public.count("/simple/acme-core/"), 0, "the public index is never asked for an owned name");
    assert_eq!(w.public.count("/files/"), 0);

    let public = page(&w, "six", None).await;
    assert_eq!((public.status.as_u16(), public.header("x-pipgate-upstream")), (200, "pypi"));
    assert_eq!(metric(&w, "pipgate_access_denied_total{upstream=\"corp\"}").await, 2.0);
}

#[tokio::test]
async fn a_static_token_works_as_bearer_and_as_a_basic_password_for_pages_and_files() {
    let w = world("").await;
    for authorization in [format!("Bearer {TOKEN}"), basic("__token__", TOKEN), basic("anyone", TOKEN)] {
        let answer = page(&w, "acme-core", Some(&authorization)).await;
        assert_eq!(answer.status, 200, "{authorization}: {}", answer.text());
        assert_eq!(answer.filenames(), ["acme_core-1.0-py3-none-any.whl"]);
        let file = get(
            &format!("{}/files/acme-core/acme_core-1.0-py3-none-any.whl", w.pipgate.base),
            &[("authorization", &authorization)],
        )
        .await
        .unwrap();
        assert_eq!(file.status, 200);
    }
    let wrong = page(&w, "acme-core", Some(&format!("Bearer {TOKEN}x"))).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("not accepted"), "{}", wrong.text());
    assert!(!wrong.text().contains(TOKEN), "the answer never echoes a credential");
    let unsupported = page(&w, "six", Some("Digest username=\"x\"")).await;
    assert_eq!(unsupported.status, 401, "a credential pipgate cannot read is not taken as anonymous");
    assert_eq!(
        metric(&w, "pipgate_client_auth_total{kind=\"token\",result=\"ok\"}").await,
        7.0,
        "6 + the scrape"
    );
    assert_eq!(metric(&w, "pipgate_client_auth_total{kind=\"token\",result=\"rejected\"}").await, 1.0);
}

#[tokio::test]
async fn a_client_that_may_not_read_the_owner_gets_403_never_the_public_name() {
    let w = world("").await;
    let reader = format!("Bearer {READER_TOKEN}");
    let refused = page(&w, "acme-core", Some(&reader)).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.headers.get("www-authenticate").is_none());
    assert!(refused.text().contains("token \"reader\" may not read upstream \"corp\""), "{}", refused.text());
    assert_eq!(page(&w, "six", Some(&reader)).await.status, 200);
    assert_eq!(w.public.count("/simple/acme-core/"), 0);

    // The cached page is shared only within what each client may read: the full token warms
    // the cache, and the reader is still refused afterwards.
    assert_eq!(page(&w, "acme-core", Some(&format!("Bearer {TOKEN}"))).await.status, 200);
    assert_eq!(page(&w, "acme-core", Some(&reader)).await.status, 403);
    assert_eq!(page(&w, "acme-core", None).await.status, 401);
    assert_eq!(w.private.count("/simple/acme-core/"), 1, "one upstream fetch, shared by every client");
}

#[tokio::test]
async fn the_root_list_shows_each_client_only_the_upstreams_it_may_read() {
    let w = world("").await;
    let root = |authorization: Option<String>| {
        let base = w.pipgate.index_url();
        async move {
            let mut headers = vec![("accept", "application/vnd.pypi.simple.v1+json".to_owned())];
            if let Some(value) = authorization {
                headers.push(("authorization", value));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let answer = get(&base, &headers).await.unwrap();
            assert_eq!(answer.status, 200, "{}", answer.text());
            let names: Vec<String> = answer.json()["projects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            names
        }
    };
    let anonymous = root(None).await;
    assert!(anonymous.contains(&"six".to_owned()), "{anonymous:?}");
    assert!(
        !anonymous.contains(&"acme-secret".to_owned()),
        "a private-only name is not listed: {anonymous:?}"
    );
    let full = root(Some(format!("Bearer {TOKEN}"))).await;
    assert!(full.contains(&"acme-secret".to_owned()) && full.contains(&"six".to_owned()), "{full:?}");
}

#[tokio::test]
async fn htpasswd_users_need_their_password_and_the_file_is_reread_when_it_changes() {
    // The polling below presents bob's password before the file is re-read: those are
    // rejections, and must not trip the per-address limit.
    let w = world("max_failures_per_minute = 100000").await;
    let alice = basic("alice", "alice-pw-canary");
    assert_eq!(page(&w, "acme-core", Some(&alice)).await.status, 200);
    assert_eq!(page(&w, "acme-core", Some(&alice)).await.status, 200, "a remembered success");
    let wrong = page(&w, "acme-core", Some(&basic("alice", "guess"))).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("wrong password for user \"alice\""), "{}", wrong.text());
    assert_eq!(page(&w, "acme-core", Some(&basic("mallory", "x"))).await.status, 401);

    // The operator replaces alice by bob: alice's remembered success is forgotten.
    write_htpasswd(w._htpasswd.path(), &[("bob", "bob-pw")]);
    let bob = basic("bob", "bob-pw");
    eventually("bob is admitted after the file changed", || {
        let w = &w;
        let bob = bob.clone();
        async move { page(w, "acme-core", Some(&bob)).await.status == 200 }
    })
    .await;
    assert_eq!(page(&w, "acme-core", Some(&alice)).await.status, 401, "a removed user is refused");
}

#[tokio::test]
async fn a_non_bcrypt_htpasswd_entry_stops_the_start_naming_file_and_line() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "# users\ncarol:$apr1$salt$hash\n").unwrap();
    let upstream = FakeIndex::start().await;
    let toml = config_for(
        &[("pypi", &upstream.url())],
        &format!("[access]\n[[access.htpasswd]]\nfile = \"{}\"\n", file.path().display()),
    );
    let config_file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config_file.path(), toml).unwrap();
    let env = pipgate::config::MapEnv::default();
    let mut config =
        pipgate::config::load(&pipgate::config::ConfigSource::File(config_file.path().to_owned()), &env)
            .unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let error =
        pipgate::start(&config, &env).await.expect_err("a bad htpasswd file stops the start").to_string();
    assert!(error.contains(&file.path().display().to_string()), "{error}");
    assert!(error.contains("line 2 (user \"carol\") is not a bcrypt entry"), "{error}");
}

#[tokio::test]
async fn access_config_errors_name_the_key() {
    let upstream = FakeIndex::start().await;
    for (access, key, says) in [
        ("[access]\n", "access", "names no credential kind"),
        (
            "[access]\n[[access.token]]\nname = \"ci\"\nhash = \"pgt_plaintext-token-by-mistake\"\n",
            "access.token[0].hash",
            "never the token itself",
        ),
        (
            &format!(
                "[access]\nanonymous = [\"nope\"]\n[[access.token]]\nname = \"ci\"\nhash = \"{}\"\n",
                pipgate::hash_token(TOKEN)
            ),
            "access.anonymous[0]",
            "no upstream is named \"nope\"",
        ),
        (
            "[access]\n[[access.oidc]]\nname = \"gh\"\nissuer = \"https://issuer\"\naudience = \"x\"\njwks_url = \"http://keys.example.com/jwks\"\n",
            "access.oidc[0].jwks_url",
            "must be https",
        ),
    ] {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), config_for(&[("pypi", &upstream.url())], access)).unwrap();
        let error = pipgate::config::load(
            &pipgate::config::ConfigSource::File(file.path().to_owned()),
            &pipgate::config::MapEnv::default(),
        )
        .unwrap_err();
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        assert!(error.message.contains(says), "{error}");
        assert!(error.origin.contains(&file.path().display().to_string()), "{error}");
    }
}

/// Sends one request from `local` (another loopback address) and returns its status line.
async fn status_from(local: &str, server: std::net::SocketAddr, authorization: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let request = format!(
        "GET /simple/six/ HTTP/1.1\r\nhost: pipgate\r\nauthorization: {authorization}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn rejected_credentials_are_limited_per_client_address() {
    let w = world("max_failures_per_minute = 3").await;
    let addr = w.pipgate.server.local_addr();
    let bad = format!("Bearer {TOKEN}-wrong");
    let good = format!("Bearer {TOKEN}");
    for _ in 0..3 {
        assert!(status_from("127.0.0.2", addr, &bad).await.contains(" 401 "));
    }
    // The limit holds even for a good credential from that address: nothing is checked.
    let limited = status_from("127.0.0.2", addr, &good).await;
    assert!(limited.contains(" 429 "), "{limited}");
    let answer = page(&w, "six", Some(&bad)).await;
    assert_eq!(answer.status, 401, "another address (127.0.0.1) is not limited");
    assert_eq!(page(&w, "six", Some(&good)).await.status, 200);
    assert!(status_from("127.0.0.3", addr, &good).await.contains(" 200 "));
    assert_eq!(metric(&w, "pipgate_client_auth_total{kind=\"none\",result=\"rate_limited\"}").await, 1.0);
}

#[tokio::test]
async fn a_limited_address_sees_retry_after() {
    let w = world("max_failures_per_minute = 1").await;
    assert_eq!(page(&w, "six", Some("Bearer wrong-token-value")).await.status, 401);
    let limited = page(&w, "six", Some("Bearer wrong-token-value")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), "60");
    assert_eq!(page(&w, "six", None).await.status, 200, "anonymous reads are not limited");
}

#[tokio::test]
async fn no_credential_reaches_the_log_even_at_trace_level() {
    let upstream = FakeIndex::start().await;
    upstream.add("six", wheel::build("six", "1.16.0", "public"));
    let htpasswd = htpasswd_file(&[("alice", "alice-pw-canary")]);
    let config = config_for(
        &[("pypi", &upstream.url())],
        &format!(
            "[access]\n[[access.token]]\nname = \"ci\"\nhash = \"{}\"\n[[access.htpasswd]]\nfile = \"{}\"\n",
            pipgate::hash_token(TOKEN),
            htpasswd.path().display()
        ),
    );
    let pipgate = RunningBinary::start(&config, &[]).await;
    let url = format!("{}/simple/six/", pipgate.base);
    for authorization in [
        format!("Bearer {TOKEN}"),
        format!("Bearer {TOKEN}-but-wrong"),
        basic("alice", "alice-pw-canary"),
        basic("alice", "alice-pw-canary-wrong"),
    ] {
        get(&url, &[("authorization", &authorization)]).await.unwrap();
    }
    let log = pipgate.stop().await;
    assert!(log.contains("client credential rejected"), "the rejections are logged");
    for canary in ["canary", &basic("alice", "alice-pw-canary")[6..]] {
        assert!(!log.contains(canary), "{canary} reached the log");
    }
}
