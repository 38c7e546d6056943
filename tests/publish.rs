//! Publishing through pipgate (`[publish]`), with pipgate's own credential for the feed:
//! - real `twine upload` (static token) and `uv publish` (an OIDC token signed in the test)
//!   upload to a real pypiserver that requires its own password, which only pipgate holds; then
//!   `pip install` through pipgate gets the new version at once, without waiting for a TTL;
//! - refusals: anonymous (401), OIDC claims that match no publish rule, a project outside the
//!   rule's patterns, a name another upstream owns (a shadow), a body over `max_bytes`
//!   (403/413, each naming why), and the feed's own 409 for a file it has;
//! - the upstream sees pipgate's credential and never the client's, and gets the multipart body
//!   byte for byte; every publish is counted.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::fake_index::FakeIndex;
use support::jwt::{Jwks, SigningKey, sign, signing_key};
use support::python::{PypiServer, installed_origin, pip_install, public_index, venv_bin};
use support::{Pipgate, wheel};

const FEED_PASSWORD: &str = "feed-pw-canary-93d1";
const RELEASE_TOKEN: &str = "pgt_release-bot-token-canary-5c2e";
const READER_TOKEN: &str = "pgt_reader-token-canary-0b7f";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "pipgate";

/// What reached the recording feed: each upload's `Authorization` and body.
type Uploads = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// An upload endpoint that records what reached it (for what the client must never send
/// upstream) and answers 200; every GET is a 404, so as an upstream it owns nothing.
struct RecordingFeed {
    addr: SocketAddr,
    seen: Uploads,
}

impl RecordingFeed {
    async fn start() -> RecordingFeed {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Uploads = Arc::default();
        let shared = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let authorization = request
                                    .headers()
                                    .get("authorization")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                let post = request.method() == http::Method::POST;
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let status = if post {
                                    seen.lock().unwrap().push((authorization, body));
                                    200
                                } else {
                                    404
                                };
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        });
                    support::tls::serve_connection(stream, None, service).await;
                });
            }
        });
        RecordingFeed { addr, seen }
    }
}

struct World {
    feed: PypiServer,
    staging: RecordingFeed,
    public: FakeIndex,
    jwks: Jwks,
    key: SigningKey,
    pipgate: Pipgate,
    _packages: tempfile::TempDir,
}

/// corp (a pypiserver that takes uploads with FEED_PASSWORD), staging (a recording upload
/// endpoint), pypi (public, with six). Publish rules: the release token for `acme-*` on corp,
/// tagged `acme/*` workflows for `acme-*` on corp, the release token for anything on staging.
async fn world(max_bytes: &str) -> World {
    let packages = tempfile::tempdir().unwrap();
    let existing = wheel::build("acme-core", "1.0.0", "private");
    std::fs::write(packages.path().join(&existing.filename), &existing.bytes).unwrap();
    let feed = PypiServer::start_for_uploads(packages.path(), "feed", FEED_PASSWORD).await;
    let staging = RecordingFeed::start().await;
    let public = public_index(false).await;
    let key = signing_key("k1");
    let jwks = Jwks::start(vec![key.jwk.clone()]).await;
    let config = format!(
        r#"
[[upstream]]
name = "corp"
url = "{feed}"
upload_url = "{feed_upload}"
auth = {{ basic = {{ username = "feed", password = "{FEED_PASSWORD}" }} }}

[[upstream]]
name = "staging"
url = "http://{staging}/simple/"
upload_url = "http://{staging}/upload/"
auth = {{ basic = {{ username = "pipgate", password = "staging-pw" }} }}
health_check = false

[[upstream]]
name = "pypi"
url = "{public}"

[access]
anonymous = ["pypi"]
max_failures_per_minute = 1000

[[access.token]]
name = "release-bot"
hash = "{release}"

[[access.token]]
name = "reader"
hash = "{reader}"

[[access.oidc]]
name = "actions"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{jwks}"
claims = {{ repository_owner = "acme" }}

[publish]
default = "corp"
max_bytes = "{max_bytes}"

[[publish.rule]]
name = "release bot"
upstream = "corp"
projects = ["acme-*"]
tokens = ["release-bot"]

[[publish.rule]]
name = "tagged releases"
upstream = "corp"
projects = ["acme-*"]
claims = {{ repository = "acme/*", ref = "refs/tags/v*" }}

[[publish.rule]]
name = "staging"
upstream = "staging"
projects = ["*"]
tokens = ["release-bot"]
"#,
        feed = feed.url,
        feed_upload = feed.upload_url(),
        staging = staging.addr,
        public = public.url(),
        release = pipgate::hash_token(RELEASE_TOKEN),
        reader = pipgate::hash_token(READER_TOKEN),
        jwks = jwks.url,
    );
    let pipgate = Pipgate::start(&config, Default::default()).await;
    World { feed, staging, public, jwks, key, pipgate, _packages: packages }
}

