//! Feed health: a feed that is broken as a whole is unhealthy, not empty (I9).
//!
//! A private feed that answers 404 for its own root (deleted, renamed, or hidden from an
//! identity that lost its permission: Azure answers 404 for a feed the caller may not see), 401,
//! 403 or a sign-in page would otherwise answer 404 for every project too, and each of those
//! 404s would hand a private name to the public index. So for a health-checked upstream:
//!
//! - its root is probed in the background every `interval`;
//! - while the last probe failed, the upstream is unhealthy: lookups that reach it fail closed
//!   (stale pages are still served), and `/readyz`, the metrics and the log say so;
//! - a project 404 from it counts only if its root answered well within the last `interval`;
//!   otherwise the root is probed first (one probe at a time), so a freshly started pipgate whose
//!   feed is already broken never hands a private name on.
//!
//! Health checks are on for upstreams with a credential (private feeds) and off for the others
//! (the public index's root lists every project on PyPI); `health_check` in `[[upstream]]` says
//! otherwise.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// What the last probe of one upstream said.
#[derive(Debug, Clone)]
pub enum State {
    /// Not probed yet.
    Unknown,
    Healthy {
        at: Instant,
    },
    Unhealthy {
        reason: String,
        since: SystemTime,
    },
}

#[derive(Debug)]
struct Probe {
    checked: bool,
    state: Mutex<State>,
    /// Held while probing, so concurrent lookups share one probe.
    probing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
pub struct Health {
    upstreams: Arc<Vec<Arc<Upstream>>>,
    probes: Arc<Vec<Probe>>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

/// Why a lookup may not trust an upstream now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("is unhealthy: its index root {reason}")]
pub struct Unhealthy {
    pub reason: String,
}

impl Health {
    /// `checked[i]` says whether upstream `i` is health-checked.
    pub fn new(
        upstreams: Arc<Vec<Arc<Upstream>>>,
        checked: &[bool],
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let probes = checked
            .iter()
            .map(|&checked| Probe {
                checked,
                state: Mutex::new(State::Unknown),
                probing: tokio::sync::Mutex::new(()),
            })
            .collect();
        Health { upstreams, probes: Arc::new(probes), interval, metrics }
    }

    /// Probes every health-checked upstream now and then every `interval`, until the runtime
    /// stops. Does nothing when no upstream is checked.
    pub fn spawn_probes(&self) {
        if !self.probes.iter().any(|p| p.checked) {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(health.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for i in 0..health.probes.len() {
                    if health.probes[i].checked {
                        health.probe(i).await;
                    }
                }
            }
        });
    }

    /// Fails when upstream `i` is known to be unhealthy.
    pub fn gate(&self, i: usize) -> Result<(), Unhealthy> {
        match &*self.probes[i].state.lock().expect("health lock") {
            State::Unhealthy { reason, .. } => Err(Unhealthy { reason: reason.clone() }),
            _ => Ok(()),
        }
    }

    /// Whether a project 404 from upstream `i` may be believed: always for an unchecked
    /// upstream; for a checked one, only after a good probe within `interval` (probing now if
    /// the last one is older).
    pub async fn trust_not_found(&self, i: usize) -> Result<(), Unhealthy> {
        let probe = &self.probes[i];
        if !probe.checked || self.recently_healthy(i) {
            return Ok(());
        }
        let _one_at_a_time = probe.probing.lock().await;
        if !self.recently_healthy(i) {
            self.probe_locked(i).await;
        }
        self.gate(i)?;
        if self.recently_healthy(i) {
            Ok(())
        } else {
            Err(Unhealthy { reason: "has not been probed".into() })
        }
    }

    fn recently_healthy(&self, i: usize) -> bool {
        matches!(&*self.probes[i].state.lock().expect("health lock"), State::Healthy { at } if at.elapsed() < self.interval)
    }

    async fn probe(&self, i: usize) {
        let _one_at_a_time = self.probes[i].probing.lock().await;
        self.probe_locked(i).await;
    }

    /// Asks the root of upstream `i` and records the answer; logs each change of state once.
    async fn probe_locked(&self, i: usize) {
        let upstream = &self.upstreams[i];
        let result = upstream.fetch_root().await;
        let mut state = self.probes[i].state.lock().expect("health lock");
        let was_unhealthy = matches!(*state, State::Unhealthy { .. });
        match result {
            Ok(_) => {
                if was_unhealthy {
                    tracing::info!(upstream = upstream.name(), "upstream is healthy again");
                }
                *state = State::Healthy { at: Instant::now() };
            }
            Err(error) => {
                let reason = error.to_string();
                if !was_unhealthy {
                    tracing::warn!(upstream = upstream.name(), %reason, "upstream is unhealthy: failing closed for the names it may own");
                }
                let since = match &*state {
                    State::Unhealthy { since, .. } => *since,
                    _ => SystemTime::now(),
                };
                *state = State::Unhealthy { reason, since };
            }
        }
        let healthy = matches!(*state, State::Healthy { .. });
        self.metrics.upstream_healthy.with_label_values(&[upstream.name()]).set(i64::from(healthy));
    }

    /// `(upstream, reason, since)` for every upstream that is unhealthy now.
    pub fn unhealthy(&self) -> Vec<(&str, String, SystemTime)> {
        self.probes
            .iter()
            .enumerate()
            .filter_map(|(i, probe)| match &*probe.state.lock().expect("health lock") {
                State::Unhealthy { reason, since } => {
                    Some((self.upstreams[i].name(), reason.clone(), *since))
                }
                _ => None,
            })
            .collect()
    }
}
