//! Object-storage emulators on 127.0.0.1 for the shared-tier tests: Azurite (Azure Blob
//! Storage, from the npm registry) and moto's server (S3, from PyPI), both installed into
//! `.e2e/` by `scripts/e2e-setup.sh`. Each starts on a port of its own with a fresh data
//! directory, gets its container or bucket created, and is killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use tokio::process::{Child, Command};

use super::python::{e2e_dir, free_port};

/// The emulator account Azurite always has, and its published key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The container (Azure) or bucket (S3) the tests use.
pub const CONTAINER: &str = "pipgate-cache";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Azurite,
    Moto,
}

/// A running emulator.
pub struct Emulator {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
    data: tempfile::TempDir,
    /// Secret files for pipgate's config.
    secrets: tempfile::TempDir,
}

impl Emulator {
    pub async fn start(kind: Kind) -> Emulator {
        let data = tempfile::tempdir().unwrap();
        let secrets = tempfile::tempdir().unwrap();
        let mut emulator = Emulator { kind, port: 0, child: None, data, secrets };
        for _ in 0..5 {
            emulator.port = free_port();
            if emulator.run().await {
                emulator.create_container().await;
                return emulator;
            }
        }
        panic!("the {kind:?} emulator did not start");
    }

    /// Starts the process on `self.port`; false if it exited (the port was taken).
    async fn run(&mut self) -> bool {
        let e2e = e2e_dir();
        let mut command = match self.kind {
            Kind::Azurite => {
                let mut c = Command::new(e2e.join("azurite/node_modules/.bin/azurite-blob"));
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &self.port.to_string(), "--location"])
                    .arg(self.data.path())
                    .args(["--silent", "--skipApiVersionCheck", "--loose"]);
                c
            }
            Kind::Moto => {
                let mut c = Command::new(e2e.join("storage/bin/moto_server"));
                c.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
                c
            }
        };
        assert!(
            command.as_std().get_program().to_str().is_some_and(|p| Path::new(p).exists()),
            "the {:?} emulator is not installed in {}: run scripts/test.sh (scripts/e2e-setup.sh installs it)",
            self.kind,
            e2e.display()
        );
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        for _ in 0..400 {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                self.child = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the {:?} emulator did not listen on {}", self.kind, self.port);
    }

    async fn create_container(&self) {
        let script = match self.kind {
            Kind::Azurite => format!(
                "from azure.storage.blob import BlobServiceClient\n\
                 c = BlobServiceClient.from_connection_string('DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={}')\n\
                 from azure.core.exceptions import ResourceExistsError\n\
                 try: c.create_container('{CONTAINER}')\n\
                 except ResourceExistsError: pass\n",
                self.url()
            ),
            Kind::Moto => format!(
                "import boto3\n\
                 boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{CONTAINER}')\n",
                self.url()
            ),
        };
        let output = Command::new(e2e_dir().join("storage/bin/python"))
            .args(["-c", &script])
            .env("NO_PROXY", "*")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "creating the container: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the emulator (its data stays), as a store that goes down.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port. The emulators keep their container metadata in
    /// memory between saves, so it is created again (a real store keeps it).
    pub async fn restart(&mut self) {
        assert!(self.run().await, "the {:?} emulator restarts on port {}", self.kind, self.port);
        self.create_container().await;
    }

    /// The store's URL as pipgate's `cache.shared.url` takes it.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Azurite => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
            Kind::Moto => format!("http://127.0.0.1:{}", self.port),
        }
    }

    fn secret(&self, name: &str, value: &str) -> PathBuf {
        let path = self.secrets.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path
    }

    /// The `[cache.shared]` table for this store, with `extra` keys.
    pub fn config(&self, extra: &str) -> String {
        let credentials = match self.kind {
            Kind::Azurite => format!(
                "kind = \"azure\"\naccount = \"{AZURITE_ACCOUNT}\"\naccount_key_file = {:?}\n",
                self.secret("account-key", AZURITE_KEY)
            ),
            Kind::Moto => format!(
                "kind = \"s3\"\nregion = \"us-east-1\"\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
                self.secret("key-id", "test"),
                self.secret("secret-key", "test")
            ),
        };
        format!(
            "[cache.shared]\n{credentials}container = \"{CONTAINER}\"\nurl = \"{}\"\n{extra}\n",
            self.url()
        )
    }

    /// A client of the same store, for tests that look at or tamper with its objects.
    pub fn client(&self) -> Arc<dyn ObjectStore> {
        match self.kind {
            Kind::Azurite => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(AZURITE_ACCOUNT)
                    .with_access_key(AZURITE_KEY)
                    .with_container_name(CONTAINER)
                    .with_endpoint(self.url())
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
            Kind::Moto => Arc::new(
                object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(CONTAINER)
                    .with_region("us-east-1")
                    .with_endpoint(self.url())
                    .with_access_key_id("test")
                    .with_secret_access_key("test")
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
        }
    }
}
