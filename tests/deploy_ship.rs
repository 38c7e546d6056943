//! What ships beside the binary works as shipped:
//! - the Dockerfile is hadolint clean, and the release binary its `cargo build` line makes
//!   (scripts/test.sh runs that line verbatim) serves the embedded default with the image's
//!   ENV, USER, ENTRYPOINT and CMD, as the image's non-root user, writing only its cache;
//! - the Helm chart's values (default and full) validate against `values.schema.json`, which
//!   rejects a mistyped key; the rendered default and full installs and the runner examples pass
//!   the Kubernetes schemas (`kubernetes-validate --strict`); the templates, values and
//!   rendered files agree with each other; the chart's copies of the alert rules and dashboard
//!   are the ones in `deploy/`;
//! - every pipgate config that ships (the chart's rendered ConfigMaps, the runner sidecars'
//!   ConfigMap and environment overlays, the systemd example) passes `pipgate check-config`;
//! - the CI examples validate against GitHub's and GitLab's schemas;
//! - the systemd unit passes `systemd-analyze verify`, and pipgate tells systemd `READY=1`
//!   once it serves and `STOPPING=1` when it drains (`Type=notify`).
//!
//! hadolint, kubernetes-validate and check-jsonschema come from PyPI into `.e2e/venv`
//! (`scripts/e2e-setup.sh`); systemd-analyze is the machine's.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml_ng::Value;
use support::python::{free_port, venv_bin};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a tool and returns (success, stdout + stderr).
fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{} runs ({e}); scripts/e2e-setup.sh installs it", program.display()));
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn must_pass(program: &Path, args: &[&str]) -> String {
    let (ok, text) = run(program, args);
    assert!(ok, "{} {args:?} failed:\n{text}", program.display());
    text
}

