//! TLS for a listener: rustls (aws-lc-rs), ALPN `h2` and `http/1.1`, and a certificate that is
//! re-read when its files change (cert-manager rotates them in place), without a restart and
//! without touching established connections: a new handshake gets the new certificate.
//!
//! Files that cannot be read or parsed are a startup error naming the file; after start, a bad
//! rotation is logged and the last good certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// A certificate or key that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {}: {reason}", file.display())]
pub struct TlsError {
    what: &'static str,
    file: PathBuf,
    reason: String,
}

/// The certificate chain and key files of a listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Hands rustls the current certificate; swapped by the reload task.
#[derive(Debug)]
struct Current {
    files: TlsFiles,
    key: RwLock<Arc<CertifiedKey>>,
    /// Modification times of (cert, key) when last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().expect("certificate lock").clone())
    }
}

/// Builds the acceptor for `files` and starts watching them (call inside the runtime).
pub fn acceptor(files: TlsFiles, metrics: Arc<Metrics>) -> Result<TlsAcceptor, TlsError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let stamps = stamps(&files);
    let key = load(&files)?;
    let current = Arc::new(Current { files, key: RwLock::new(Arc::new(key)), loaded: Mutex::new(stamps) });
    let mut config =
        rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(current.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    for result in ["ok", "error"] {
        metrics.tls_reloads.with_label_values(&[result]);
    }
    tokio::spawn(watch(current, metrics));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the chain and the key.
fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let error = |what, file: &Path, reason: String| TlsError { what, file: file.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| error("certificate", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error("certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(error("certificate", &files.cert, "holds no PEM certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| error("key", &files.key, e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| error("key", &files.key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| error("key", &files.key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

fn stamps(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

/// Re-reads the files whenever their modification times change.
async fn watch(current: Arc<Current>, metrics: Arc<Metrics>) {
    let mut ticks = tokio::time::interval(RELOAD_CHECK);
    loop {
        ticks.tick().await;
        let now = stamps(&current.files);
        if now == *current.loaded.lock().expect("stamps lock") {
            continue;
        }
        let files = current.files.clone();
        match tokio::task::spawn_blocking(move || load(&files)).await {
            Ok(Ok(key)) => {
                *current.key.write().expect("certificate lock") = Arc::new(key);
                *current.loaded.lock().expect("stamps lock") = now;
                metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert = %current.files.cert.display(), "TLS certificate reloaded");
            }
            Ok(Err(error)) => {
                // Half-written during a rotation, or wrong: keep serving the last good one and
                // try again at the next check.
                metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use");
            }
            Err(_) => {}
        }
    }
}
