use std::io::Write;

use super::*;
use crate::config::{MapEnv, SecretSource};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn load_text(text: &str, env: &MapEnv) -> (Result<Config, ConfigError>, String) {
    let f = file(text);
    let name = f.path().display().to_string();
    (load(&ConfigSource::File(f.path().to_owned()), env), name)
}

const TWO_UPSTREAMS: &str = r#"
[server]
listen = "0.0.0.0:9000"

[[upstream]]
name = "corp"
url = "https://feed.test/simple"
auth = { basic = { username = "ci", password_env = "CORP_PAT" } }

[[upstream]]
name = "pypi"
url = "https://pypi.test/simple/"

[[route]]
projects = ["Acme_*", "internal-tool"]
upstream = "corp"
"#;

#[test]
fn embedded_default_proxies_pypi_on_loopback() {
    let config = load(&ConfigSource::Embedded, &MapEnv::default()).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].url.as_str(), "https://pypi.org/simple/");
}

#[test]
fn a_full_file_loads_and_normalizes() {
    let env = MapEnv::new([("CORP_PAT", "s3cret")]);
    let (config, _) = load_text(TWO_UPSTREAMS, &env);
    let config = config.unwrap();
    assert_eq!(config.upstreams[0].url.as_str(), "https://feed.test/simple/", "trailing slash added");
    assert_eq!(config.routes[0].projects, ["acme-*", "internal-tool"]);
    let AuthConfig::Basic(basic) = config.upstreams[0].auth.as_ref().unwrap() else { panic!() };
    assert_eq!(basic.password.source(), &SecretSource::Env("CORP_PAT".into()));
}

#[test]
fn environment_overlays_set_any_key() {
    let env = MapEnv::new([
        ("CORP_PAT", "s3cret"),
        ("PIPGATE_SERVER__LISTEN", "127.0.0.1:7000"),
        ("PIPGATE_UPSTREAM__1__TIMEOUT", "5s"),
        ("PIPGATE_UPSTREAM__2__NAME", "mirror"),
        ("PIPGATE_UPSTREAM__2__URL", "http://mirror.test/simple/"),
        ("PIPGATE_ROUTE", r#"[{projects = ["x-*"], upstream = "mirror"}]"#),
    ]);
    let config = load_text(TWO_UPSTREAMS, &env).0.unwrap();
    assert_eq!(config.server.listen.port(), 7000);
    assert_eq!(config.upstreams[1].timeout.as_secs(), 5);
    assert_eq!(config.upstreams[2].name, "mirror");
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].upstream, "mirror");
}