/// Every YAML document of a file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key)).and_then(Value::as_str)
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
                joined.push((word.to_owned(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    joined
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    must_pass(&venv_bin("hadolint"), &["Dockerfile"]);
}

/// The two tests that start the binary on a port picked with `free_port` run one at a time,
/// so they cannot pick the same port and talk to each other's pipgate.
static BINARY_ON_A_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_image_command_line_serves_the_embedded_default_as_its_user() {
    let _one_at_a_time = BINARY_ON_A_PORT.lock().await;
    let instructions = dockerfile();
    let build = instructions
        .iter()
        .find(|(w, r)| w == "RUN" && r.starts_with("cargo build"))
        .expect("a cargo build line");
    assert!(build.1.contains("--release") && build.1.contains("--locked"), "{}", build.1);
    let binary = repo("target/release/pipgate");
    assert!(
        binary.exists(),
        "run scripts/test.sh: it builds {} with the Dockerfile's line ({})",
        binary.display(),
        build.1
    );
    let json_args = |word: &str| -> Vec<String> {
        let (_, rest) =
            instructions.iter().rev().find(|(w, _)| w == word).unwrap_or_else(|| panic!("no {word}"));
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("{word} is not a JSON array ({e}): {rest}"))
    };
    let entrypoint = json_args("ENTRYPOINT");
    let cmd = json_args("CMD");
    assert_eq!(entrypoint, ["/usr/local/bin/pipgate"], "the image's entrypoint is the binary the build made");
    let mut env: Vec<(String, String)> = instructions
        .iter()
        .filter(|(w, _)| w == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .map(|pair| pair.split_once('=').unwrap())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let user = &instructions.iter().rev().find(|(w, _)| w == "USER").expect("a USER").1;
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric user");
    assert_ne!(uid, 0, "the image runs as a non-root user");

    // The image's cache volume, here a directory of the test owned by the image's user.
    let cache = tempfile::tempdir().unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    if running_as_root() {
        std::os::unix::fs::chown(cache.path(), Some(uid), Some(uid)).unwrap();
    }
    // A port free a moment ago may be taken by a parallel test before pipgate binds it: then
    // pipgate exits, and the next port is tried.
    let (child, base) = 'start: {
        for _ in 0..5 {
            let port = free_port();
            for (key, value) in env.iter_mut() {
                match key.as_str() {
                    "PIPGATE_CACHE__DIR" => *value = cache.path().display().to_string(),
                    "PIPGATE_SERVER__LISTEN" => {
                        assert!(value.starts_with("0.0.0.0:"), "the image listens on every address: {value}");
                        *value = format!("0.0.0.0:{port}");
                    }
                    _ => {}
                }
            }
            let mut command = tokio::process::Command::new(&binary);
            command.args(&cmd).env_clear().envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
            command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            // As root (CI), run as the image's user, from a directory it cannot write: like the
            // read-only root filesystem, anything written outside the cache would fail.
            command.current_dir(root_dir.path());
            if running_as_root() {
                command.uid(uid).gid(uid);
            }
            let mut child = command.spawn().unwrap();
            let base = format!("http://127.0.0.1:{port}");
            for _ in 0..200 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if support::get(&format!("{base}/readyz"), &[]).await.is_ok_and(|a| a.status == 200)
                    && child.try_wait().unwrap().is_none()
                {
                    break 'start (child, base);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("the image's command line did not serve /readyz");
    };
    let health = support::get(&format!("{base}/healthz"), &[]).await.unwrap();
    assert_eq!(health.status, 200);
    assert!(cache.path().join(".lock").exists(), "the cache volume holds pipgate's state");
    assert_eq!(
        std::fs::read_dir(root_dir.path()).unwrap().count(),
        0,
        "nothing is written outside the cache"
    );
    // Kubernetes stops a pod with SIGTERM: the image's process drains and exits cleanly.
    let pid = child.id().unwrap();
    std::process::Command::new("kill").arg(pid.to_string()).status().unwrap();
    let output =
        tokio::time::timeout(Duration::from_secs(15), child.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "the image's command exits cleanly on SIGTERM: {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("\"pipgate listening\""), "JSON logs as the image sets them:\n{log}");
}

fn running_as_root() -> bool {
    // Owner of /proc/self is the effective user.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

#[test]
fn chart_values_validate_and_a_mistyped_key_is_rejected() {
    let schema = repo("helm/pipgate/values.schema.json");
    let schema = schema.to_str().unwrap();
    let checker = venv_bin("check-jsonschema");
    must_pass(
        &checker,
        &["--schemafile", schema, "helm/pipgate/values.yaml", "deploy/helm/full-values.yaml"],
    );
    let dir = tempfile::tempdir().unwrap();
    for (find, typo) in [
        ("replicaCount:", "replicaCont:"),
        ("  maxSize:", "  maxsize:"),
        ("    enabled: false\n    # -- Upstreams clients", "    enable: false\n    # -- Upstreams clients"),
    ] {
        let values = std::fs::read_to_string(repo("helm/pipgate/values.yaml")).unwrap();
        assert!(values.contains(find), "{find}");
        let path = dir.path().join("typo.yaml");
        std::fs::write(&path, values.replacen(find, typo, 1)).unwrap();
        let (ok, text) = run(&checker, &["--schemafile", schema, path.to_str().unwrap()]);
        assert!(!ok, "a mistyped key ({typo}) passed the schema");
        assert!(text.contains("Additional properties are not allowed"), "{text}");
    }
}

#[test]
fn rendered_installs_and_runner_examples_pass_the_kubernetes_schemas() {
    let validate = venv_bin("kubernetes-validate");
    let text = must_pass(
        &validate,
        &["--strict", "deploy/helm/default.yaml", "deploy/helm/full.yaml", "deploy/runners/runner-pod.yaml"],
    );
    for object in [
        "deployment/pipgate",
        "networkpolicy/pipgate",
        "ingress/pipgate",
        "horizontalpodautoscaler/pipgate",
        "pod/ci-job",
    ] {
        assert!(
            text.contains(&format!("passed for resource {object}")),
            "{object} was not validated:\n{text}"
        );
    }
    // The runner scale set's pod template, validated as the Pod it becomes.
    let values = &documents(&repo("deploy/runners/arc-runner-scale-set-values.yaml"))[0];
    let mut pod = serde_yaml_ng::Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    let mut metadata = values["template"]["metadata"].clone();
    metadata.as_mapping_mut().unwrap().insert("name".into(), "arc-runner".into());
    pod.insert("metadata".into(), metadata);
    pod.insert("spec".into(), values["template"]["spec"].clone());
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), serde_yaml_ng::to_string(&pod).unwrap()).unwrap();
    let text = must_pass(&validate, &["--strict", file.path().to_str().unwrap()]);
    assert!(text.contains("passed for resource pod/arc-runner"), "{text}");
    // Both runner examples run pipgate as a native sidecar on loopback.
    let runner_pod = documents(&repo("deploy/runners/runner-pod.yaml"));
    for spec in [&values["template"]["spec"], &runner_pod[1]["spec"]] {
        let sidecar =
            spec["initContainers"].as_sequence().unwrap().iter().find(|c| c["name"] == "pipgate").unwrap();
        assert_eq!(sidecar["restartPolicy"], "Always");
        let job = &spec["containers"][0];
        let env: Vec<(&str, &str)> = job["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        for name in ["PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL"] {
            assert!(env.contains(&(name, "http://127.0.0.1:8080/simple/")), "{name}: {env:?}");
        }
        assert!(!env.iter().any(|(name, _)| name.contains("EXTRA_INDEX")), "no extra index: {env:?}");
    }
}

/// `.Values.a.b` paths a template names.
fn value_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in [".Values.", "$p."] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            // `$p := .Values.pipgate` names a whole subtree for the uses through `$p.`.
            let assigned = rest[..at].ends_with(":= ");
            rest = &rest[at + prefix.len()..];
            if assigned {
                continue;
            }
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
            let path = path.trim_end_matches('.');
            found.insert(if prefix == "$p." { format!("pipgate.{path}") } else { path.to_owned() });
        }
    }
    found
}

