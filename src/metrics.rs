//! Prometheus metrics, registered into a registry that is handed in (so each test builds its
//! own and asserts exact counts). Every label has a bounded set of values: routes, statuses,
//! upstream names from the config, fixed result words. No project names, no URLs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Debug)]
pub struct Metrics {
    /// `pipgate_requests_total{route, status}`
    pub requests: IntCounterVec,
    /// `pipgate_request_duration_seconds{route}`
    pub request_seconds: HistogramVec,
    /// `pipgate_requests_in_flight`
    pub in_flight: IntGauge,
    /// `pipgate_response_bytes_total{route}`: bytes of answers with a known length.
    pub bytes_served: IntCounterVec,
    /// `pipgate_cache_lookups_total{cache="index|file", result="hit|miss|stale|revalidated|bypass"}`
    pub cache_lookups: IntCounterVec,
    /// `pipgate_upstream_requests_total{upstream, kind="page|root|file", outcome}`
    pub upstream_requests: IntCounterVec,
    /// `pipgate_upstream_request_duration_seconds{upstream, kind}` (until the answer's headers
    /// for files, the whole body for pages)
    pub upstream_seconds: HistogramVec,
    /// `pipgate_hash_mismatches_total{upstream}`
    pub hash_mismatches: IntCounterVec,
    /// `pipgate_fail_closed_total{upstream}`: lookups that stopped at a failing upstream with no
    /// page to fall back on.
    pub fail_closed: IntCounterVec,
    /// `pipgate_owner_changes_total{from, to}`: a project moved to another upstream (a private
    /// name showing up publicly first, or the reverse).
    pub owner_changes: IntCounterVec,
    /// `pipgate_owner_holds_total{owner, lower}`: projects held on their owner when a lower
    /// upstream would have taken them (each hold counted once).
    pub owner_holds: IntCounterVec,
    /// `pipgate_held_projects{owner}`: projects held now.
    pub held_projects: IntGaugeVec,
    /// `pipgate_owner_releases_total{owner, via="config|admin"}`
    pub owner_releases: IntCounterVec,
    /// `pipgate_upstream_healthy{upstream}`: 1 or 0 for health-checked upstreams.
    pub upstream_healthy: IntGaugeVec,
    /// `pipgate_shadowed_projects{owner, shadow, tracked}`: owned names also on a lower upstream.
    pub shadowed: IntGaugeVec,
    /// `pipgate_shadow_kept_total{owner, shadow}`: page requests the owner rule answered from
    /// the owner while an untracked shadow exists.
    pub shadow_kept: IntCounterVec,
    /// `pipgate_cache_bytes{cache="index|file"}`: bytes held now (files rounded up to KiB).
    pub cache_bytes: IntGaugeVec,
    /// `pipgate_cache_entries{cache}`: pages or files held now.
    pub cache_entries: IntGaugeVec,
    /// `pipgate_cache_max_bytes{cache}`: the configured caps.
    pub cache_max_bytes: IntGaugeVec,
    /// `pipgate_file_fills_in_progress`: downloads into the file cache running now.
    pub fills_in_progress: IntGauge,
    /// `pipgate_client_aborts_total{route}`: answers whose client hung up before the body ended.
    pub client_aborts: IntCounterVec,
    /// `pipgate_file_pass_through_total{upstream, reason="no_hash|disk|disk_during_fill"}`:
    /// files streamed without the cache (listed without a sha256, the cache disk failing, or
    /// failing under a fill, whose clients then get the rest relayed: counted once per fill).
    pub pass_through: IntCounterVec,
    /// `pipgate_upstream_bytes_total{upstream, kind="page|root|file|range"}`: bytes received.
    pub upstream_bytes: IntCounterVec,
    /// `pipgate_core_metadata_total{upstream, source="memory|disk|wheel|ranges|fill"}`: wheel
    /// metadata pipgate served for an upstream that offers none, by where it came from.
    pub core_metadata: IntCounterVec,
    /// `pipgate_core_metadata_failures_total{upstream, reason="wheel|upstream|cache"}`: metadata
    /// that could not be extracted (a malformed wheel, an upstream error, no cache to fill into).
    pub core_metadata_failures: IntCounterVec,
    /// `pipgate_shared_store_up{store="azure|s3"}`: 1 while the shared tier (`[cache.shared]`)
    /// is in use, 0 while it is failing and files are served local-only. No series without a
    /// shared tier.
    pub shared_store_up: IntGaugeVec,
    /// `pipgate_shared_store_reads_total{result="hit|miss|error|corrupt"}`
    pub shared_store_reads: IntCounterVec,
    /// `pipgate_shared_store_writes_total{result="ok|exists|error"}`
    pub shared_store_writes: IntCounterVec,
    /// `pipgate_tls_reloads_total{result="ok|error"}`: certificate rotations picked up or refused.
    pub tls_reloads: IntCounterVec,
    /// `pipgate_token_refreshes_total{upstream, result="ok|error"}`
    pub token_refreshes: IntCounterVec,
    /// `pipgate_client_auth_total{kind="none|token|htpasswd|oidc", result="ok|rejected|forbidden|rate_limited"}`:
    /// client authentications (`none` + `ok` is an anonymous client admitted, `none` +
    /// `rejected` one that needed a credential).
    pub client_auth: IntCounterVec,
    /// `pipgate_access_denied_total{upstream}`: pages and files withheld from a client that may
    /// not read the upstream owning them.
    pub access_denied: IntCounterVec,
    /// `pipgate_jwks_refreshes_total{rule, result="ok|error"}`: OIDC signing-key fetches.
    pub jwks_refreshes: IntCounterVec,
    /// `pipgate_publishes_total{upstream, result="ok|refused|rejected|failed"}`: uploads, by
    /// pipgate's verdict (`refused`), the upstream's (`ok`, `rejected`), or a failure.
    pub publishes: IntCounterVec,
    /// `pipgate_token_expiry_seconds{upstream}`: seconds until the current token expires,
    /// computed at scrape time.
    token_expiry: GaugeVec,
    expiries: Mutex<HashMap<String, SystemTime>>,
    registry: Registry,
}

