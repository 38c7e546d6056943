//! The listener: HTTP/1 and HTTP/2 on one port, and a graceful, bounded shutdown.
//!
//! It faces every machine in the organisation, so every resource a client can hold is bounded
//! ([`Limits`]): the time to send request headers (which also closes idle keep-alive
//! connections), the size and number of headers, the connections open at once, and HTTP/2
//! streams per connection, with hyper's protection against rapid stream resets
//! (CVE-2023-44487). Ambiguous framing cannot smuggle a request: hyper answers two different
//! `Content-Length`s with 400, and reads a request with both `Content-Length` and
//! `Transfer-Encoding` as chunked and closes its connection after the answer (RFC 9112 §6.3),
//! so nothing after it on that connection is ever read as a request; the router then refuses
//! it outright, since no read route takes a body.
//!
//! On shutdown the listener closes first (new connections are refused), in-flight requests get
//! the configured grace period to finish, and whatever is left is dropped; the log says which.

pub mod notify;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Connections the kernel queues before pipgate accepts them (clipped to `net.core.somaxconn`).
/// Tokio's `bind` leaves 128: 500 CI jobs connecting at once overflowed it (`ListenOverflows`
/// in `benches/herd.sh`), and every dropped SYN cost its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as std binds).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
use tower::util::BoxCloneSyncService;

use crate::body::ResponseBody;
use crate::identity::ClientAddr;

/// The service the listener drives for every request: whatever stack the caller assembled,
/// boxed so the listener needs to know nothing about it.
pub type HttpService =
    BoxCloneSyncService<Request<hyper::body::Incoming>, Response<ResponseBody>, std::convert::Infallible>;

/// What one listener allows a client, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's headers; also how long an idle keep-alive connection stays.
    pub header_read_timeout: Duration,
    /// Bytes of request line and headers (HTTP/1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Number of request headers (HTTP/1).
    pub max_headers: usize,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
    pub shutdown_grace: Duration,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `service` on `listener` until [`Server::shutdown`], over TLS with `tls`.
    /// `record_peer` puts each request's [`ClientAddr`] in its extensions (client
    /// authentication limits failures per address; without it the hot path skips the work).
    pub fn spawn(
        listener: TcpListener,
        service: HttpService,
        limits: Limits,
        tls: Option<tokio_rustls::TlsAcceptor>,
        record_peer: bool,
    ) -> Server {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (stop, stopped) = oneshot::channel();
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Logged before the accept loop exists, so no request is ever logged ahead of it (on a
        // busy machine the loop's worker thread can serve before this thread runs on).
        tracing::info!(%addr, scheme, "pipgate listening");
        let task = tokio::spawn(accept_loop(listener, service, stopped, limits, tls, record_peer));
        Server { addr, stop: Some(stop), task }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: HttpService,
    mut stopped: oneshot::Receiver<()>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    record_peer: bool,
) {
    let grace = limits.shutdown_grace;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487): a connection that resets more streams than this before
        // they are answered is closed.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        // Past the connection cap, stop accepting until one closes.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut stopped => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = if record_peer {
                    let addr = ClientAddr(peer);
                    BoxCloneSyncService::new(service.clone().map_request(move |mut request: Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(addr);
                        request
                    }))
                } else {
                    service.clone()
                };
                let service = TowerToHyperService::new(service);
                match &tls {
                    None => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        let connection = graceful.watch(connection.into_owned());
                        tokio::spawn(async move {
                            let _slot = slot;
                            if let Err(error) = connection.await {
                                tracing::debug!(%peer, error = %error, "connection ended with an error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, bounded like the headers.
                        let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                        let deadline = limits.header_read_timeout;
                        tokio::spawn(async move {
                            let _slot = slot;
                            let stream = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                            };
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            if let Err(error) = watcher.watch(connection.into_owned()).await {
                                tracing::debug!(%peer, error = %error, "connection ended with an error");
                            }
                        });
                    }
                }
            }
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; dropping the remaining connections"),
    }
}
