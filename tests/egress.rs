//! Extra CA certificates for upstream TLS (issue: edge, egress), as a TLS-inspecting corporate
//! proxy needs: an upstream whose certificate comes from a private CA
//! - fails closed without that CA (the platform roots do not know it);
//! - works with the CA given per upstream (`upstream[].ca_file`) or for all (`egress.ca_file`);
//! - an unreadable CA file stops the start, naming the file;
//! - with `HTTPS_PROXY` set, upstream connections go through the proxy's `CONNECT` tunnel (the
//!   proxy credential from its URL goes to the proxy, never to the upstream; TLS runs end to
//!   end), and `NO_PROXY` exempts a host.

use crate::support;

use base64::Engine;
use pipgate::config::MapEnv;
use support::fake_index::FakeIndex;
use support::proxy::ConnectProxy;
use support::tls::test_ca;
use support::{Pipgate, get, wheel};

fn config(url: &str, upstream_extra: &str, extra: &str) -> String {
    format!("[[upstream]]\nname = \"corp\"\nurl = \"{url}\"\n{upstream_extra}\n\n{extra}")
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_where_configured() {
    let ca = test_ca();
    let corp = FakeIndex::start_tls(ca.acceptor.clone()).await;
    corp.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let ca_file = ca.ca_file.path().display().to_string();

    let without = Pipgate::start(&config(&corp.url(), "", ""), Default::default()).await;
    let refused = get(&format!("{}acme-core/", without.index_url()), &[]).await.unwrap();
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(refused.text().contains("upstream \"corp\" cannot connect"), "{}", refused.text());
    assert!(refused.text().to_lowercase().contains("certificate"), "{}", refused.text());

    for (upstream_extra, extra) in [
        (format!("ca_file = \"{ca_file}\""), String::new()),
        (String::new(), format!("[egress]\nca_file = \"{ca_file}\"\n")),
    ] {
        let with = Pipgate::start(&config(&corp.url(), &upstream_extra, &extra), Default::default()).await;
        let page = get(&format!("{}acme-core/", with.index_url()), &[]).await.unwrap();
        assert_eq!(page.status, 200, "{upstream_extra}{extra}: {}", page.text());
    }
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    for file in [&missing, &not_pem] {
        let text = format!(
            "[[upstream]]\nname = \"corp\"\nurl = \"https://127.0.0.1:1/simple/\"\nca_file = \"{}\"\n[cache]\ndir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
            file.display(),
            dir.path().join("cache").display()
        );
        let path = dir.path().join("pipgate.toml");
        std::fs::write(&path, text).unwrap();
        let env = pipgate::config::MapEnv::default();
        let config = pipgate::config::load(&pipgate::config::ConfigSource::File(path), &env).unwrap();
        let error = pipgate::start(&config, &env).await.unwrap_err().to_string();
        assert!(error.starts_with(&format!("CA file {}", file.display())), "{error}");
    }
}

#[tokio::test]
async fn upstream_connections_go_through_the_proxy_unless_no_proxy_says_otherwise() {
    let ca = test_ca();
    let corp = FakeIndex::start_tls(ca.acceptor.clone()).await;
    corp.add("acme-core", wheel::build("acme-core", "1.0", "private"));
    let proxy = ConnectProxy::start().await;
    let upstream = config(&corp.url(), &format!("ca_file = \"{}\"", ca.ca_file.path().display()), "");
    let proxy_url = format!("http://ci:proxy-canary@{}", proxy.addr);

    let proxied = Pipgate::start(&upstream, MapEnv::new([("HTTPS_PROXY", proxy_url.as_str())])).await;
    let page = get(&format!("{}acme-core/", proxied.index_url()), &[]).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    assert_eq!(tunnels[0].target, corp.addr.to_string());
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ci:proxy-canary"));
    assert_eq!(tunnels[0].proxy_authorization.as_deref(), Some(expected.as_str()));
    for seen in corp.seen() {
        assert!(
            !seen.headers.contains_key("proxy-authorization"),
            "the proxy credential reached the upstream"
        );
    }

    let exempt = Pipgate::start(
        &upstream,
        MapEnv::new([("HTTPS_PROXY", proxy_url.as_str()), ("no_proxy", "127.0.0.1")]),
    )
    .await;
    assert_eq!(get(&format!("{}acme-core/", exempt.index_url()), &[]).await.unwrap().status, 200);
    assert_eq!(proxy.tunnels().len(), 1, "NO_PROXY: no new tunnel");
}