fn leaf_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().unwrap();
                let path = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
                leaf_paths(child, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn chart_templates_values_and_rendered_installs_agree() {
    let templates = repo("helm/pipgate/templates");
    let mut references = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for entry in std::fs::read_dir(&templates).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        references.extend(value_references(&text));
        kinds.extend(text.lines().filter_map(|l| l.strip_prefix("kind: ")).map(str::to_owned));
    }
    let values = &documents(&repo("helm/pipgate/values.yaml"))[0];
    let mut leaves = BTreeSet::new();
    leaf_paths(values, "", &mut leaves);
    for reference in &references {
        let known = leaves.iter().any(|leaf| leaf == reference || leaf.starts_with(&format!("{reference}.")));
        assert!(known, "templates use .Values.{reference}, which values.yaml does not define");
    }
    for leaf in &leaves {
        let used = references.iter().any(|r| leaf == r || leaf.starts_with(&format!("{r}.")));
        assert!(used, "values.yaml defines {leaf}, which no template uses");
    }
    // The chart README's table lists every value (or the object holding it) with its default.
    let readme = std::fs::read_to_string(repo("helm/pipgate/README.md")).unwrap();
    let documented: Vec<&str> =
        readme.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).collect();
    for leaf in &leaves {
        let listed = documented.iter().any(|d| leaf == d || leaf.starts_with(&format!("{d}.")));
        assert!(listed, "helm/pipgate/README.md does not list {leaf}");
    }
    let full: BTreeSet<String> = documents(&repo("deploy/helm/full.yaml"))
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, full, "the full install renders every kind the templates make");
    let default: Vec<String> = documents(&repo("deploy/helm/default.yaml"))
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(default, ["ServiceAccount", "ConfigMap", "Service", "Deployment"]);
    for (copy, original) in [
        ("helm/pipgate/files/pipgate-alerts.yml", "deploy/prometheus/pipgate-alerts.yml"),
        ("helm/pipgate/files/pipgate.json", "deploy/grafana/pipgate.json"),
    ] {
        assert_eq!(
            std::fs::read(repo(copy)).unwrap(),
            std::fs::read(repo(original)).unwrap(),
            "{copy} differs from {original}"
        );
    }
    // The full install's pods carry the restricted security context and the workload identity.
    let deployment =
        documents(&repo("deploy/helm/full.yaml")).into_iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["azure.workload.identity/use"], "true");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 45, "preStop 5 s + the 30 s drain + 10 s");
}

