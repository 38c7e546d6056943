//! A fake PEP 503/691 index on 127.0.0.1 that tests can tell to misbehave. It counts requests
//! and records the headers it saw, so tests can assert what pipgate sent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::wheel::{Wheel, sha256_hex};

/// How the index answers page requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageMode {
    Json,
    Html,
    /// Every page request gets this status with an empty body.
    Status(u16),
    /// 203 with a sign-in form, as Azure DevOps answers a bad credential.
    SignIn203,
    /// 302 to a `_signin` page.
    SignInRedirect,
    /// 200 with a JSON content type and a body that is not JSON.
    Garbage,
    /// Waits this long before answering.
    Hang(Duration),
    /// 429 with `Retry-After` in seconds.
    Throttle(u64),
    /// 302 from `/simple/{name}/` to `{base}{name}/`: another index, usually another origin.
    RedirectTo(String),
    /// The JSON page, gzip-compressed (`Content-Encoding: gzip`).
    Gzip,
    /// A gzip body that inflates to this many zero bytes.
    GzipBomb(usize),
    /// 200 with an HTML form and no password field (Entra's first sign-in step).
    EmailForm,
}

/// How the index answers file requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileMode {
    Serve,
    /// Redirects every download to `{base}{filename}` (another origin: "blob storage").
    RedirectTo(String),
    /// Flips one byte in the middle.
    CorruptByte,
    /// Sends a Content-Length that promises more than it sends, then closes.
    ShortBody,
    /// Sends the first half, then resets the connection.
    ResetMidBody,
    /// Sends the body in 64 KiB pieces with this pause between them.
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub struct FakeFile {
    pub filename: String,
    pub bytes: Bytes,
    pub metadata: Option<Bytes>,
    pub requires_python: Option<String>,
    pub yanked: Option<String>,
    /// List the file without any hash (pipgate must not cache it).
    pub omit_hash: bool,
}

impl From<Wheel> for FakeFile {
    fn from(wheel: Wheel) -> Self {
        FakeFile {
            filename: wheel.filename,
            bytes: wheel.bytes.into(),
            metadata: Some(wheel.metadata.into()),
            requires_python: None,
            yanked: None,
            omit_hash: false,
        }
    }
}

impl FakeFile {
    /// A real wheel file from disk, offered without PEP 658 metadata.
    pub fn from_path(path: &std::path::Path) -> Self {
        FakeFile {
            filename: path.file_name().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(path).unwrap().into(),
            metadata: None,
            requires_python: None,
            yanked: None,
            omit_hash: false,
        }
    }
}

/// One request the index saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct State {
    projects: BTreeMap<String, Vec<FakeFile>>,
    page_mode: Option<PageMode>,
    file_mode: Option<FileMode>,
    basic_auth: Option<String>,
    tokens: Option<TokenBook>,
    rejected: usize,
    seen: Vec<Seen>,
    not_modified: usize,
    /// When set, the root (`/simple/`) answers this status instead of the project list.
    root_status: Option<u16>,
    /// PEP 708 `tracks` per project.
    tracks: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
pub struct FakeIndex {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeIndex {
    pub async fn start() -> FakeIndex {
        Self::start_with(None).await
    }

