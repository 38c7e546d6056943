//! A small forward proxy on 127.0.0.1 that speaks `CONNECT` and records each tunnel it opens
//! (target and `Proxy-Authorization`), then relays bytes both ways.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One tunnel: where to, and the credential the client presented to the proxy.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub target: String,
    pub proxy_authorization: Option<String>,
}

#[derive(Clone)]
pub struct ConnectProxy {
    pub addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(client);
                    let mut line = String::new();
                    reader.read_line(&mut line).await.unwrap();
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut proxy_authorization = None;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("proxy-authorization")
                        {
                            proxy_authorization = Some(value.trim().to_owned());
                        }
                    }
                    seen.lock().unwrap().push(Tunnel { target: target.clone(), proxy_authorization });
                    let mut client = reader.into_inner();
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, tunnels }
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}