/// Runs `pipgate check-config` on `toml` with secret files made up under a scratch root in
/// place of `/var/run/secrets/pipgate`, and the cache in a scratch directory.
fn check_config(what: &str, toml: &str, env: &[(&str, &str)]) {
    let scratch = tempfile::tempdir().unwrap();
    let secrets = scratch.path().join("secrets");
    let mut text = toml.replace("/var/run/secrets/pipgate", secrets.to_str().unwrap());
    text = text.replace("/var/cache/pipgate", scratch.path().join("cache").to_str().unwrap());
    for line in text.lines() {
        for key in ["password_file = \"", "token_file = \"", "file = \""] {
            if let Some(at) = line.find(key) {
                let path = line[at + key.len()..].split('"').next().unwrap();
                if path.starts_with(secrets.to_str().unwrap()) {
                    std::fs::create_dir_all(Path::new(path).parent().unwrap()).unwrap();
                    let content = if path.ends_with("htpasswd") {
                        format!("ci:{}\n", bcrypt::hash("x", 4).unwrap())
                    } else {
                        "secret-value\n".to_owned()
                    };
                    std::fs::write(path, content).unwrap();
                }
            }
        }
    }
    let file = scratch.path().join("pipgate.toml");
    std::fs::write(&file, &text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pipgate"))
        .arg("check-config")
        .arg(&file)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what}: check-config refused it:\n{}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_shipped_pipgate_config_passes_check_config() {
    let mut checked = 0;
    for file in ["deploy/helm/default.yaml", "deploy/helm/full.yaml", "deploy/runners/runner-pod.yaml"] {
        for doc in documents(&repo(file)) {
            if let Some(toml) = str_at(&doc, &["data", "pipgate.toml"]) {
                check_config(file, toml, &[]);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3);
    check_config(
        "deploy/systemd/pipgate.toml",
        &std::fs::read_to_string(repo("deploy/systemd/pipgate.toml")).unwrap(),
        &[("CORP_FEED_PAT", "x")],
    );
    // The scale set's sidecar: the embedded default plus its PIPGATE_* variables.
    let values = &documents(&repo("deploy/runners/arc-runner-scale-set-values.yaml"))[0];
    let sidecar = values["template"]["spec"]["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pipgate")
        .unwrap();
    let env: Vec<(String, String)> = sidecar["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .filter(|(name, _)| name != "PIPGATE_CACHE__DIR")
        .collect();
    assert!(env.iter().any(|(name, _)| name == "PIPGATE_UPSTREAM"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    check_config("the scale set's sidecar", pipgate::config::DEFAULT_CONFIG, &env);
}

#[test]
fn ci_examples_validate_against_their_schemas() {
    let checker = venv_bin("check-jsonschema");
    must_pass(
        &checker,
        &[
            "--builtin-schema",
            "vendor.github-workflows",
            "deploy/ci/github-actions.yml",
            "deploy/ci/github-publish.yml",
        ],
    );
    must_pass(&checker, &["--builtin-schema", "vendor.gitlab-ci", "deploy/ci/gitlab-ci.yml"]);
    for file in ["deploy/ci/github-actions.yml", "deploy/ci/gitlab-ci.yml"] {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        assert!(text.contains("PIP_INDEX_URL: http://127.0.0.1:8080/simple/"), "{file}");
        assert!(!text.contains("PIP_EXTRA_INDEX_URL:"), "{file} sets an extra index");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not on this machine: the unit is not verified here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo("deploy/systemd/pipgate.service")).unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("DynamicUser=yes")
            && unit.contains("ProtectSystem=strict")
    );
    let path = dir.path().join("pipgate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/pipgate", env!("CARGO_BIN_EXE_pipgate"))).unwrap();
    let (ok, text) = run(&analyze, &["verify", path.to_str().unwrap()]);
    assert!(ok && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
    // The check can fail: a misspelt key is reported.
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("ProtectSystem=", "ProtectSystm="))
        .unwrap();
    let (_, text) = run(&analyze, &["verify", path.to_str().unwrap()]);
    assert!(text.contains("Unknown key"), "{text}");
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

#[tokio::test]
async fn pipgate_tells_systemd_when_it_serves_and_when_it_drains() {
    let _one_at_a_time = BINARY_ON_A_PORT.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut buf = [0u8; 64];
    // A port free a moment ago may be taken by a parallel test before pipgate binds it: then
    // pipgate exits, and the next port is tried.
    let (mut child, port, n) = 'start: {
        for _ in 0..5 {
            let port = free_port();
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipgate"))
                .arg("serve")
                .env_clear()
                .env("NOTIFY_SOCKET", &socket_path)
                .env("PIPGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .env("PIPGATE_CACHE__DIR", cache.path())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::select! {
                received = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf)) => {
                    break 'start (child, port, received.expect("READY within 10 s").unwrap());
                }
                _ = child.wait() => continue,
            }
        }
        panic!("pipgate did not start on any of 5 ports");
    };
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving.
    assert_eq!(support::get(&format!("http://127.0.0.1:{port}/healthz"), &[]).await.unwrap().status, 200);
    Command::new("kill").arg(child.id().unwrap().to_string()).status().unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("STOPPING within 10 s")
        .unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().await.unwrap().success());
}
