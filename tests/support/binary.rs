//! The `pipgate` binary run as an operator runs it, with its own environment (the Azure
//! identity variables are read from the process environment, which a test must not change).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{get, python::free_port};

pub struct RunningBinary {
    pub base: String,
    child: Child,
    /// Where its stdout and stderr go: a file, since a pipe nobody reads would fill up at the
    /// trace level and block pipgate's logging.
    log: tempfile::NamedTempFile,
    _config: tempfile::NamedTempFile,
    _cache: tempfile::TempDir,
}

impl RunningBinary {
    /// Starts `pipgate serve` with `config` and extra environment, and waits for `/healthz`.
    pub async fn start(config: &str, env: &[(&str, String)]) -> RunningBinary {
        Self::launch(config, env, None).await
    }

    /// As [`start`](Self::start), with every file pipgate writes limited to `kib` KiB
    /// (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so a write past it fails with `EFBIG`): a cache
    /// disk that fills up under a fill. The log file counts too: keep the log level low.
    pub async fn start_with_file_size_limit(config: &str, env: &[(&str, String)], kib: u64) -> RunningBinary {
        Self::launch(config, env, Some(kib)).await
    }

    async fn launch(config: &str, env: &[(&str, String)], file_size_kib: Option<u64>) -> RunningBinary {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), config).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let binary = env!("CARGO_BIN_EXE_pipgate");
        let mut command = match file_size_kib {
            None => Command::new(binary),
            Some(kib) => {
                let mut limited = Command::new("bash");
                // An ignored signal stays ignored across exec; bash counts `ulimit -f` in KiB.
                limited.args(["-c", r#"trap '' XFSZ; ulimit -f "$1"; shift; exec "$@""#, "limited"]);
                limited.arg(kib.to_string()).arg(binary);
                limited
            }
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(["serve", "--config"])
            .arg(file.path())
            .env("PIPGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("PIPGATE_CACHE__DIR", cache.path())
            .env("PIPGATE_LOG", "trace")
            // Off, so that "the public index is never asked" stays exact; `env` may turn it on.
            .env("PIPGATE_OWNERSHIP__SHADOW_CHECK", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()))
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if get(&format!("{base}/healthz"), &[]).await.is_ok() {
                return RunningBinary { base, child, log, _config: file, _cache: cache };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pipgate serve did not come up");
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..400 {
            if get(&format!("{}/readyz", self.base), &[]).await.is_ok_and(|a| a.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pipgate did not become ready");
    }

    /// Everything it has printed so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Stops it with SIGTERM and returns everything it printed.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").arg(pid.to_string()).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "pipgate exits cleanly on SIGTERM: {status:?}");
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}