fn claims(git_ref: &str) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("repo:acme/widgets:ref:{git_ref}"),
        "repository": "acme/widgets", "repository_owner": "acme", "ref": git_ref,
        "iat": now, "exp": now + 300,
    })
}

/// A legacy-API upload body for `wheel`, and its content type.
fn multipart(name: &str, version: &str, filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "pipgate-test-boundary-7d3f";
    let mut body = Vec::new();
    for (field, value) in [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", name),
        ("version", version),
        ("filetype", "bdist_wheel"),
        ("metadata_version", "2.1"),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post(url: &str, authorization: Option<&str>, content_type: &str, body: Vec<u8>) -> support::Answer {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = http::Request::post(url).header("content-type", content_type);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = client.request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    support::Answer { status: parts.status, headers: parts.headers, body }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn metric(text: &str, line: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn run(program: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", tempfile::tempdir().unwrap().keep())
        .env("NO_PROXY", "*")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

/// `twine upload` of one file with the release token.
async fn twine_upload(url: &str, file: &std::path::Path) -> (bool, String) {
    let file = file.to_str().unwrap();
    let args = [
        "upload",
        "--non-interactive",
        "--disable-progress-bar",
        "--repository-url",
        url,
        "-u",
        "__token__",
        "-p",
        RELEASE_TOKEN,
        file,
    ];
    run(&venv_bin("twine"), &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twine_and_uv_publish_with_pipgates_credential_and_pip_installs_at_once() {
    let w = world("10MiB").await;
    let dist = tempfile::tempdir().unwrap();
    let widget = wheel::build("acme-widget", "1.0.0", "private");
    std::fs::write(dist.path().join(&widget.filename), &widget.bytes).unwrap();
    let wheel_path = dist.path().join(&widget.filename);
    // The page of the new project is looked up (and its absence cached) before the upload.
    let target = tempfile::tempdir().unwrap();
    let index = w.pipgate.index_url().replacen("http://", &format!("http://__token__:{RELEASE_TOKEN}@"), 1);
    assert!(!pip_install(&index, target.path(), &["acme-widget"]).await.success);

    let upload_url = format!("{}/upload/corp/", w.pipgate.base);
    let (ok, output) = twine_upload(&upload_url, &wheel_path).await;
    assert!(ok, "twine upload failed:\n{output}");
    assert!(!output.contains(FEED_PASSWORD));
    let run_pip = pip_install(&index, target.path(), &["acme-widget==1.0.0"]).await;
    assert!(run_pip.success, "the new version installs at once:\n{}", run_pip.output);
    assert_eq!(installed_origin(target.path(), "acme_widget").as_deref(), Some("private"));

    // The same file again: the feed's 409 comes back as a 409 that twine shows.
    let (ok, output) = twine_upload(&upload_url, &wheel_path).await;
    assert!(!ok, "a second upload of the same file succeeded:\n{output}");
    assert!(output.contains("409"), "{output}");

    // uv publish with a tagged workflow's OIDC token, to the default /upload/.
    let gadget = wheel::build("acme-gadget", "2.0.0", "private");
    let gadget_path = dist.path().join(&gadget.filename);
    std::fs::write(&gadget_path, &gadget.bytes).unwrap();
    let token = sign(&w.key, &claims("refs/tags/v2.0.0"));
    let (ok, output) = run(
        &venv_bin("uv"),
        &[
            "publish",
            "--publish-url",
            &format!("{}/upload/", w.pipgate.base),
            "--trusted-publishing",
            "never",
            "--username",
            "oidc",
            "--password",
            &token,
            gadget_path.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "uv publish failed:\n{output}");
    let target = tempfile::tempdir().unwrap();
    let run_pip = pip_install(&index, target.path(), &["acme-gadget==2.0.0"]).await;
    assert!(run_pip.success, "{}", run_pip.output);

    let scrape =
        support::get(&format!("{}/metrics", w.pipgate.base), &[("authorization", &bearer(RELEASE_TOKEN))])
            .await
            .unwrap()
            .text();
    assert_eq!(metric(&scrape, "pipgate_publishes_total{result=\"ok\",upstream=\"corp\"}"), 2.0, "{scrape}");
    assert_eq!(metric(&scrape, "pipgate_publishes_total{result=\"rejected\",upstream=\"corp\"}"), 1.0);
    assert_eq!(w.jwks.count(), 1);
    let _ = &w.feed;
}

#[tokio::test]
async fn refusals_name_their_reason_and_nothing_goes_upstream() {
    let w = world("64kB").await;
    let small = wheel::build("acme-thing", "1.0.0", "private");
    let (content_type, body) = multipart("acme-thing", "1.0.0", &small.filename, &small.bytes);
    let url = format!("{}/upload/staging/", w.pipgate.base);
    let corp = format!("{}/upload/corp/", w.pipgate.base);

    let anonymous = post(&corp, None, &content_type, body.clone()).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(anonymous.header("www-authenticate"), "Basic realm=\"pipgate\"");

    let reader = post(&corp, Some(&bearer(READER_TOKEN)), &content_type, body.clone()).await;
    assert_eq!(reader.status, 403);
    assert!(
        reader.text().contains("publish rule \"release bot\" covers acme-thing but not token \"reader\""),
        "{}",
        reader.text()
    );

    let branch = sign(&w.key, &claims("refs/heads/main"));
    let answer = post(&corp, Some(&bearer(&branch)), &content_type, body.clone()).await;
    assert_eq!(answer.status, 403);
    assert!(answer.text().contains("its claim ref = refs/heads/main does not match (refs/tags/v*) of publish rule \"tagged releases\""), "{}", answer.text());

    let (other_type, other) = multipart("other-thing", "1.0.0", "other_thing-1.0.0-py3-none-any.whl", b"x");
    let answer = post(&corp, Some(&bearer(RELEASE_TOKEN)), &other_type, other).await;
    assert_eq!(answer.status, 403);
    assert!(
        answer.text().contains("no publish rule for upstream \"corp\" covers other-thing"),
        "{}",
        answer.text()
    );

    // acme-core is owned by corp: staging (lower) may not shadow it; six is owned by pypi.
    let core = wheel::build("acme-core", "9.0.0", "attacker");
    let (core_type, core_body) = multipart("acme-core", "9.0.0", &core.filename, &core.bytes);
    let answer = post(&url, Some(&bearer(RELEASE_TOKEN)), &core_type, core_body).await;
    assert_eq!(answer.status, 403);
    assert!(answer.text().contains("project acme-core is owned by upstream \"corp\", not \"staging\": a lower upstream may not shadow it"), "{}", answer.text());
    let (six_type, six_body) = multipart("six", "99.0.0", "six-99.0.0-py2.py3-none-any.whl", b"x");
    let answer = post(&url, Some(&bearer(RELEASE_TOKEN)), &six_type, six_body).await;
    assert_eq!(answer.status, 403);
    assert!(answer.text().contains("owned by upstream \"pypi\""), "{}", answer.text());

    let big = vec![7u8; 100_000];
    let (big_type, big_body) = multipart("acme-big", "1.0.0", "acme_big-1.0.0-py3-none-any.whl", &big);
    let answer = post(&url, Some(&bearer(RELEASE_TOKEN)), &big_type, big_body).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("64000-byte limit"), "{}", answer.text());

    let not_multipart = post(&url, Some(&bearer(RELEASE_TOKEN)), "application/json", b"{}".to_vec()).await;
    assert_eq!(not_multipart.status, 400);
    let get = support::get(&url, &[("authorization", &bearer(RELEASE_TOKEN))]).await.unwrap();
    assert_eq!((get.status.as_u16(), get.header("allow")), (405, "POST"));

    assert!(w.staging.seen.lock().unwrap().is_empty(), "a refused upload reached the upstream");
    assert_eq!(w.public.count("/upload"), 0);

    // Allowed: the upstream gets pipgate's credential, never the client's, and the exact body.
    let answer = post(&url, Some(&bearer(RELEASE_TOKEN)), &content_type, body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = w.staging.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let pipgates =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("pipgate:staging-pw"));
    assert_eq!(seen[0].0.as_deref(), Some(pipgates.as_str()));
    assert_eq!(seen[0].1, Bytes::from(body), "the multipart body reaches the upstream byte for byte");

    let scrape =
        support::get(&format!("{}/metrics", w.pipgate.base), &[("authorization", &bearer(RELEASE_TOKEN))])
            .await
            .unwrap()
            .text();
    assert_eq!(
        metric(&scrape, "pipgate_publishes_total{result=\"refused\",upstream=\"staging\"}"),
        4.0,
        "{scrape}"
    );
    assert_eq!(metric(&scrape, "pipgate_publishes_total{result=\"ok\",upstream=\"staging\"}"), 1.0);
}