    /// The same index over HTTPS, with a certificate from [`super::tls::test_ca`].
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> FakeIndex {
        Self::start_with(Some(acceptor)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> FakeIndex {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, tls) = (shared.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(state.clone(), addr, req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        FakeIndex { addr, scheme, state, task: Arc::new(task) }
    }

    /// The index URL to give pipgate.
    pub fn url(&self) -> String {
        format!("{}://{}/simple/", self.scheme, self.addr)
    }

    pub fn add(&self, project: &str, file: impl Into<FakeFile>) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.projects.entry(project.to_owned()).or_default().push(file.into());
        self
    }

    /// Forgets `project`: its page answers 404 from now on.
    pub fn remove(&self, project: &str) {
        self.state.lock().unwrap().projects.remove(project);
    }

    /// The root (`/simple/`) answers `status` (with an empty body), or the list again (`None`).
    pub fn set_root_status(&self, status: Option<u16>) {
        self.state.lock().unwrap().root_status = status;
    }

    /// `project`'s JSON page declares it tracks these project URLs (PEP 708).
    pub fn set_tracks(&self, project: &str, urls: &[String]) {
        self.state.lock().unwrap().tracks.insert(project.to_owned(), urls.to_vec());
    }

    pub fn set_page_mode(&self, mode: PageMode) {
        self.state.lock().unwrap().page_mode = Some(mode);
    }

    pub fn set_file_mode(&self, mode: FileMode) {
        self.state.lock().unwrap().file_mode = Some(mode);
    }

    /// Requires `Authorization: Basic base64(user:password)` on every request.
    pub fn require_basic(&self, user: &str, password: &str) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.state.lock().unwrap().basic_auth = Some(format!("Basic {token}"));
    }

    /// Accepts only Basic auth whose password is a token `book` holds and that has not expired.
    pub fn require_tokens(&self, book: TokenBook) {
        self.state.lock().unwrap().tokens = Some(book);
    }

    /// How many requests were refused with 401.
    pub fn rejected_count(&self) -> usize {
        self.state.lock().unwrap().rejected
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many page requests were answered 304 Not Modified.
    pub fn not_modified_count(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }

    pub fn count(&self, path_prefix: &str) -> usize {
        self.seen().iter().filter(|s| s.path.starts_with(path_prefix)).count()
    }

    /// Stops answering: new connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).map_err(|never| match never {}).boxed())
        .unwrap()
}

async fn answer(
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let (page_mode, file_mode, authorized, files) = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen { path: path.clone(), headers: req.headers().clone() });
        let authorized = match (&state.basic_auth, &state.tokens) {
            (Some(expected), _) => req.headers().get("authorization").is_some_and(|v| v == expected.as_str()),
            (None, Some(book)) => book.accepts_basic(req.headers().get("authorization")),
            (None, None) => true,
        };
        if !authorized {
            state.rejected += 1;
        }
        let name = path.trim_start_matches("/simple/").trim_end_matches('/').to_owned();
        (
            state.page_mode.clone().unwrap_or(PageMode::Json),
            state.file_mode.clone().unwrap_or(FileMode::Serve),
            authorized,
            state.projects.get(&name).cloned(),
        )
    };
    if !authorized {
        return Ok(full(401, "text/plain", "unauthorized"));
    }
    if let Some(filename) = path.strip_prefix("/files/") {
        return Ok(serve_file(&state, filename, &file_mode).await);
    }
    if path.starts_with("/_signin") {
        return Ok(full(200, "text/html", "<form><input type=password></form>"));
    }
    if path == "/simple/" {
        if let Some(status) = state.lock().unwrap().root_status {
            return Ok(full(status, "text/plain", ""));
        }
        let names: Vec<String> = state.lock().unwrap().projects.keys().cloned().collect();
        let projects: Vec<_> = names.iter().map(|n| serde_json::json!({"name": n})).collect();
        let body = serde_json::json!({"meta": {"api-version": "1.1"}, "projects": projects});
        return Ok(full(200, "application/vnd.pypi.simple.v1+json", body.to_string()));
    }
    match page_mode {
        PageMode::Status(code) => return Ok(full(code, "text/plain", "")),
        PageMode::SignIn203 => {
            return Ok(full(
                203,
                "text/html",
                "<html><form action=/_signin><input type=password></form></html>",
            ));
        }
        PageMode::SignInRedirect => {
            let mut response = full(302, "text/plain", "");
            let location = format!("http://{addr}/_signin?reason=auth");
            response.headers_mut().insert("location", location.parse().unwrap());
            return Ok(response);
        }
        PageMode::Garbage => {
            return Ok(full(200, "application/vnd.pypi.simple.v1+json", "{not json"));
        }
        PageMode::RedirectTo(base) => {
            let mut response = full(302, "text/plain", "");
            let location = format!("{base}{}", path.strip_prefix("/simple/").unwrap_or(&path));
            response.headers_mut().insert("location", location.parse().unwrap());
            return Ok(response);
        }
        PageMode::Throttle(seconds) => {
            let mut response = full(429, "text/plain", "slow down");
            response.headers_mut().insert("retry-after", seconds.into());
            return Ok(response);
        }
        PageMode::Hang(delay) => tokio::time::sleep(delay).await,
        PageMode::GzipBomb(size) => {
            let mut response = full(200, "application/vnd.pypi.simple.v1+json", gzip(&vec![0u8; size]));
            response.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            return Ok(response);
        }
        PageMode::EmailForm => {
            let form = "<html><body><form method=post><input type=email name=loginfmt></form></body></html>";
            return Ok(full(200, "text/html", form));
        }
        PageMode::Gzip => {}
        PageMode::Json | PageMode::Html => {}
    }
    let Some(files) = files else {
        return Ok(full(404, "text/plain", "not found"));
    };
    let name = path.trim_start_matches("/simple/").trim_end_matches('/');
    if page_mode == PageMode::Html {
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for f in &files {
            html.push_str(&format!("<a href=\"../../files/{}#sha256={}\"", f.filename, sha256_hex(&f.bytes)));
            if let Some(rp) = &f.requires_python {
                html.push_str(&format!(
                    " data-requires-python=\"{}\"",
                    rp.replace('>', "&gt;").replace('<', "&lt;")
                ));
            }
            if let Some(reason) = &f.yanked {
                html.push_str(&format!(" data-yanked=\"{reason}\""));
            }
            if let Some(metadata) = &f.metadata {
                html.push_str(&format!(" data-dist-info-metadata=\"sha256={}\"", sha256_hex(metadata)));
            }
            html.push_str(&format!(">{}</a><br>\n", f.filename));
        }
        html.push_str("</body></html>");
        return Ok(full(200, "text/html; charset=utf-8", html));
    }
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            let mut entry = serde_json::json!({
                "filename": f.filename,
                "url": format!("../../files/{}", f.filename),
                "hashes": if f.omit_hash { serde_json::json!({}) } else { serde_json::json!({"sha256": sha256_hex(&f.bytes)}) },
                "size": f.bytes.len(),
                "upload-time": "2025-01-02T03:04:05.000000Z",
                "yanked": f.yanked.clone().map_or(serde_json::Value::Bool(false), serde_json::Value::String),
            });
            if let Some(rp) = &f.requires_python {
                entry["requires-python"] = rp.clone().into();
            }
            if let Some(metadata) = &f.metadata {
                entry["core-metadata"] = serde_json::json!({"sha256": sha256_hex(metadata)});
            }
            entry
        })
        .collect();
    let mut body =
        serde_json::json!({"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []});
    if let Some(tracks) = state.lock().unwrap().tracks.get(name) {
        body["tracks"] = serde_json::json!(tracks);
    }
    let body = body.to_string();
    let etag = format!("\"{}\"", &sha256_hex(body.as_bytes())[..16]);
    if req.headers().get("if-none-match").is_some_and(|v| v == etag.as_str()) {
        state.lock().unwrap().not_modified += 1;
        let mut response = full(304, "application/vnd.pypi.simple.v1+json", "");
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return Ok(response);
    }
    if page_mode == PageMode::Gzip {
        let mut response = full(200, "application/vnd.pypi.simple.v1+json", gzip(body.as_bytes()));
        response.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
        return Ok(response);
    }
    let mut response = full(200, "application/vnd.pypi.simple.v1+json", body);
    response.headers_mut().insert("etag", etag.parse().unwrap());
    Ok(response)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn serve_file(state: &Arc<Mutex<State>>, filename: &str, mode: &FileMode) -> Response<Body> {
    let (wanted, is_metadata) = match filename.strip_suffix(".metadata") {
        Some(stem) => (stem, true),
        None => (filename, false),
    };
    let found = state.lock().unwrap().projects.values().flatten().find(|f| f.filename == wanted).cloned();
    let Some(file) = found else {
        return full(404, "text/plain", "no such file");
    };
    if is_metadata {
        return match file.metadata {
            Some(metadata) => full(200, "text/plain", metadata),
            None => full(404, "text/plain", "no metadata"),
        };
    }
    match mode {
        FileMode::Serve => full(200, "application/octet-stream", file.bytes),
        FileMode::Slow(pause) => {
            let pause = *pause;
            let pieces: Vec<Bytes> = file.bytes.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut rest| async move {
                let piece = rest.next()?;
                tokio::time::sleep(pause).await;
                Some((Ok::<_, std::io::Error>(Frame::data(piece)), rest))
            });
            streamed(file.bytes.len(), stream)
        }
        FileMode::RedirectTo(base) => {
            let mut response = full(302, "text/plain", "");
            response
                .headers_mut()
                .insert("location", format!("{base}{filename}?sv=2024&sig=SAS-SECRET").parse().unwrap());
            response
        }
        FileMode::CorruptByte => {
            let mut bytes = file.bytes.to_vec();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            full(200, "application/octet-stream", bytes)
        }
        FileMode::ShortBody | FileMode::ResetMidBody => {
            let half = file.bytes.slice(..file.bytes.len() / 2);
            let reset = *mode == FileMode::ResetMidBody;
            streamed(file.bytes.len(), futures_stream(half, reset))
        }
    }
}

/// A 200 that promises `length` bytes and sends what `stream` yields.
fn streamed(
    length: usize,
    stream: impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static,
) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .header("content-length", length)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// Yields `first`, waits so that it leaves the server, then ends early (a short body) or
/// fails (a reset).
fn futures_stream(
    first: Bytes,
    reset: bool,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok(Frame::data(first)), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    reset.then(|| (Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")), 2))
                }
                _ => None,
            }
        }
    })
}

/// Tokens an identity endpoint issued, with their expiry: what a fake feed accepts.
#[derive(Clone, Default, Debug)]
pub struct TokenBook(Arc<Mutex<std::collections::HashMap<String, std::time::Instant>>>);

impl TokenBook {
    pub fn issue(&self, token: &str, lifetime: Duration) {
        self.0.lock().unwrap().insert(token.to_owned(), std::time::Instant::now() + lifetime);
    }

    /// Makes every issued token invalid, as a feed does when it stops trusting them.
    pub fn revoke_all(&self) {
        self.0.lock().unwrap().clear();
    }

    fn accepts_basic(&self, header: Option<&http::HeaderValue>) -> bool {
        use base64::Engine;
        let Some(encoded) = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else { return false };
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let Some((_, password)) = decoded.split_once(':') else { return false };
        self.0.lock().unwrap().get(password).is_some_and(|expiry| *expiry > std::time::Instant::now())
    }
}
