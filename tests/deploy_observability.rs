//! The dashboard and alert rules in `deploy/` match what pipgate exports:
//! - `promtool check rules` and `promtool test rules` pass on `deploy/prometheus/`;
//! - a live scrape of a running pipgate (an Azure upstream with a token, a public one, traffic,
//!   a fail-closed lookup) passes `promtool check metrics`;
//! - every metric the dashboard and the rules name is in that scrape;
//! - the dashboard is what its generator writes, uses the datasource variable everywhere, sets a
//!   unit on every panel and rates over `$__rate_interval`.
//!
//! promtool comes from Debian's `prometheus` package; `scripts/e2e-setup.sh` installs it.

use crate::support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::binary::RunningBinary;
use support::fake_index::{FakeIndex, PageMode, TokenBook};
use support::identity::IdentityEndpoint;
use support::{get, wheel};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/e2e-setup.sh installs it: Debian package prometheus)");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// `pipgate_…` and `process_…` names in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["pipgate_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let boundary = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            rest = &rest[at + name.len().max(1)..];
            if boundary {
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(name, |n, s| n.strip_suffix(s).map_or(n.clone(), str::to_owned));
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn the_alert_rules_check_and_pass_their_unit_tests() {
    let rules = deploy("prometheus/pipgate-alerts.yml");
    let checked = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(checked.contains("SUCCESS: 11 rules found"), "{checked}");
    let tested =
        promtool(&["test", "rules", deploy("prometheus/pipgate-alerts.test.yml").to_str().unwrap()], None);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let text = std::fs::read_to_string(&rules).unwrap();
    for rule in text.split("- alert: ").skip(1) {
        let name = rule.lines().next().unwrap();
        for needed in ["for: ", "severity: ", "summary: ", "description: ", "runbook_url: "] {
            assert!(rule.contains(needed), "{name} has no {needed}");
        }
        let anchor = format!("### {name}\n");
        assert!(
            std::fs::read_to_string(deploy("README.md")).unwrap().contains(&anchor),
            "no runbook for {name}"
        );
        assert!(rule.contains(&format!("README.md#{}", name.to_lowercase())), "{name}'s runbook_url");
    }
}

#[test]
fn the_dashboard_is_generated_and_follows_the_conventions() {
    let status = Command::new("python3").arg(deploy("grafana/dashboard.py")).arg("--check").status().unwrap();
    assert!(status.success(), "deploy/grafana/pipgate.json differs from what dashboard.py writes");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/pipgate.json")).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "pipgate-overview");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance", "upstream"]);
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()),
            "{title} has no unit"
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            if expr.contains("rate(") || expr.contains("increase(") {
                assert!(expr.contains("[$__rate_interval]"), "{title}: {expr}");
            }
            if expr.contains("histogram_quantile") {
                assert!(expr.contains("sum by (le,"), "{title}: quantiles from summed buckets: {expr}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_rules_use_is_exported_and_the_scrape_checks() {
    // An Azure upstream (so token metrics exist), a health-checked feed, and the public index.
    let book = TokenBook::default();
    let feed = FakeIndex::start().await;
    feed.require_tokens(book.clone());
    feed.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let public = FakeIndex::start().await;
    public.add("six", wheel::build("six", "1.16.0", "public"));
    let identity = IdentityEndpoint::start(book, Duration::from_secs(3600), "secret-header", None).await;
    // A shared tier (so its metrics exist) on a port nothing listens on: it is marked down,
    // and files come from the upstreams as ever.
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("key");
    std::fs::write(&key, "k\n").unwrap();
    let config = format!(
        "[[upstream]]\nname = \"corp\"\nurl = \"{}\"\nauth = {{ azure = \"managed-identity\" }}\n\n[[upstream]]\nname = \"pypi\"\nurl = \"{}\"\n\n\
         [cache.shared]\nkind = \"s3\"\ncontainer = \"c\"\nurl = \"http://127.0.0.1:9\"\naccess_key_id_file = {key:?}\nsecret_access_key_file = {key:?}\n",
        feed.url(),
        public.url()
    );
    let env = [
        ("IDENTITY_ENDPOINT", format!("http://{}/msi/token", identity.addr)),
        ("IDENTITY_HEADER", "secret-header".to_owned()),
        ("PIPGATE_OWNERSHIP__SHADOW_CHECK", "true".to_owned()),
    ];
    let pipgate = RunningBinary::start(&config, &env).await;
    pipgate.wait_ready().await;
    for project in ["acme-core", "six", "acme-core"] {
        assert_eq!(get(&format!("{}/simple/{project}/", pipgate.base), &[]).await.unwrap().status, 200);
    }
    let wheel = wheel::build("acme-core", "1.0", "private");
    assert_eq!(
        get(&format!("{}/files/acme-core/{}", pipgate.base, wheel.filename), &[]).await.unwrap().status,
        200
    );
    feed.set_page_mode(PageMode::Status(503));
    assert_eq!(get(&format!("{}/simple/acme-gone/", pipgate.base), &[]).await.unwrap().status, 502);
    let scrape = get(&format!("{}/metrics", pipgate.base), &[]).await.unwrap().text();
    pipgate.stop().await;

    promtool(&["check", "metrics"], Some(&scrape));
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split(' ').next().unwrap().to_owned())
        .collect();
    let mut used = metric_names(&std::fs::read_to_string(deploy("grafana/pipgate.json")).unwrap());
    used.extend(metric_names(&std::fs::read_to_string(deploy("prometheus/pipgate-alerts.yml")).unwrap()));
    assert!(used.len() >= 20, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or rules but not exported: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn the_name_reader_strips_histogram_suffixes() {
    let names =
        metric_names("rate(pipgate_request_duration_seconds_bucket{x}[5m]) + process_open_fds + xpipgate_no");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["pipgate_request_duration_seconds", "process_open_fds"]
    );
}
