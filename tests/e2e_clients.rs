//! Real pip and uv install real wheels through a running pipgate (the ground truth).
//!
//! The private feed is a real pypiserver that requires basic auth; the public index holds real
//! public wheels (six, idna, packaging) plus an attacker's `acme-core` at a much higher version.
//! Proves, for both clients:
//! - the private `acme-core` is installed with the public packages, never the attacker's, also
//!   when the request spells the name `Acme_Core` or `acme.core`;
//! - with the private feed stopped (and nothing cached) the install fails, and still never
//!   installs the attacker's;
//! - `--require-hashes` installs succeed with hashes taken from the original files;
//! - after a warm-up, with both upstreams stopped, the warmed set still installs from
//!   pipgate's cache;
//! - a private project deleted from the feed is held (I9): the client installs the private
//!   version from the held page while `max_stale` allows, then fails, and never receives the
//!   attacker's public file.

use crate::support;

use std::path::Path;

use pipgate::config::MapEnv;
use support::fake_index::FakeIndex;
use support::python::{
    PypiServer, Run, installed_origin, installed_version, pip_install, public_index, public_wheels,
    uv_install,
};
use support::{Pipgate, wheel};

const PASSWORD: &str = "e2e-canary-pw";

struct World {
    private: PypiServer,
    public: FakeIndex,
    pipgate: Pipgate,
    private_wheel: wheel::Wheel,
    packages: tempfile::TempDir,
    config: String,
}

async fn world() -> World {
    world_with("").await
}

/// The world, with `extra` config after the upstreams.
async fn world_with(extra: &str) -> World {
    let packages = tempfile::tempdir().unwrap();
    let private_wheel = wheel::build("acme-core", "1.0.0", "private");
    std::fs::write(packages.path().join(&private_wheel.filename), &private_wheel.bytes).unwrap();
    let private = PypiServer::start(packages.path(), "ci", PASSWORD).await;

    let public = public_index(true).await;

    let config = format!(
        r#"[[upstream]]
name = "corp"
url = "{}"
auth = {{ basic = {{ username = "ci", password_env = "CORP_PASSWORD" }} }}

[[upstream]]
name = "pypi"
url = "{}"

{extra}
"#,
        private.url,
        public.url()
    );
    let pipgate = Pipgate::start(&config, feed_env()).await;
    World { private, public, pipgate, private_wheel, packages, config }
}

fn feed_env() -> MapEnv {
    MapEnv::new([("CORP_PASSWORD", PASSWORD)])
}

fn assert_private_installed(run: &Run, target: &Path) {
    assert!(run.success, "install failed:\n{}", run.output);
    assert_eq!(installed_origin(target, "acme_core").as_deref(), Some("private"), "{}", run.output);
    assert_eq!(installed_version(target, "acme_core").as_deref(), Some("1.0.0"));
    assert!(!run.output.contains(PASSWORD), "the feed password reached the client:\n{}", run.output);
}

fn assert_public_installed(target: &Path) {
    assert_eq!(installed_version(target, "six").as_deref(), Some("1.16.0"));
    assert!(installed_version(target, "idna").is_some());
    assert!(installed_version(target, "packaging").is_some());
}

/// The two real clients, driven through the same scenarios.
#[derive(Clone, Copy, Debug)]
enum Client {
    Pip,
    Uv,
}

impl Client {
    async fn install(self, index: &str, target: &Path, args: &[&str]) -> Run {
        match self {
            Client::Pip => pip_install(index, target, args).await,
            Client::Uv => uv_install(index, target, args).await,
        }
    }

    /// Installs `acme-core` with the private feed down, with output that shows why it failed:
    /// pip only prints the HTTP status of an index page at `-vv`.
    async fn install_while_feed_is_down(self, index: &str, target: &Path) -> Run {
        match self {
            Client::Pip => pip_install(index, target, &["-vv", "acme-core"]).await,
            Client::Uv => uv_install(index, target, &["acme-core"]).await,
        }
    }

    fn shows_the_gateway_error(self, output: &str) -> bool {
        match self {
            Client::Pip => output.contains("502 error responses"),
            Client::Uv => output.contains("502") || output.contains("Bad Gateway"),
        }
    }
}

async fn installs_private_and_public_packages_through_pipgate(client: Client) {
    let mut world = world().await;
    let index = world.pipgate.index_url();

    let target = tempfile::tempdir().unwrap();
    let run = client.install(&index, target.path(), &["acme-core", "six", "idna", "packaging"]).await;
    assert_private_installed(&run, target.path());
    assert_public_installed(target.path());

    for spelling in ["Acme_Core", "acme.core"] {
        let target = tempfile::tempdir().unwrap();
        let run = client.install(&index, target.path(), &[spelling]).await;
        assert_private_installed(&run, target.path());
    }

    // --require-hashes with hashes computed from the files themselves.
    let target = tempfile::tempdir().unwrap();
    let requirements = target.path().join("requirements.txt");
    let six =
        std::fs::read(public_wheels().into_iter().find(|p| p.to_string_lossy().contains("six-")).unwrap())
            .unwrap();
    std::fs::write(
        &requirements,
        format!(
            "acme-core==1.0.0 --hash=sha256:{}\nsix==1.16.0 --hash=sha256:{}\n",
            wheel::sha256_hex(&world.private_wheel.bytes),
            wheel::sha256_hex(&six)
        ),
    )
    .unwrap();
    let install_dir = target.path().join("site");
    let run = client
        .install(&index, &install_dir, &["--require-hashes", "-r", requirements.to_str().unwrap()])
        .await;
    assert_private_installed(&run, &install_dir);
    assert_eq!(installed_version(&install_dir, "six").as_deref(), Some("1.16.0"));

    // Both upstreams go down: the warmed set installs from pipgate's cache alone.
    world.private.stop().await;
    world.public.stop();
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&index, target.path(), &["acme-core", "six", "idna", "packaging"]).await;
    assert_private_installed(&run, target.path());
    assert_public_installed(target.path());
}

