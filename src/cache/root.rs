//! The root page (`/simple/`): every upstream's project list, merged, rendered once and kept
//! for `index_ttl`; with client authentication on, one such page for each set of upstreams
//! that clients may read (a handful: one per access rule at most).
//!
//! A failing upstream fails the whole page, so the list is never silently partial: a client
//! that reads the root to decide what exists must not be told a private name is missing
//! because the private feed had an outage.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rendered::Rendered;
use crate::config::UpstreamSet;
use crate::pypi::ProjectName;
use crate::pypi::simple::{ProjectList, render_root_html, render_root_json};
use crate::resolve::ResolveError;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct RootCache {
    ttl: Duration,
    cached: Mutex<HashMap<UpstreamSet, (Instant, Arc<Rendered>)>>,
}

impl RootCache {
    pub fn new(ttl: Duration) -> Self {
        RootCache { ttl, cached: Mutex::new(HashMap::new()) }
    }

    /// The rendered root page of the upstreams in `readable`: the kept one while fresh, else
    /// fetched from each of them. With `hit` or `miss`, for `X-Pipgate-Cache`.
    pub async fn get(
        &self,
        upstreams: &[Arc<Upstream>],
        readable: UpstreamSet,
    ) -> Result<(Arc<Rendered>, &'static str), ResolveError> {
        let cached = self.cached.lock().expect("root lock").get(&readable).cloned();
        if let Some((_, rendered)) = cached.filter(|(at, _)| at.elapsed() < self.ttl) {
            return Ok((rendered, "hit"));
        }
        let listed = upstreams.iter().enumerate().filter(|(i, _)| readable.contains(*i)).map(|(_, u)| u);
        let rendered = Arc::new(fetch_and_render(listed).await?);
        self.cached.lock().expect("root lock").insert(readable, (Instant::now(), rendered.clone()));
        Ok((rendered, "miss"))
    }
}

/// Asks every upstream for its list, keeps the first spelling of each normalized name, and
/// renders the result off the reactor.
async fn fetch_and_render(upstreams: impl Iterator<Item = &Arc<Upstream>>) -> Result<Rendered, ResolveError> {
    let mut seen = HashSet::new();
    let mut list = ProjectList::default();
    for upstream in upstreams {
        let names = upstream
            .fetch_root()
            .await
            .map_err(|error| ResolveError::upstream_failed(upstream.name(), error))?;
        for name in names.names {
            if let Ok(normalized) = ProjectName::new(&name)
                && seen.insert(normalized)
            {
                list.names.push(name);
            }
        }
    }
    Ok(tokio::task::spawn_blocking(move || {
        let html = render_root_html(&list).into_bytes();
        Rendered::new(render_root_json(&list), move || html)
    })
    .await
    .expect("rendering does not panic"))
}
