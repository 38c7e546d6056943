//! Real resolvers backtracking through a feed that offers no metadata (as Azure Artifacts):
//! through pipgate, `uv pip compile` and `pip install --dry-run` read each candidate's METADATA
//! from pipgate, which reads kilobytes of each wheel by range requests; the results equal the
//! direct ones, and `uv pip install` then installs them.
//!
//! The set: `app 2.0` needs `lib>=2` and `conflict==1.0`, but `lib 2.0` needs `conflict==2.0`,
//! so a resolver must look at `app 2.0`, find the conflict, and go back to `app 1.0`.

use crate::support;

use pipgate::config::MapEnv;
use support::fake_index::{FakeFile, FakeIndex, FileMode};
use support::python::{installed_version, pip, pip_install, uv, uv_install, venv_bin};
use support::wheel::build_with;
use support::{Pipgate, config_for};

/// Each wheel carries this much incompressible payload, like one with compiled code.
const PAYLOAD: usize = 1 << 20;

const EXPECTED: [(&str, &str); 3] = [("app", "1.0"), ("conflict", "2.0"), ("lib", "2.0")];

async fn feed() -> (FakeIndex, u64) {
    let feed = FakeIndex::start().await;
    feed.set_file_mode(FileMode::Ranges);
    let wheels = [
        ("app", "1.0", vec!["lib>=1"]),
        ("app", "2.0", vec!["lib>=2", "conflict==1.0"]),
        ("lib", "1.0", vec![]),
        ("lib", "2.0", vec!["conflict==2.0"]),
        ("conflict", "1.0", vec![]),
        ("conflict", "2.0", vec![]),
    ];
    let mut total = 0;
    for (name, version, requires) in wheels {
        let wheel = build_with(name, version, "feed", &requires, PAYLOAD);
        total += wheel.bytes.len() as u64;
        feed.add(name, FakeFile::from(wheel).without_metadata());
    }
    (feed, total)
}

/// `name==version` pins from `uv pip compile` output, sorted.
fn pins(output: &str) -> Vec<(String, String)> {
    let mut pins: Vec<(String, String)> = output
        .lines()
        .filter_map(|l| l.split_once("=="))
        .map(|(name, version)| {
            (name.trim().to_owned(), version.split_whitespace().next().unwrap_or("").to_owned())
        })
        .collect();
    pins.sort();
    pins
}

fn expected() -> Vec<(String, String)> {
    EXPECTED.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

async fn uv_compile(index_url: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let requirements = dir.path().join("requirements.in");
    std::fs::write(&requirements, "app\n").unwrap();
    let python = venv_bin("python");
    let run = uv(&[
        "pip",
        "compile",
        "--no-header",
        "--python",
        python.to_str().unwrap(),
        "--index-url",
        index_url,
        requirements.to_str().unwrap(),
    ])
    .await;
    assert!(run.success, "uv pip compile through {index_url}:\n{}", run.output);
    pins(&run.output)
}

async fn pip_dry_run(index_url: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let run = pip(&[
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--index-url",
        index_url,
        "--report",
        report.to_str().unwrap(),
        "app",
    ])
    .await;
    assert!(run.success, "pip install --dry-run through {index_url}:\n{}", run.output);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut pins: Vec<(String, String)> = report["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_owned(),
                i["metadata"]["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pins.sort();
    pins
}

#[tokio::test]
async fn resolvers_backtrack_through_pipgate_reading_kilobytes_of_each_wheel() {
    let (feed, total) = feed().await;
    let direct = uv_compile(&feed.url()).await;
    assert_eq!(direct, expected(), "the set needs backtracking to resolve to this");

    // uv through pipgate: the same answer, a small fraction of the bytes.
    let pipgate = Pipgate::start(&config_for(&[("feed", &feed.url())], ""), MapEnv::default()).await;
    let before = feed.file_bytes_sent();
    assert_eq!(uv_compile(&pipgate.index_url()).await, direct);
    let uv_bytes = feed.file_bytes_sent() - before;
    eprintln!("uv pip compile through pipgate: {uv_bytes} upstream bytes of {total} in the wheels");
    assert!(uv_bytes * 20 < total, "{uv_bytes} of {total} bytes: more than 5%");

    // pip (PEP 658 since 22.3) through a fresh pipgate: the same answer, as cheaply.
    let direct_pip = pip_dry_run(&feed.url()).await;
    assert_eq!(direct_pip, direct);
    let fresh = Pipgate::start(&config_for(&[("feed", &feed.url())], ""), MapEnv::default()).await;
    let before = feed.file_bytes_sent();
    assert_eq!(pip_dry_run(&fresh.index_url()).await, direct);
    let pip_bytes = feed.file_bytes_sent() - before;
    eprintln!("pip install --dry-run through pipgate: {pip_bytes} upstream bytes of {total} in the wheels");
    assert!(pip_bytes * 20 < total, "{pip_bytes} of {total} bytes: more than 5%");

    // Without the feature a resolver through pipgate downloads the wheels it looks at.
    let toml =
        config_for(&[("feed", &feed.url())], "").replace("timeout = \"3s\"", "synthesize_metadata = false");
    let plain = Pipgate::start(&toml, MapEnv::default()).await;
    let before = feed.file_bytes_sent();
    assert_eq!(uv_compile(&plain.index_url()).await, direct);
    let plain_bytes = feed.file_bytes_sent() - before;
    eprintln!("uv pip compile through pipgate without synthesized metadata: {plain_bytes} upstream bytes");
    assert!(plain_bytes > total / 2, "{plain_bytes} of {total}");

    // And the resolution installs, with uv and with pip: the wheels come through pipgate,
    // verified, and the metadata each client read matched what it installed.
    for client in ["uv", "pip"] {
        let target = tempfile::tempdir().unwrap();
        let run = match client {
            "uv" => uv_install(&pipgate.index_url(), target.path(), &["app"]).await,
            _ => pip_install(&fresh.index_url(), target.path(), &["app"]).await,
        };
        assert!(run.success, "{client}: {}", run.output);
        for (name, version) in EXPECTED {
            assert_eq!(installed_version(target.path(), name).as_deref(), Some(version), "{client}: {name}");
        }
    }
}