#[test]
fn errors_name_the_file_the_key_and_what_was_expected() {
    let env = MapEnv::new([("CORP_PAT", "s3cret")]);
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"[[upstream]]
name = "pypi"
url = "not a url""#,
            "upstream[0].url",
            "relative URL",
        ),
        (
            r#"[[upstream]]
name = "pypi"
url = "https://x.test/"
timeout = "soon""#,
            "upstream[0].timeout",
            "\"30s\"",
        ),
        (
            r#"[[upstreams]]
name = "x""#,
            "upstreams",
            "unknown field",
        ),
        (
            r#"[server]
listen = "nowhere""#,
            "server.listen",
            "socket address",
        ),
        ("", "upstream", "at least one"),
        (
            r#"[[upstream]]
name = "corp"
url = "https://user:hunter2@feed.test/simple/""#,
            "upstream[0].url",
            "holds a credential",
        ),
        (
            r#"[[upstream]]
name = "corp"
url = "https://feed.test/"
auth = { basic = { password_env = "MISSING" } }"#,
            "upstream[0].auth.basic",
            "MISSING is not set",
        ),
        (
            r#"[[upstream]]
name = "corp"
url = "https://feed.test/"
auth = { bearer = { token = "a", token_env = "CORP_PAT" } }"#,
            "upstream[0].auth.bearer",
            "exactly one",
        ),
        (
            r#"[[upstream]]
name = "corp"
url = "https://feed.test/"
[[route]]
projects = ["acme-*"]
upstream = "crop""#,
            "route[0].upstream",
            "no upstream is named \"crop\"",
        ),
        (
            r#"[[upstream]]
name = "corp"
url = "https://feed.test/"
[[route]]
projects = ["acmé"]
upstream = "corp""#,
            "route[0].projects[0]",
            "ASCII",
        ),
    ];
    for (text, key, expected) in cases {
        let (result, file_name) = load_text(text, &env);
        let error = result.expect_err(text);
        let shown = error.to_string();
        assert_eq!(error.key.as_deref(), Some(*key), "{shown}");
        assert!(shown.starts_with(&file_name), "{shown}");
        assert!(shown.contains(expected), "{shown} should contain {expected}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn syntax_errors_give_a_line() {
    let (result, file_name) = load_text("[server\nlisten = 1", &MapEnv::default());
    let shown = result.unwrap_err().to_string();
    assert!(shown.starts_with(&file_name) && shown.contains("line 1"), "{shown}");
}

#[test]
fn an_error_in_an_overlay_names_the_variable() {
    let env = MapEnv::new([("CORP_PAT", "x"), ("PIPGATE_UPSTREAM__0__URL", "ftp://feed.test/")]);
    let error = load_text(TWO_UPSTREAMS, &env).0.unwrap_err();
    assert!(error.origin.starts_with("environment variable PIPGATE_UPSTREAM__0__URL"), "{error}");
}

#[test]
fn a_missing_file_is_named() {
    let error =
        load(&ConfigSource::File("/nonexistent/pipgate.toml".into()), &MapEnv::default()).unwrap_err();
    assert!(error.to_string().starts_with("/nonexistent/pipgate.toml: cannot read"), "{error}");
}

#[test]
fn secret_files_lose_one_trailing_newline() {
    let f = file("token-value\n");
    assert_eq!(read_secret_file(f.path()).unwrap(), "token-value");
}

#[test]
fn azure_auth_takes_a_short_form_or_a_table() {
    use crate::config::{AzureIdentity, TokenPresentation};
    let text = r#"
[[upstream]]
name = "corp"
url = "https://feed.test/simple/"
auth = { azure = "workload-identity" }

[[upstream]]
name = "other"
url = "https://feed2.test/simple/"
auth = { azure = { identity = "managed-identity", client_id = "abc", present_as = "bearer" } }
"#;
    let config = load_text(text, &MapEnv::default()).0.unwrap();
    let AuthConfig::Azure(short) = config.upstreams[0].auth.as_ref().unwrap() else { panic!() };
    assert_eq!(short.identity, AzureIdentity::WorkloadIdentity);
    assert_eq!(short.scope, "499b84ac-1321-427f-aa17-267ca6975798/.default");
    assert_eq!(short.present_as, TokenPresentation::Basic);
    let AuthConfig::Azure(table) = config.upstreams[1].auth.as_ref().unwrap() else { panic!() };
    assert_eq!((table.identity, table.client_id.as_deref()), (AzureIdentity::ManagedIdentity, Some("abc")));
    assert_eq!(table.present_as, TokenPresentation::Bearer);

    for (auth, key, expected) in [
        (
            r#"{ azure = "magic" }"#,
            "upstream[0].auth.azure",
            "unknown variant `magic`, expected one of `managed-identity`",
        ),
        (
            r#"{ azure = { identity = "service-principal", client_id = "c" } }"#,
            "upstream[0].auth.azure.tenant_id",
            "required",
        ),
        (
            r#"{ azure = { identity = "service-principal", client_id = "c", tenant_id = "t" } }"#,
            "upstream[0].auth.azure",
            "exactly one of",
        ),
        (
            r#"{ azure = { identity = "managed-identity", client_secret = "x" } }"#,
            "upstream[0].auth.azure",
            "only goes with",
        ),
    ] {
        let text = format!("[[upstream]]\nname = \"corp\"\nurl = \"https://feed.test/\"\nauth = {auth}\n");
        let error = load_text(&text, &MapEnv::default()).0.unwrap_err();
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[test]
fn secrets_are_read_as_text_and_never_shown() {
    // A numeric PAT: an overlay must not turn it into a TOML integer, a file may write it bare.
    const PAT: &str = "4815162342";
    let bare = "[[upstream]]\nname = \"corp\"\nurl = \"https://feed.test/\"\n";
    let env = MapEnv::new([("PIPGATE_UPSTREAM__0__AUTH__BASIC__PASSWORD", PAT)]);
    let config = load_text(bare, &env).0.unwrap();
    let AuthConfig::Basic(basic) = config.upstreams[0].auth.as_ref().unwrap() else { panic!() };
    let SecretSource::Inline(secret) = basic.password.source() else { panic!() };
    assert_eq!(secret.expose(), PAT);
    let in_file = format!("{bare}auth = {{ bearer = {{ token = {PAT} }} }}\n");
    let config = load_text(&in_file, &MapEnv::default()).0.unwrap();
    let AuthConfig::Bearer(bearer) = config.upstreams[0].auth.as_ref().unwrap() else { panic!() };
    assert_eq!(bearer.token.source(), &SecretSource::Inline(crate::secret::Secret::new(PAT)));

    // Every way to get a secret setting wrong names the key and never the value.
    for (auth, key, expected) in [
        (
            format!("{{ basic = {{ pasword = \"{PAT}\" }} }}"),
            "upstream[0].auth.basic",
            "unknown field `pasword`",
        ),
        (
            format!("{{ basic = {{ password = \"{PAT}\", password_file = \"/x\" }} }}"),
            "upstream[0].auth.basic",
            "give exactly one of password, password_env or password_file",
        ),
        (format!("{{ basic = {{ password = [{PAT}] }} }}"), "upstream[0].auth.basic", "not a list"),
        ("{ basic = { username = \"ci\" } }".to_owned(), "upstream[0].auth.basic", "give exactly one"),
        (
            format!(
                "{{ azure = {{ identity = \"service-principal\", client_id = \"c\", tenant_id = \"t\", client_secret = \"{PAT}\", client_secret_env = \"X\" }} }}"
            ),
            "upstream[0].auth.azure",
            "exactly one",
        ),
    ] {
        let text = format!("{bare}auth = {auth}\n");
        let error = load_text(&text, &MapEnv::default()).0.unwrap_err();
        let shown = error.to_string();
        assert_eq!(error.key.as_deref(), Some(key), "{shown}");
        assert!(shown.contains(expected), "{shown} should contain {expected}");
        assert!(!shown.contains(PAT), "{shown}");
        assert!(!format!("{error:?}").contains(PAT), "{error:?}");
    }

    // The overlay itself does not print its value either.
    let overlays = super::env::overlays(&env);
    assert!(!format!("{overlays:?}").contains(PAT), "{overlays:?}");
}

#[test]
fn routes_carry_the_position_of_their_upstream() {
    let env = MapEnv::new([("CORP_PAT", "s3cret")]);
    let text = format!("{TWO_UPSTREAMS}\n[[route]]\nprojects = [\"public-*\"]\nupstream = \"pypi\"\n");
    let config = load_text(&text, &env).0.unwrap();
    let targets: Vec<usize> = config.route_targets().map(|(_, upstream)| upstream).collect();
    assert_eq!(targets, [0, 1]);
}

#[test]
fn the_cache_dir_defaults_outside_the_working_directory() {
    let bare = "[[upstream]]\nname = \"corp\"\nurl = \"https://feed.test/\"\n";
    let xdg = load_text(bare, &MapEnv::new([("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")])).0.unwrap();
    assert_eq!(xdg.cache.dir, std::path::Path::new("/xdg/pipgate"));
    let home = load_text(bare, &MapEnv::new([("HOME", "/home/u")])).0.unwrap();
    assert_eq!(home.cache.dir, std::path::Path::new("/home/u/.cache/pipgate"));
    let neither = load_text(bare, &MapEnv::default()).0.unwrap();
    assert!(neither.cache.dir.is_absolute(), "{}", neither.cache.dir.display());
}

#[test]
fn a_shared_tier_needs_credentials_that_fit_its_store() {
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("key");
    std::fs::write(&key, "c2VjcmV0\n").unwrap();
    let base = "[[upstream]]\nname = \"pypi\"\nurl = \"https://pypi.test/simple/\"\n[cache.shared]\ncontainer = \"c\"\n";
    let env = MapEnv::default();
    let (config, _) = load_text(
        &format!(
            "{base}kind = \"azure\"\naccount = \"acme\"\nazure = \"workload-identity\"\nprefix = \"/ci/pipgate/\"\n"
        ),
        &env,
    );
    let shared = config.unwrap().cache.shared.unwrap();
    assert_eq!(shared.prefix, "ci/pipgate", "slashes at the ends are dropped");
    let azure = shared.azure.unwrap();
    assert_eq!(azure.scope, "https://storage.azure.com/.default", "a store's token is for Azure Storage");
    assert_eq!(azure.present_as, TokenPresentation::Bearer);
    let (config, _) = load_text(&format!("{base}kind = \"s3\"\n"), &env);
    assert_eq!(config.unwrap().cache.shared.unwrap().wait, std::time::Duration::from_secs(2));

    for (text, key_named, words) in [
        (
            format!("{base}kind = \"azure\"\nazure = \"managed-identity\"\n"),
            "cache.shared.account",
            "storage account",
        ),
        (format!("{base}kind = \"azure\"\naccount = \"a\"\n"), "cache.shared", "needs a credential"),
        (
            format!(
                "{base}kind = \"azure\"\naccount = \"a\"\nazure = \"managed-identity\"\naccount_key_file = {key:?}\n"
            ),
            "cache.shared",
            "not azure and account_key_file",
        ),
        (format!("{base}kind = \"s3\"\nsas_file = {key:?}\n"), "cache.shared.sas_file", "do not apply"),
        (format!("{base}kind = \"s3\"\naccess_key_id_file = {key:?}\n"), "cache.shared", "both"),
        (format!("{base}kind = \"s3\"\nprefix = \"a//b\"\n"), "cache.shared.prefix", "key prefix"),
        (format!("{base}kind = \"s3\"\nwait = \"0s\"\n"), "cache.shared.wait", "longer than 0s"),
        (
            format!("{base}kind = \"azure\"\naccount = \"a\"\naccount_key_file = \"/nonexistent/key\"\n"),
            "cache.shared.account_key_file",
            "/nonexistent/key",
        ),
    ] {
        let (config, name) = load_text(&text, &env);
        let error = config.unwrap_err();
        let shown = error.to_string();
        assert_eq!(error.key.as_deref(), Some(key_named), "{shown}");
        assert!(shown.contains(words) && shown.contains(&name), "{shown}");
    }
    let (config, _) = load_text(&format!("{base}kind = \"s3\"\nbucket = \"x\"\n"), &env);
    assert!(config.unwrap_err().to_string().contains("bucket"), "a mistyped key is refused, named");
}
