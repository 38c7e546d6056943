//! Shared test support: a fake index, a wheel builder, pipgate started in-process on
//! 127.0.0.1:0, a small HTTP client, and the Python tools that `scripts/test.sh` installs.

pub mod binary;
pub mod fake_index;
pub mod identity;
pub mod jwt;
pub mod proxy;
pub mod python;
pub mod storage;
pub mod tls;
pub mod wheel;

use std::io::Write;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pipgate::Running;
use pipgate::config::{self, ConfigSource, MapEnv};

/// pipgate running in this process.
pub struct Pipgate {
    pub server: Running,
    pub base: String,
    /// `http://{admin listener}` when the config sets `server.admin_listen`.
    pub admin_base: Option<String>,
    pub cache_dir: std::path::PathBuf,
    _config: tempfile::NamedTempFile,
    _cache: Option<tempfile::TempDir>,
}

impl Pipgate {
    /// Starts pipgate with `toml` as its config file (its `listen` is forced to 127.0.0.1:0)
    /// and a fresh cache directory, unless the config names one. Shadow checks are off unless
    /// the config sets `shadow_check`: they ask the public index about private names in the
    /// background, and most tests assert that the public index is never asked.
    pub async fn start(toml: &str, env: MapEnv) -> Pipgate {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let mut config =
            config::load(&ConfigSource::File(file.path().to_owned()), &env).expect("test config is valid");
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        if config.server.admin_listen.is_some() {
            config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        }
        if let Some(tls) = config.server.tls.as_mut() {
            tls.listen = "127.0.0.1:0".parse().unwrap();
        }
        let mut cache = None;
        if !toml.contains("dir = ") {
            let dir = tempfile::tempdir().unwrap();
            config.cache.dir = dir.path().to_owned();
            cache = Some(dir);
        }
        if !toml.contains("shadow_check") {
            config.ownership.shadow_check = false;
        }
        let cache_dir = config.cache.dir.clone();
        let server = pipgate::start(&config, &env).await.expect("pipgate starts");
        let base = format!("http://{}", server.local_addr());
        let admin_base = server.admin_addr().map(|addr| format!("http://{addr}"));
        Pipgate { server, base, admin_base, cache_dir, _config: file, _cache: cache }
    }

    /// The index URL clients use.
    pub fn index_url(&self) -> String {
        format!("{}/simple/", self.base)
    }
}

/// Waits until `check` holds, polling every 10 ms; fails the test after 10 s, naming `what`.
/// Tests wait for events this way, never for a fixed time: a slow machine only waits longer.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not reached within 10 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A config with the given upstreams (name, url) in order, and extra TOML after them.
pub fn config_for(upstreams: &[(&str, &str)], extra: &str) -> String {
    let mut toml = String::new();
    for (name, url) in upstreams {
        toml.push_str(&format!("[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"3s\"\n\n"));
    }
    toml.push_str(extra);
    toml
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The file names of a JSON project page.
    pub fn filenames(&self) -> Vec<String> {
        self.json()["files"]
            .as_array()
            .unwrap_or_else(|| panic!("not a JSON project page: {}", self.text()))
            .iter()
            .map(|f| f["filename"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// GETs `url` with extra headers. `Err` when the body broke off (an aborted stream).
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    request("GET", url, headers).await
}

pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client.request(builder.body(Empty::new()).unwrap()).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("body broke off: {e}"))?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body })
}

/// Accept headers that pip and uv send, verbatim.
pub const PIP_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
pub const HTML_ACCEPT: &str = "text/html";
