//! Real pip and uv authenticating to pipgate (`[access]`), the way users set them up:
//! - an htpasswd user and password in the index URL's userinfo installs the private package
//!   and public ones;
//! - a static token in a netrc file (`NETRC`) does the same, with a plain index URL;
//! - without a credential, the public upstream (which anonymous clients may read) still
//!   installs, and the private package is refused with a 401 the client shows, never replaced
//!   by the attacker's public package of the same name;
//! - a wrong password is refused the same way.

use crate::support;

use std::path::Path;

use support::fake_index::FakeIndex;
use support::python::{
    Run, installed_origin, installed_version, pip_install_with, public_index, uv_install_with,
};
use support::{Pipgate, config_for, wheel};

const TOKEN: &str = "pgt_e2e-netrc-token-canary-71c4";
const PASSWORD: &str = "alice-e2e-pw-canary";

struct World {
    pipgate: Pipgate,
    public: FakeIndex,
    _private: FakeIndex,
    _htpasswd: tempfile::NamedTempFile,
}

async fn world() -> World {
    let private = FakeIndex::start().await;
    private.add("acme-core", wheel::build("acme-core", "1.0.0", "private"));
    let public = public_index(true).await;
    let htpasswd = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(htpasswd.path(), format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap())).unwrap();
    let access = format!(
        "[access]\nanonymous = [\"pypi\"]\nmax_failures_per_minute = 1000\n\n[[access.token]]\nname = \"ci\"\nhash = \"{}\"\n\n[[access.htpasswd]]\nfile = \"{}\"\n",
        pipgate::hash_token(TOKEN),
        htpasswd.path().display()
    );
    let config = config_for(&[("corp", &private.url()), ("pypi", &public.url())], &access);
    let pipgate = Pipgate::start(&config, Default::default()).await;
    World { pipgate, public, _private: private, _htpasswd: htpasswd }
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Pip,
    Uv,
}

impl Client {
    async fn install(self, index: &str, target: &Path, packages: &[&str], env: &[(&str, &str)]) -> Run {
        match self {
            // pip prints the status of an index page it could not read only at `-vv`.
            Client::Pip => {
                let args: Vec<&str> = ["-vv"].iter().chain(packages).copied().collect();
                pip_install_with(index, target, &args, env).await
            }
            Client::Uv => uv_install_with(index, target, packages, env).await,
        }
    }
}

/// The index URL with `user:password@` in it.
fn with_userinfo(index: &str, user: &str, password: &str) -> String {
    index.replacen("http://", &format!("http://{user}:{password}@"), 1)
}

fn assert_private_installed(run: &Run, target: &Path) {
    assert!(run.success, "install failed:\n{}", run.output);
    assert_eq!(installed_origin(target, "acme_core").as_deref(), Some("private"), "{}", run.output);
    assert_eq!(installed_version(target, "six").as_deref(), Some("1.16.0"));
}

async fn authenticated_clients_install_and_anonymous_ones_are_refused(client: Client) {
    let w = world().await;
    let index = w.pipgate.index_url();

    let target = tempfile::tempdir().unwrap();
    let run = client
        .install(&with_userinfo(&index, "alice", PASSWORD), target.path(), &["acme-core", "six"], &[])
        .await;
    assert_private_installed(&run, target.path());

    let netrc = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(netrc.path(), format!("machine 127.0.0.1\nlogin ci\npassword {TOKEN}\n")).unwrap();
    let netrc_path = netrc.path().to_str().unwrap();
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&index, target.path(), &["acme-core", "six"], &[("NETRC", netrc_path)]).await;
    assert_private_installed(&run, target.path());

    // Anonymous: the public package installs, the private name is refused (not replaced).
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&index, target.path(), &["six"], &[]).await;
    assert!(run.success, "anonymous clients read the public upstream:\n{}", run.output);
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&index, target.path(), &["acme-core"], &[]).await;
    assert!(!run.success, "installed without a credential:\n{}", run.output);
    assert!(run.output.contains("401"), "the client shows the 401:\n{}", run.output);
    assert!(installed_origin(target.path(), "acme_core").is_none(), "the attacker's package was installed");

    let target = tempfile::tempdir().unwrap();
    let run =
        client.install(&with_userinfo(&index, "alice", "wrong"), target.path(), &["acme-core"], &[]).await;
    assert!(!run.success, "installed with a wrong password:\n{}", run.output);
    assert!(run.output.contains("401"), "the client shows the 401:\n{}", run.output);
    assert!(!run.output.contains(PASSWORD) && !run.output.contains(TOKEN));
    assert_eq!(
        w.public.count("/simple/acme-core/"),
        0,
        "the public index is never asked for the private name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_authenticates_by_userinfo_and_netrc_and_is_refused_without() {
    authenticated_clients_install_and_anonymous_ones_are_refused(Client::Pip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_authenticates_by_userinfo_and_netrc_and_is_refused_without() {
    authenticated_clients_install_and_anonymous_ones_are_refused(Client::Uv).await;
}
