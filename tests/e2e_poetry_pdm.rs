//! Real poetry and pdm lock and install through pipgate, set up as the README says: pipgate
//! as the project's only source, authenticating with a static token (`[access]`):
//! - the lock file pins the private `acme-core` 1.0.0, never the attacker's public 99.0.0;
//! - the installed package is the private one, installed with `six` from the public upstream.
//!
//! poetry and pdm come from PyPI into `.e2e/poetry` and `.e2e/pdm` (`scripts/e2e-setup.sh`).

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::fake_index::FakeIndex;
use support::python::{e2e_dir, public_index, venv_bin};
use support::{Pipgate, config_for, wheel};

const TOKEN: &str = "pgt_poetry-pdm-token-4e7a1c9b";

async fn world() -> (Pipgate, FakeIndex, FakeIndex) {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0.0", "private"));
    let public = public_index(true).await;
    let access =
        format!("[access]\n[[access.token]]\nname = \"ci\"\nhash = \"{}\"\n", pipgate::hash_token(TOKEN));
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], &access);
    (Pipgate::start(&config, Default::default()).await, private, public)
}

async fn run(program: &Path, args: &[&str], dir: &Path, env: &[(&str, String)]) -> String {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    venv_bin("python").parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", &home)
            .env("NO_PROXY", "*")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("finishes within 5 minutes")
    .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {args:?} failed:\n{text}", program.display());
    text
}

/// The `ORIGIN` of the installed `acme_core` in a project's `.venv`.
fn installed_origin(project: &Path) -> String {
    let pattern = project.join(".venv/lib");
    let python = std::fs::read_dir(&pattern).unwrap().next().unwrap().unwrap().path();
    let init = python.join("site-packages/acme_core/__init__.py");
    std::fs::read_to_string(&init).unwrap_or_else(|e| panic!("{}: {e}", init.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poetry_locks_and_installs_the_private_package_through_pipgate() {
    let (pipgate, _private, public) = world().await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        format!(
            r#"[project]
name = "demo-app"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = ["acme-core", "six"]

[tool.poetry]
package-mode = false

[[tool.poetry.source]]
name = "pipgate"
url = "{}"
priority = "primary"
"#,
            pipgate.index_url()
        ),
    )
    .unwrap();
    let poetry = e2e_dir().join("poetry/bin/poetry");
    let env = [
        ("POETRY_HTTP_BASIC_PIPGATE_USERNAME", "__token__".to_owned()),
        ("POETRY_HTTP_BASIC_PIPGATE_PASSWORD", TOKEN.to_owned()),
        ("POETRY_VIRTUALENVS_IN_PROJECT", "true".to_owned()),
        ("POETRY_CACHE_DIR", project.path().join("poetry-cache").display().to_string()),
        ("POETRY_KEYRING_ENABLED", "false".to_owned()),
    ];
    run(&poetry, &["env", "use", venv_bin("python").to_str().unwrap()], project.path(), &env).await;
    run(&poetry, &["lock"], project.path(), &env).await;
    let lock = std::fs::read_to_string(project.path().join("poetry.lock")).unwrap();
    assert!(lock.contains("name = \"acme-core\"\nversion = \"1.0.0\""), "{lock}");
    assert!(!lock.contains("99.0.0"));
    run(&poetry, &["install", "--no-root"], project.path(), &env).await;
    assert!(installed_origin(project.path()).contains("private"));
    assert_eq!(public.count("/simple/acme-core/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdm_locks_and_installs_the_private_package_through_pipgate() {
    let (pipgate, _private, public) = world().await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        format!(
            r#"[project]
name = "demo-app"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = ["acme-core", "six"]

[tool.pdm]
distribution = false

# Named "pypi", it replaces the default index instead of adding to it. pdm expands
# environment variables in the URL, so the token stays out of the file.
[[tool.pdm.source]]
name = "pypi"
url = "{}"
"#,
            pipgate.index_url().replacen("http://", "http://__token__:${PIPGATE_TOKEN}@", 1)
        ),
    )
    .unwrap();
    let pdm = e2e_dir().join("pdm/bin/pdm");
    let env = [
        ("PIPGATE_TOKEN", TOKEN.to_owned()),
        ("PDM_CHECK_UPDATE", "false".to_owned()),
        ("PDM_CACHE_DIR", project.path().join("pdm-cache").display().to_string()),
        ("PDM_USE_VENV", "true".to_owned()),
    ];
    run(&pdm, &["venv", "create", venv_bin("python").to_str().unwrap()], project.path(), &env).await;
    run(&pdm, &["lock"], project.path(), &env).await;
    let lock = std::fs::read_to_string(project.path().join("pdm.lock")).unwrap();
    assert!(lock.contains("name = \"acme-core\"\nversion = \"1.0.0\""), "{lock}");
    assert!(!lock.contains("99.0.0"));
    run(&pdm, &["install"], project.path(), &env).await;
    assert!(installed_origin(project.path()).contains("private"));
    assert_eq!(public.count("/simple/acme-core/"), 0);
}
