//! The `pipgate` binary as an operator runs it:
//! - `check-config` prints the effective config with secrets redacted;
//! - a bad config exits non-zero with a message naming the file and the key;
//! - `serve` runs from a config file plus `PIPGATE_*` overlays, and at the most verbose log
//!   level its output never holds the upstream password (raw or base64-encoded).

use crate::support;

use std::process::Command;

use base64::Engine;
use support::binary::RunningBinary;
use support::fake_index::FakeIndex;
use support::{get, wheel};

const CANARY: &str = "canary-secret-9d2c";

fn pipgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipgate"));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let file = write_config(&format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"https://feed.test/simple\"\nauth = {{ basic = {{ username = \"ci\", password = \"{CANARY}\" }} }}\n\n[[upstream]]\nname = \"sp\"\nurl = \"https://feed2.test/simple/\"\nauth = {{ azure = {{ identity = \"service-principal\", tenant_id = \"t\", client_id = \"c\", client_secret = \"{CANARY}\" }} }}\n"
    ));
    let output = pipgate()
        .args(["check-config"])
        .arg(file.path())
        .env("PIPGATE_SERVER__LISTEN", "0.0.0.0:9999")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("listen = \"0.0.0.0:9999\""), "overlays show: {stdout}");
    assert!(stdout.contains("url = \"https://feed.test/simple/\""), "{stdout}");
    assert!(stdout.contains("password = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("client_secret = \"<redacted>\""), "{stdout}");
    assert!(
        stdout.contains("scope = \"499b84ac-1321-427f-aa17-267ca6975798/.default\""),
        "defaults shown: {stdout}"
    );
    assert!(!stdout.contains(CANARY), "{stdout}");
}

#[test]
fn a_bad_config_names_the_file_and_the_key() {
    let file =
        write_config("[[upstream]]\nname = \"corp\"\nurl = \"https://feed.test/\"\ntimeout = \"forever\"\n");
    for args in [vec!["check-config".to_owned()], vec!["serve".to_owned(), "--config".to_owned()]] {
        let output = pipgate().args(&args).arg(file.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let expected = format!("pipgate: {}: key `upstream[0].timeout`:", file.path().display());
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert!(stderr.contains("\"30s\""), "says what was expected: {stderr}");
    }
}

#[tokio::test]
async fn serve_never_logs_the_upstream_secret() {
    let private = FakeIndex::start().await;
    private.require_basic("ci", CANARY);
    private.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    private.add("acme-tools", wheel::build("acme-tools", "1.0", "private"));
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("{CANARY}\n")).unwrap();
    let config = format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"{}\"\nauth = {{ basic = {{ username = \"ci\", password_file = \"{}\" }} }}\n",
        private.url(),
        secret_file.path().display()
    );
    let pipgate = RunningBinary::start(&config, &[]).await;
    let base = pipgate.base.clone();
    let page = get(&format!("{base}/simple/acme-core/"), &[]).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let wheel = wheel::build("acme-core", "1.0", "private");
    let file_answer = get(&format!("{base}/files/acme-core/{}", wheel.filename), &[]).await.unwrap();
    assert_eq!(file_answer.body.as_ref(), wheel.bytes.as_slice());
    private.require_basic("ci", "rotated-elsewhere");
    // A project not cached yet, so the upstream is asked and rejects the credential.
    let failed = get(&format!("{base}/simple/acme-tools/"), &[]).await.unwrap();
    assert_eq!(failed.status, 502);

    // SIGTERM: a graceful exit (checked by stop), then the whole output.
    let logs = pipgate.stop().await;
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "the most verbose level was on");
    assert!(logs.contains("rejected the credential"), "the failure is logged: {logs}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci:{CANARY}"));
    for secret in [CANARY, encoded.as_str()] {
        assert!(!logs.contains(secret), "the secret {secret} appears in the logs");
    }
}
