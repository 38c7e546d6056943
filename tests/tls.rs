//! The TLS listener (issue: edge, TLS):
//! - HTTPS with a certificate made in the test, ALPN offering `h2` and `http/1.1`, beside the
//!   plain listener;
//! - the certificate files are re-read when they change, during traffic: new handshakes get the
//!   new certificate, an established keep-alive connection goes on, no request fails;
//! - missing or wrong files are a startup error naming the file.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use support::fake_index::FakeIndex;
use support::{Pipgate, config_for, eventually, get, wheel};
use tokio::net::TcpStream;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca() -> Ca {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca { der: cert.der().clone(), issuer: Issuer::new(params, key) }
}

/// Writes a fresh leaf for 127.0.0.1 into `cert` and `key` (each replaced atomically, as a
/// secret mount rotates them) and returns its DER.
fn leaf(ca: &Ca, cert: &std::path::Path, key: &std::path::Path) -> CertificateDer<'static> {
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca.issuer)
        .unwrap();
    for (path, text) in [(key, leaf_key.serialize_pem()), (cert, leaf.pem())] {
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }
    leaf.der().clone()
}

/// Trusts the test CA. hyper-rustls sets ALPN itself (and refuses a config that has it).
fn base_config(ca: &Ca) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
}

fn client_config(ca: &Ca) -> rustls::ClientConfig {
    let mut config = base_config(ca);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A fresh handshake: the certificate served and the protocol agreed.
async fn handshake(ca: &Ca, addr: std::net::SocketAddr) -> (CertificateDer<'static>, Vec<u8>) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)));
    let stream = TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), stream).await.unwrap();
    let (_, session) = tls.get_ref();
    (session.peer_certificates().unwrap()[0].clone().into_owned(), session.alpn_protocol().unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_and_a_certificate_rotated_during_traffic() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = leaf(&ca, &cert, &key);
    let index = FakeIndex::start().await;
    index.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let tls = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let pipgate = Pipgate::start(&config_for(&[("corp", &index.url())], &tls), Default::default()).await;
    let addr = pipgate.server.tls_addr().expect("a TLS listener");
    assert_eq!(handshake(&ca, addr).await, (first.clone(), b"h2".to_vec()));
    assert_eq!(
        get(&format!("{}acme-core/", pipgate.index_url()), &[]).await.unwrap().status,
        200,
        "plain beside TLS"
    );

    // Traffic over one kept-alive HTTPS connection while the certificate rotates.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(base_config(&ca))
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let url = format!("https://127.0.0.1:{}/simple/acme-core/", addr.port());
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, ok, failed, client, url) =
            (stop.clone(), ok.clone(), failed.clone(), client.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answered = match client.get(url.parse().unwrap()).await {
                    Ok(response) => response.status() == 200 && response.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if answered { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let second = leaf(&ca, &cert, &key);
    assert_ne!(first, second);
    eventually("new handshakes get the rotated certificate", || async {
        handshake(&ca, addr).await.0 == second
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during the rotation");
    assert!(ok.load(Ordering::Relaxed) > 10);

    let metrics = format!("{}/metrics", pipgate.base);
    let reloads = |text: &str, result: &str| {
        text.contains(&format!("pipgate_tls_reloads_total{{result=\"{result}\"}} 1"))
    };
    assert!(reloads(&get(&metrics, &[]).await.unwrap().text(), "ok"));

    // A rotation to a broken file is refused; the last good certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    eventually("the broken rotation was seen", || async {
        reloads(&get(&metrics, &[]).await.unwrap().text(), "error")
    })
    .await;
    assert_eq!(handshake(&ca, addr).await.0, second, "the last good certificate stays in use");
}

#[tokio::test]
async fn missing_or_wrong_files_are_a_startup_error_naming_the_file() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    leaf(&ca, &cert, &key);
    let (other_cert, other_key) = (dir.path().join("other.crt"), dir.path().join("other.key"));
    leaf(&ca, &other_cert, &other_key);
    let missing = dir.path().join("missing.crt");
    for (cert, key, named, why) in [
        (&missing, &key, &missing, "No such file"),
        (&cert, &other_key, &other_key, "does not match the certificate"),
        (&key, &key, &key, "no PEM certificate"),
    ] {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n\n[[upstream]]\nname = \"pypi\"\nurl = \"http://127.0.0.1:1/simple/\"\n[cache]\ndir = \"{}\"\n",
            cert.display(),
            key.display(),
            dir.path().join("cache").display()
        );
        let file = dir.path().join("pipgate.toml");
        std::fs::write(&file, text).unwrap();
        let config = pipgate::config::load(
            &pipgate::config::ConfigSource::File(file),
            &pipgate::config::MapEnv::default(),
        )
        .unwrap();
        let error =
            pipgate::start(&config, &pipgate::config::MapEnv::default()).await.unwrap_err().to_string();
        assert!(error.contains(&named.display().to_string()), "{error}");
        assert!(error.contains(why), "{error} should say {why:?}");
    }
}
