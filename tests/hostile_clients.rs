//! Clients that misbehave (issue: edge, hostile clients), over raw sockets:
//! - a client that sends its headers slowly (slowloris) is cut off after `header_read_timeout`;
//! - headers over `max_header_bytes` or more than `max_headers` get 431, a URL over
//!   `max_url_bytes` gets 414;
//! - ambiguous framing cannot smuggle a request: two lengths get 400, a request with both
//!   `Content-Length` and `Transfer-Encoding` is refused outright (400) and the request hidden
//!   in its body is never answered; a read route refuses any request body;
//! - past `max_connections`, a new connection waits until another closes;
//! - a real HTTP/2 client (curl, prior knowledge) is served;
//! - a client that stops reading does not slow another client's download of the same file.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::fake_index::{FakeFile, FakeIndex, FileMode};
use support::{Pipgate, config_for, get, wheel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serving(server: &str) -> (FakeIndex, Pipgate) {
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let pipgate = Pipgate::start(
        &config_for(&[("corp", &index.url())], &format!("[server]\n{server}\n")),
        Default::default(),
    )
    .await;
    (index, pipgate)
}

/// Sends `raw` on a new connection and returns what the server sent back before closing (or
/// within 10 s).
async fn exchange(pipgate: &Pipgate, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(pipgate.server.local_addr()).await.unwrap();
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn a_slow_sender_is_cut_off_after_the_header_timeout() {
    let (_index, pipgate) = serving("header_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(pipgate.server.local_addr()).await.unwrap();
    stream.write_all(b"GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finish the headers: the server must close the connection by itself.
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the connection was still open after 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn oversized_or_ambiguous_requests_are_refused() {
    let (_index, pipgate) = serving("max_header_bytes = 16384\nmax_headers = 20\nmax_url_bytes = 2048").await;
    let big_header =
        format!("GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(32 * 1024));
    assert!(status_line(&exchange(&pipgate, big_header.as_bytes()).await).starts_with("HTTP/1.1 431"));
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert!(status_line(&exchange(&pipgate, many.as_bytes()).await).starts_with("HTTP/1.1 431"));
    let long = format!("GET /simple/{}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(4000));
    let answer = exchange(&pipgate, long.as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("the URL is longer than the 2048-byte limit"), "{answer}");
    let two_lengths =
        "GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello";
    assert!(status_line(&exchange(&pipgate, two_lengths.as_bytes()).await).starts_with("HTTP/1.1 400"));
    // A proxy that trusts Content-Length would forward the second request as this one's body.
    let smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let both = format!(
        "GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let answer = exchange(&pipgate, both.as_bytes()).await;
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer, the smuggled request is never read: {answer}"
    );
    assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "refused outright: {answer}");
    assert!(answer.contains("a GET request takes no body"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    for body in [
        "HEAD /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ] {
        let answer = exchange(&pipgate, body.as_bytes()).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{answer}");
    }
    let empty =
        "GET /simple/acme-core/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(
        status_line(&exchange(&pipgate, empty.as_bytes()).await).starts_with("HTTP/1.1 200"),
        "an empty body is fine"
    );
    // The server is still fine.
    assert_eq!(get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap().status, 200);
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits() {
    let (_index, pipgate) = serving("max_connections = 2").await;
    let addr = pipgate.server.local_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Both slots are taken by idle connections: a third is not served...
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "served past the cap: {}", String::from_utf8_lossy(&answer));
    // ...until one of them goes.
    first.shutdown().await.unwrap();
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_real_http2_client_is_served() {
    let (_index, pipgate) = serving("").await;
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--http2-prior-knowledge",
            "--write-out",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("{}acme-core/", pipgate.index_url()))
        .output()
        .await
        .expect("curl runs (scripts/e2e-setup.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.trim_end().ends_with("2 200"), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("acme_core-1.0-py3-none-any.whl"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_another() {
    let index = FakeIndex::start().await;
    let file = FakeFile::blob("acme_core-1.0", 4 * 1024 * 1024, 6);
    index.add("acme-core", file.clone());
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], ""), Default::default()).await;
    index.set_file_mode(FileMode::Slow(Duration::from_millis(5)));
    let url = format!("{}/files/acme-core/{}", pipgate.base, file.filename);
    // The stalled client takes its first bytes, then reads nothing more, keeping the connection.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let stalled = client.get(url.parse().unwrap()).await.unwrap();
    let mut stalled_body = stalled.into_body();
    stalled_body.frame().await.unwrap().unwrap();
    // Another client downloads the same file, from the same fill, to the end.
    let whole =
        tokio::time::timeout(Duration::from_secs(30), get(&url, &[])).await.expect("not held up").unwrap();
    assert_eq!(whole.body, file.bytes);
    assert_eq!(index.count("/files/"), 1, "one fill served both");
    drop(stalled_body);
}