const LATENCY_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

impl Metrics {
    /// Creates every metric and registers it into `registry`.
    pub fn register(registry: Registry) -> Metrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let build_info = IntGaugeVec::new(
            Opts::new("pipgate_build_info", "pipgate's version, as a label; always 1"),
            &["version"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build_info)).expect("registered once");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        let fills_in_progress =
            IntGauge::new("pipgate_file_fills_in_progress", "Downloads into the file cache running now")
                .expect("valid");
        registry.register(Box::new(fills_in_progress.clone())).expect("registered once");
        let in_flight =
            IntGauge::new("pipgate_requests_in_flight", "Requests being answered").expect("valid");
        registry.register(Box::new(in_flight.clone())).expect("registered once");
        let token_expiry = GaugeVec::new(
            Opts::new("pipgate_token_expiry_seconds", "Seconds until the upstream's current token expires"),
            &["upstream"],
        )
        .expect("valid metric");
        registry.register(Box::new(token_expiry.clone())).expect("registered once");
        Metrics {
            requests: counter("pipgate_requests_total", "Requests answered", &["route", "status"]),
            request_seconds: histogram(
                "pipgate_request_duration_seconds",
                "Time to answer headers",
                &["route"],
            ),
            in_flight,
            bytes_served: counter(
                "pipgate_response_bytes_total",
                "Bytes of answers with a known length",
                &["route"],
            ),
            cache_lookups: counter(
                "pipgate_cache_lookups_total",
                "Cache lookups by result",
                &["cache", "result"],
            ),
            upstream_requests: counter(
                "pipgate_upstream_requests_total",
                "Requests to upstreams by outcome",
                &["upstream", "kind", "outcome"],
            ),
            upstream_seconds: histogram(
                "pipgate_upstream_request_duration_seconds",
                "Upstream request latency",
                &["upstream", "kind"],
            ),
            hash_mismatches: counter(
                "pipgate_hash_mismatches_total",
                "Downloads whose bytes did not match the index",
                &["upstream"],
            ),
            fail_closed: counter(
                "pipgate_fail_closed_total",
                "Lookups failed closed at an upstream",
                &["upstream"],
            ),
            owner_changes: counter(
                "pipgate_owner_changes_total",
                "Projects whose owning upstream changed",
                &["from", "to"],
            ),
            owner_holds: counter(
                "pipgate_owner_holds_total",
                "Projects held on their owner instead of moving to a lower upstream",
                &["owner", "lower"],
            ),
            held_projects: gauge("pipgate_held_projects", "Projects held on their owner now", &["owner"]),
            owner_releases: counter(
                "pipgate_owner_releases_total",
                "Held names released to move to a lower upstream",
                &["owner", "via"],
            ),
            upstream_healthy: gauge(
                "pipgate_upstream_healthy",
                "Whether a health-checked upstream's root answered well at the last probe",
                &["upstream"],
            ),
            shadowed: gauge(
                "pipgate_shadowed_projects",
                "Owned projects that also exist on a lower upstream",
                &["owner", "shadow", "tracked"],
            ),
            shadow_kept: counter(
                "pipgate_shadow_kept_total",
                "Page requests answered by the owner while a lower upstream has the same name",
                &["owner", "shadow"],
            ),
            cache_bytes: gauge("pipgate_cache_bytes", "Bytes held by a cache now", &["cache"]),
            cache_entries: gauge("pipgate_cache_entries", "Entries held by a cache now", &["cache"]),
            cache_max_bytes: gauge(
                "pipgate_cache_max_bytes",
                "The configured size cap of a cache",
                &["cache"],
            ),
            fills_in_progress,
            client_aborts: counter(
                "pipgate_client_aborts_total",
                "Answers whose client hung up before the body ended",
                &["route"],
            ),
            pass_through: counter(
                "pipgate_file_pass_through_total",
                "Files streamed from the upstream without the cache",
                &["upstream", "reason"],
            ),
            upstream_bytes: counter(
                "pipgate_upstream_bytes_total",
                "Bytes received from upstreams",
                &["upstream", "kind"],
            ),
            core_metadata: counter(
                "pipgate_core_metadata_total",
                "Wheel metadata served for upstreams that offer none, by source",
                &["upstream", "source"],
            ),
            core_metadata_failures: counter(
                "pipgate_core_metadata_failures_total",
                "Wheel metadata that could not be extracted, by reason",
                &["upstream", "reason"],
            ),
            shared_store_up: gauge(
                "pipgate_shared_store_up",
                "1 while the shared tier is in use, 0 while it fails",
                &["store"],
            ),
            shared_store_reads: counter(
                "pipgate_shared_store_reads_total",
                "Shared-tier file reads by result",
                &["result"],
            ),
            shared_store_writes: counter(
                "pipgate_shared_store_writes_total",
                "Shared-tier file writes by result",
                &["result"],
            ),
            tls_reloads: counter(
                "pipgate_tls_reloads_total",
                "TLS certificate rotations picked up (ok) or refused (error)",
                &["result"],
            ),
            token_refreshes: counter(
                "pipgate_token_refreshes_total",
                "Upstream token fetches by result",
                &["upstream", "result"],
            ),
            client_auth: counter(
                "pipgate_client_auth_total",
                "Client authentications by credential kind and result",
                &["kind", "result"],
            ),
            access_denied: counter(
                "pipgate_access_denied_total",
                "Pages and files withheld from clients that may not read their owner",
                &["upstream"],
            ),
            jwks_refreshes: counter(
                "pipgate_jwks_refreshes_total",
                "OIDC signing-key fetches by result",
                &["rule", "result"],
            ),
            publishes: counter(
                "pipgate_publishes_total",
                "Uploads through pipgate by result",
                &["upstream", "result"],
            ),
            token_expiry,
            expiries: Mutex::new(HashMap::new()),
            registry,
        }
    }

    /// Metrics for unit tests, which run without a server.
    #[cfg(test)]
    pub fn unregistered() -> Metrics {
        Metrics::register(Registry::new())
    }

    /// Creates, at zero, the labelled series that alert rules watch, for the upstreams in
    /// `order` (`token_upstreams` are those with a refreshing token). A counter that first
    /// appears at 1 shows no `increase()`, so an alert on it would miss its first event; and a
    /// dashboard should show a flat 0, not "no data". Every label value is from the config or a
    /// fixed word, so this stays bounded.
    pub fn initialize(&self, order: &[&str], token_upstreams: &[&str]) {
        for cache in ["index", "file"] {
            for result in ["hit", "miss", "stale", "revalidated", "bypass"] {
                self.cache_lookups.with_label_values(&[cache, result]);
            }
        }
        for route in ["simple_root", "simple_project", "files"] {
            self.client_aborts.with_label_values(&[route]);
        }
        for (i, &upstream) in order.iter().enumerate() {
            self.hash_mismatches.with_label_values(&[upstream]);
            self.fail_closed.with_label_values(&[upstream]);
            self.access_denied.with_label_values(&[upstream]);
            self.held_projects.with_label_values(&[upstream]);
            for kind in ["page", "root", "file", "range"] {
                self.upstream_bytes.with_label_values(&[upstream, kind]);
            }
            for reason in ["wheel", "upstream", "cache"] {
                self.core_metadata_failures.with_label_values(&[upstream, reason]);
            }
            for reason in ["no_hash", "disk", "disk_during_fill"] {
                self.pass_through.with_label_values(&[upstream, reason]);
            }
            for via in ["config", "admin"] {
                self.owner_releases.with_label_values(&[upstream, via]);
            }
            for &lower in &order[i + 1..] {
                self.owner_holds.with_label_values(&[upstream, lower]);
                self.shadow_kept.with_label_values(&[upstream, lower]);
                for tracked in ["true", "false"] {
                    self.shadowed.with_label_values(&[upstream, lower, tracked]);
                }
                self.owner_changes.with_label_values(&[upstream, lower]);
                self.owner_changes.with_label_values(&[lower, upstream]);
            }
        }
        for &upstream in token_upstreams {
            for result in ["ok", "error"] {
                self.token_refreshes.with_label_values(&[upstream, result]);
            }
        }
    }

    pub fn token_expires(&self, upstream: &str, at: SystemTime) {
        self.expiries.lock().expect("expiries lock").insert(upstream.to_owned(), at);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let now = SystemTime::now();
        for (upstream, at) in self.expiries.lock().expect("expiries lock").iter() {
            let left = at.duration_since(now).unwrap_or(Duration::ZERO).as_secs_f64();
            self.token_expiry.with_label_values(&[upstream]).set(left);
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to a Vec cannot fail");
        out
    }
}