async fn fails_closed_when_the_private_feed_is_down(client: Client) {
    let mut world = world().await;
    world.private.stop().await;
    let target = tempfile::tempdir().unwrap();
    let run = client.install_while_feed_is_down(&world.pipgate.index_url(), target.path()).await;
    assert!(!run.success, "{client:?}: the install should fail:\n{}", run.output);
    assert_eq!(installed_origin(target.path(), "acme_core"), None, "{}", run.output);
    assert!(
        client.shows_the_gateway_error(&run.output),
        "{client:?} shows the gateway error:\n{}",
        run.output
    );
    assert_eq!(world.public.count("/simple/acme-core/"), 0, "the public index was never asked");
}

async fn a_deleted_private_project_is_held(client: Client) {
    let cache = tempfile::tempdir().unwrap();
    let holding =
        format!("[cache]\ndir = \"{}\"\nindex_ttl = \"0s\"\nmax_stale = \"1h\"\n", cache.path().display());
    let world = world_with(&holding).await;
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&world.pipgate.index_url(), target.path(), &["acme-core"]).await;
    assert_private_installed(&run, target.path());

    // The private feed loses the project (deleted by mistake); PyPI has a higher version.
    std::fs::remove_file(world.packages.path().join(&world.private_wheel.filename)).unwrap();
    let target = tempfile::tempdir().unwrap();
    let run = client.install(&world.pipgate.index_url(), target.path(), &["acme-core"]).await;
    assert_private_installed(&run, target.path());

    // The same cache and owner memory, after a restart, once the stale window is over: the
    // install fails. (One pipgate per cache directory: the first stops before the second starts.)
    let ended = world.config.replace("max_stale = \"1h\"", "max_stale = \"0s\"");
    world.pipgate.server.shutdown().await;
    let after = Pipgate::start(&ended, feed_env()).await;
    let target = tempfile::tempdir().unwrap();
    let run = client.install_while_feed_is_down(&after.index_url(), target.path()).await;
    assert!(!run.success, "{client:?}: the install should fail:\n{}", run.output);
    assert_eq!(installed_origin(target.path(), "acme_core"), None, "{}", run.output);
    assert!(client.shows_the_gateway_error(&run.output), "{client:?}:\n{}", run.output);
    assert_eq!(world.public.count("/files/"), 0, "the attacker's file was never fetched");
    let metrics = support::get(&format!("{}/metrics", after.base), &[]).await.unwrap().text();
    assert!(
        metrics.contains("pipgate_owner_holds_total{lower=\"pypi\",owner=\"corp\"} 1"),
        "the failure is the hold:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_a_held_project_from_its_owner_or_not_at_all() {
    a_deleted_private_project_is_held(Client::Pip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_installs_a_held_project_from_its_owner_or_not_at_all() {
    a_deleted_private_project_is_held(Client::Uv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_private_and_public_packages_through_pipgate() {
    installs_private_and_public_packages_through_pipgate(Client::Pip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_installs_private_and_public_packages_through_pipgate() {
    installs_private_and_public_packages_through_pipgate(Client::Uv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_fails_closed_when_the_private_feed_is_down() {
    fails_closed_when_the_private_feed_is_down(Client::Pip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_fails_closed_when_the_private_feed_is_down() {
    fails_closed_when_the_private_feed_is_down(Client::Uv).await;
}

/// A page large enough that its first gzip is split over two threads (over 1 MiB of client
/// JSON): pip asks first (a cold answer), uv second; both read the one gzip member and install
/// the one real wheel among thousands of listed files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_install_from_a_page_of_thousands_of_files() {
    let index = FakeIndex::start().await;
    for i in 0..6_000 {
        index.add("acme-big", support::fake_index::FakeFile::blob(&format!("acme_big-0.{i}"), 1, i));
    }
    let real = wheel::build("acme-big", "9.9.9", "private");
    index.add("acme-big", real);
    let pipgate =
        Pipgate::start(&format!("[[upstream]]\nname = \"corp\"\nurl = \"{}\"\n", index.url()), feed_env())
            .await;
    let url = pipgate.index_url();

    for client in [Client::Pip, Client::Uv] {
        let target = tempfile::tempdir().unwrap();
        let run = client.install(&url, target.path(), &["acme-big==9.9.9"]).await;
        assert!(run.success, "{client:?}:\n{}", run.output);
        assert_eq!(installed_version(target.path(), "acme_big").as_deref(), Some("9.9.9"), "{client:?}");
    }
    let plain = support::get(&format!("{url}acme-big/"), &[("accept", support::PIP_ACCEPT)]).await.unwrap();
    assert!(plain.body.len() > 1 << 20, "the page is past the split size: {} bytes", plain.body.len());
}
