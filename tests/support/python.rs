//! The Python side of the end-to-end tests: pip, uv and pypiserver from the virtualenv that
//! `scripts/test.sh` builds in `.e2e/` (or wherever `PIPGATE_E2E_DIR` points).
//!
//! These tests do not skip when the tools are missing: they fail and say how to install them,
//! because a green run without them would prove nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub fn e2e_dir() -> PathBuf {
    let dir = std::env::var_os("PIPGATE_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".e2e"));
    assert!(
        dir.join("venv/bin/uv").exists(),
        "the end-to-end tools are not installed in {}: run scripts/test.sh (it installs pip, uv and pypiserver)",
        dir.display()
    );
    dir
}

pub fn venv_bin(tool: &str) -> PathBuf {
    e2e_dir().join("venv/bin").join(tool)
}

/// The real public wheels `scripts/test.sh` downloaded.
pub fn public_wheels() -> Vec<PathBuf> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(e2e_dir().join("wheels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    assert!(wheels.len() >= 3, "expected the public wheels in .e2e/wheels; run scripts/test.sh");
    wheels
}

/// A public index holding the real public wheels, and (with `attacker`) an attacker's
/// `acme-core` 99.0.0, the name a private feed owns.
pub async fn public_index(attacker: bool) -> super::fake_index::FakeIndex {
    let public = super::fake_index::FakeIndex::start().await;
    for path in public_wheels() {
        let file = super::fake_index::FakeFile::from_path(&path);
        let project = file.filename.split('-').next().unwrap().to_lowercase();
        public.add(&project, file);
    }
    if attacker {
        public.add("acme-core", super::wheel::build("acme-core", "99.0.0", "attacker"));
    }
    public
}

/// The output of a finished client run.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub output: String,
}

/// A command with an environment cleaned of anything that could send it elsewhere.
fn isolated(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("UV_NO_CONFIG", "1")
        .env("UV_CACHE_DIR", home.join("uv-cache"))
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn finish(mut command: Command) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the client finishes within 3 minutes")
        .expect("the client starts");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Run { success: output.status.success(), output: text }
}

/// `pip install --target TARGET ARGS…` against `index_url`, with a fresh cache.
pub async fn pip_install(index_url: &str, target: &Path, args: &[&str]) -> Run {
    pip_install_with(index_url, target, args, &[]).await
}

/// [`pip_install`] with extra environment variables (`NETRC`, say).
pub async fn pip_install_with(index_url: &str, target: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = isolated(&venv_bin("python"), home.path());
    command.envs(env.iter().copied());
    command
        .args(["-m", "pip", "install", "--no-cache-dir", "--index-url", index_url, "--target"])
        .arg(target)
        .args(["--retries", "0", "--timeout", "20"])
        .args(args);
    finish(command).await
}

/// `uv pip install --target TARGET ARGS…` against `index_url`, with a fresh cache.
pub async fn uv_install(index_url: &str, target: &Path, args: &[&str]) -> Run {
    uv_install_with(index_url, target, args, &[]).await
}

/// [`uv_install`] with extra environment variables (`NETRC`, say).
pub async fn uv_install_with(index_url: &str, target: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = isolated(&venv_bin("uv"), home.path());
    command.envs(env.iter().copied());
    command
        .args(["pip", "install", "--python"])
        .arg(venv_bin("python"))
        .args(["--index-url", index_url, "--target"])
        .arg(target)
        .args(args)
        .env("UV_HTTP_RETRIES", "0")
        .env("UV_HTTP_TIMEOUT", "20");
    finish(command).await
}

/// `uv ARGS…` with a fresh cache and the test virtualenv's Python, `pip ARGS…` likewise:
/// for the commands the install helpers do not cover (`uv pip compile`, `pip install
/// --dry-run --report`).
pub async fn uv(args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = isolated(&venv_bin("uv"), home.path());
    command.args(args).env("UV_HTTP_RETRIES", "0").env("UV_HTTP_TIMEOUT", "20");
    finish(command).await
}

pub async fn pip(args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = isolated(&venv_bin("python"), home.path());
    command.args(["-m", "pip"]).args(args).args(["--no-cache-dir", "--retries", "0", "--timeout", "20"]);
    finish(command).await
}

/// The `ORIGIN` an installed test module declares, read from the target directory.
pub fn installed_origin(target: &Path, module: &str) -> Option<String> {
    let text = std::fs::read_to_string(target.join(module).join("__init__.py")).ok()?;
    text.trim().strip_prefix("ORIGIN = ").map(|s| s.trim_matches('"').to_owned())
}

/// The installed version of `dist` (from its `.dist-info` directory name).
pub fn installed_version(target: &Path, dist: &str) -> Option<String> {
    std::fs::read_dir(target).ok()?.find_map(|entry| {
        let name = entry.ok()?.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix(&format!("{dist}-"))?;
        rest.strip_suffix(".dist-info").map(str::to_owned)
    })
}

/// A real pypiserver on 127.0.0.1 serving `packages`, requiring basic auth for everything.
pub struct PypiServer {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PypiServer {
    /// Requires `user:password` for listing and downloads (uploads stay off).
    pub async fn start(packages: &Path, user: &str, password: &str) -> PypiServer {
        Self::start_with(packages, user, password, "download,list").await
    }

    /// Takes uploads too, with `user:password` required for them and for reading.
    pub async fn start_for_uploads(packages: &Path, user: &str, password: &str) -> PypiServer {
        Self::start_with(packages, user, password, "update,download,list").await
    }

    /// The upload endpoint (pypiserver takes the legacy upload API at its root).
    pub fn upload_url(&self) -> String {
        self.url.trim_end_matches("simple/").to_owned()
    }

    async fn start_with(packages: &Path, user: &str, password: &str, authenticate: &str) -> PypiServer {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let status = std::process::Command::new(venv_bin("python"))
            .args(["-c", "import sys; from passlib.apache import HtpasswdFile as H; h = H(sys.argv[1], new=True); h.set_password(sys.argv[2], sys.argv[3]); h.save()"])
            .arg(&htpasswd)
            .args([user, password])
            .status()
            .unwrap();
        assert!(status.success(), "htpasswd file written");
        let port = free_port();
        let child = Command::new(venv_bin("pypi-server"))
            .args(["run", "-i", "127.0.0.1", "-p", &port.to_string(), "-a", authenticate, "-P"])
            .arg(&htpasswd)
            // Without this, pypiserver redirects unknown projects to pypi.org.
            .arg("--disable-fallback")
            .arg(packages)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pypi-server starts");
        let server = PypiServer { url: format!("http://127.0.0.1:{port}/simple/"), child, _dir: dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pypi-server did not start listening on port {port}");
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port that was free a moment ago, for servers that cannot bind port 0 and report it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
