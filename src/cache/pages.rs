//! The index-page cache: freshness, revalidation, stale-while-revalidate, stale-on-error.
//!
//! Flow for one project (ages count from the owner's last 200 or 304):
//!
//! - **age < `index_ttl`**: served from memory. A client that forces revalidation
//!   (`Cache-Control: max-age=0`, which pip always sends) starts at most one background
//!   revalidation per `revalidate_interval`; it still gets the cached page at once.
//! - **`index_ttl` ≤ age < `index_ttl` + `max_stale`**: served at once, marked stale, while one
//!   background refresh runs (stale-while-revalidate).
//! - **older, or not cached**: the request waits for a refresh.
//!
//! A refresh runs the owner rule again (the old owner is asked conditionally, so an unchanged
//! page costs a 304), in its own task: concurrent requests share it (I5) and a client that
//! disconnects does not cancel it. If a refresh fails, the last good page is served, marked
//! stale, until it is `index_ttl` + `max_stale` old; after that the failure reaches the
//! client (I7), and a project never seen before fails closed (I2). A page that does not parse
//! is an error, so it is never cached.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::entry::{CachedProject, Entry};
use super::metadata::MetadataStore;
use super::page_disk::PageDisk;
use super::rendered::FirstForm;
use super::shared::SharedTier;
use crate::metrics::Metrics;
use crate::pypi::ProjectName;
use crate::pypi::rewrite::SharedOffer;
use crate::resolve::{Resolution, ResolveError, Resolver};

/// The answer for a project: its cached page, and whether that page is past its freshness.
#[derive(Debug, Clone)]
pub struct Served {
    pub project: Arc<CachedProject>,
    pub cache: CacheResult,
    /// How the page was made, when this request waited for it (a miss).
    pub built: Option<BuildTimes>,
}

/// Where the time of a cold page went, for the `Server-Timing` header of the answers that
/// waited for it: asking the upstreams (the owner rule, transfers included), parsing the
/// owner's page, rendering the client JSON, and its first gzip. The last two interleave (each
/// run of entries is compressed as it is rendered, a large page's halves on two threads), so
/// each is the time spent in it, by the slower thread's count. For a first client that asked
/// for another form ([`FirstForm`]), `render` is the time making it, compression included, and
/// `gzip` is zero.
#[derive(Debug, Clone, Copy)]
pub struct BuildTimes {
    pub upstream: Duration,
    pub parse: Duration,
    pub render: Duration,
    pub gzip: Duration,
}

impl Served {
    fn from_cache(project: Arc<CachedProject>, cache: CacheResult) -> Served {
        Served { project, cache, built: None }
    }
}

/// How the page cache answered a request (`X-Pipgate-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Fresh from memory or disk.
    Hit,
    /// Past its freshness: served while a refresh runs, or while the owner fails.
    Stale,
    /// Fetched from the owner now.
    Miss,
    /// The owner confirmed the kept page (304).
    Revalidated,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Miss => "miss",
            CacheResult::Revalidated => "revalidated",
        }
    }
}

/// The shared result of one refresh.
type Outcome = Result<Option<Served>, ResolveError>;

/// Freshness settings, from `[cache]`.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub index_ttl: Duration,
    pub max_stale: Duration,
    pub revalidate_interval: Duration,
    pub negative_ttl: Duration,
}

/// Pages of at least this many files that leave the memory cache are freed on the blocking
/// pool: below it, freeing costs less than waking a thread.
const FREED_IN_BACKGROUND_FROM_FILES: usize = 1000;

/// Drops a page that left the memory cache (evicted or replaced). The cache calls this inside
/// whichever request's insert or lookup ran its upkeep, and freeing a large page is tens of
/// thousands of allocations (0.4 ms for 8,000 files, measured on this machine): several cache
/// hits' worth, taken from an unrelated request. So a large page goes to the blocking pool. A
/// page still held elsewhere (by an answer in flight, or put back in the cache as itself after
/// a new form was counted) is not freed here at all.
fn drop_off_the_request_path(entry: Entry) {
    let Entry::Found(project) = entry else { return };
    if Arc::strong_count(&project) > 1 || project.page.files.len() < FREED_IN_BACKGROUND_FROM_FILES {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(move || drop(project)));
    }
}

/// How long after learning something about a project's wheel metadata its page is rendered
/// again: a resolver asks for many of one project's wheels in a burst, and one re-render
/// covers them all.
const RERENDER_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct PageCache {
    resolver: Arc<Resolver>,
    memory: moka::sync::Cache<ProjectName, Entry>,
    disk: Option<PageDisk>,
    freshness: Freshness,
    inflight: Mutex<HashMap<ProjectName, watch::Receiver<Option<Outcome>>>>,
    /// Where offered metadata comes from; pages of upstreams that synthesize it offer it.
    metadata: Arc<MetadataStore>,
    /// Projects with a re-render scheduled.
    rerenders: Mutex<HashSet<ProjectName>>,
    /// The shared tier, when it shares pages (`cache.shared.pages`).
    shared: Option<Arc<SharedTier>>,
    metrics: Arc<Metrics>,
}

impl PageCache {
    pub fn new(
        resolver: Arc<Resolver>,
        memory_bytes: u64,
        disk: Option<PageDisk>,
        freshness: Freshness,
        metadata: Arc<MetadataStore>,
        shared: Option<Arc<SharedTier>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let memory = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_: &ProjectName, entry: &Entry| entry.weight())
            .eviction_listener(|_, entry: Entry, _| drop_off_the_request_path(entry))
            .build();
        PageCache {
            resolver,
            memory,
            disk,
            freshness,
            inflight: Mutex::new(HashMap::new()),
            metadata,
            rerenders: Mutex::new(HashSet::new()),
            shared: shared.filter(|tier| tier.page_fingerprint().is_some()),
            metrics,
        }
    }

    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    pub fn metadata(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// Builds the cached form of a page of the upstream at `owner`, offering synthesized
    /// metadata if that upstream has it on. Blocking (renders): run off the reactor.
    fn build(
        resolver: &Resolver,
        metadata: &Arc<MetadataStore>,
        owner: usize,
        make: impl FnOnce(Option<SharedOffer>) -> CachedProject,
    ) -> CachedProject {
        if resolver.upstream(owner).synthesizes_metadata() {
            let metadata = metadata.clone();
            make(Some(Arc::new(move |sha256: &str| metadata.offer(sha256))))
        } else {
            make(None)
        }
    }

    /// Renders the cached page of `project` again shortly, so it carries what was just learned
    /// about its wheels' metadata (a hash, or a wheel that cannot be offered). At most one
    /// re-render is pending per project; a page replaced meanwhile is left alone (the new one
    /// was rendered with the new knowledge).
    pub fn rerender_soon(self: &Arc<Self>, project: &ProjectName) {
        if !self.rerenders.lock().expect("rerenders lock").insert(project.clone()) {
            return;
        }
        let (cache, project) = (self.clone(), project.clone());
        tokio::spawn(async move {
            tokio::time::sleep(RERENDER_AFTER).await;
            cache.rerenders.lock().expect("rerenders lock").remove(&project);
            let Some(Entry::Found(current)) = cache.memory.get(&project) else { return };
            let rendering = cache.clone();
            let (name, old) = (project.clone(), current.clone());
            let Ok(fresh) = tokio::task::spawn_blocking(move || {
                let store = rendering.metadata.clone();
                Self::build(&rendering.resolver, &store, old.owner, |offer| old.rerendered(&name, offer))
            })
            .await
            else {
                return;
            };
            cache.put_if_current(&project, &current, Arc::new(fresh));
        });
    }

    /// The page of `project` under the flow above; `Ok(None)` when no upstream has it. A page
    /// made for this request is made in `first` first.
    pub async fn get(
        self: &Arc<Self>,
        project: &ProjectName,
        client_forces: bool,
        first: FirstForm,
    ) -> Result<Option<Served>, ResolveError> {
        let now = SystemTime::now();
        let entry = match self.memory.get(project) {
            Some(entry) => Some(entry),
            None => match self.load_from_disk(project).await {
                Some(entry) => Some(entry),
                None => self.load_from_shared(project).await,
            },
        };
        let f = self.freshness;
        match entry {
            Some(Entry::Found(cached)) => {
                let age = cached.age(now);
                if age < f.index_ttl {
                    if client_forces
                        && age >= f.revalidate_interval
                        && cached.claim_refresh(now, f.revalidate_interval)
                    {
                        self.start_refresh(project, Some(cached.clone()));
                    }
                    self.count("hit");
                    return Ok(Some(Served::from_cache(cached, CacheResult::Hit)));
                }
                if age < f.index_ttl + f.max_stale {
                    if cached.claim_refresh(now, f.revalidate_interval) {
                        self.start_refresh(project, Some(cached.clone()));
                    }
                    self.count("stale");
                    return Ok(Some(Served::from_cache(cached, CacheResult::Stale)));
                }
                self.count("miss");
                self.refresh(project, Some(cached), first).await
            }
            Some(Entry::Missing { at }) if now.duration_since(at).unwrap_or_default() < f.negative_ttl => {
                self.count("hit");
                Ok(None)
            }
            _ => {
                self.count("miss");
                self.refresh(project, None, first).await
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics.cache_lookups.with_label_values(&["index", result]).inc();
    }

    async fn load_from_disk(&self, project: &ProjectName) -> Option<Entry> {
        let disk = self.disk.clone().filter(|disk| disk.holds(project))?;
        let name = project.clone();
        let cached = self.restore(project, move || disk.load(&name)).await?;
        tracing::debug!(%project, "page loaded from the disk cache");
        Some(self.keep(project, cached))
    }

    /// The page a replica stored in the shared tier (under this fingerprint), kept here like
    /// a page from disk: served by the freshness flow (so revalidated when old), and written to
    /// the local disk cache.
    async fn load_from_shared(&self, project: &ProjectName) -> Option<Entry> {
        let (fingerprint, bytes) = self.shared.as_ref()?.page(project).await?;
        let name = project.clone();
        let cached = self
            .restore(project, move || crate::cache::page_disk::decode(&fingerprint, &name, &bytes))
            .await?;
        tracing::debug!(%project, "page loaded from the shared store");
        self.write_to_disk(project, &cached);
        Some(self.keep(project, cached))
    }

    /// A stored page (from `load`, run off the reactor) as the cache holds it, if its owner is
    /// still an upstream.
    async fn restore(
        &self,
        project: &ProjectName,
        load: impl FnOnce() -> Option<crate::cache::page_disk::Stored> + Send + 'static,
    ) -> Option<Arc<CachedProject>> {
        let (resolver, metadata, name) = (self.resolver.clone(), self.metadata.clone(), project.clone());
        let restored = tokio::task::spawn_blocking(move || {
            let stored = load()?;
            let owner = resolver.position_of(&stored.owner)?;
            Some(Self::build(&resolver, &metadata, owner, |offer| {
                let first = FirstForm::CLIENTS;
                CachedProject::new(
                    &name,
                    owner,
                    stored.page,
                    stored.validators,
                    stored.fetched_at,
                    offer,
                    first,
                )
            }))
        });
        Some(Arc::new(restored.await.ok()??))
    }

    fn keep(&self, project: &ProjectName, cached: Arc<CachedProject>) -> Entry {
        let entry = Entry::Found(cached);
        self.memory.insert(project.clone(), entry.clone());
        entry
    }

    /// Writes the page to the disk cache in the background.
    fn write_to_disk(&self, project: &ProjectName, cached: &Arc<CachedProject>) {
        let Some(disk) = self.disk.clone() else { return };
        let owner = self.resolver.upstream(cached.owner).name().to_owned();
        let (project, cached) = (project.clone(), cached.clone());
        tokio::task::spawn_blocking(move || {
            disk.store(&project, &owner, cached.fetched_at, &cached.validators, &cached.page);
        });
    }

    /// Starts a refresh without waiting for it.
    fn start_refresh(self: &Arc<Self>, project: &ProjectName, previous: Option<Arc<CachedProject>>) {
        drop(self.join_refresh(project, previous, FirstForm::CLIENTS));
    }

    /// Waits for the refresh of `project`, starting one if none runs.
    async fn refresh(
        self: &Arc<Self>,
        project: &ProjectName,
        previous: Option<Arc<CachedProject>>,
        first: FirstForm,
    ) -> Outcome {
        let mut receiver = self.join_refresh(project, previous, first);
        loop {
            if let Some(outcome) = receiver.borrow_and_update().as_ref() {
                return outcome.clone();
            }
            if receiver.changed().await.is_err() {
                // The refresh task ended without an answer: it panicked. Fail closed.
                let error = crate::upstream::UpstreamError::Body("the refresh task failed".to_owned());
                return Err(ResolveError::upstream_failed("pipgate", error));
            }
        }
    }

    /// Joins the refresh of `project`, or starts one that makes its page in `first` first (the
    /// form the request that starts it needs; requests that join get theirs made when asked).
    fn join_refresh(
        self: &Arc<Self>,
        project: &ProjectName,
        previous: Option<Arc<CachedProject>>,
        first: FirstForm,
    ) -> watch::Receiver<Option<Outcome>> {
        let mut inflight = self.inflight.lock().expect("inflight lock");
        if let Some(receiver) = inflight.get(project) {
            return receiver.clone();
        }
        let (sender, receiver) = watch::channel(None);
        inflight.insert(project.clone(), receiver.clone());
        let cache = self.clone();
        let project = project.clone();
        // The refresh logs under the request that started it.
        let refresh = async move {
            let outcome = cache.run_refresh(&project, previous, first).await;
            // Leave the in-flight map before publishing, so a request that sees the result
            // and finds it stale starts a new refresh instead of joining this finished one.
            cache.inflight.lock().expect("inflight lock").remove(&project);
            let _ = sender.send(Some(outcome));
        };
        tokio::spawn(tracing::Instrument::in_current_span(refresh));
        receiver
    }

    async fn run_refresh(
        &self,
        project: &ProjectName,
        previous: Option<Arc<CachedProject>>,
        first: FirstForm,
    ) -> Outcome {
        let previous_owner = previous.as_ref().map(|p| (p.owner, &p.validators));
        let started = std::time::Instant::now();
        let resolution = self.resolver.resolve(project, previous_owner).await;
        let resolved = started.elapsed();
        let now = SystemTime::now();
        match resolution {
            Ok(Resolution::Found { owner, page, validators, parse_time }) => {
                if let Some(previous) = previous.as_ref().filter(|p| p.owner != owner) {
                    let from = self.resolver.upstream(previous.owner).name();
                    self.metrics
                        .owner_changes
                        .with_label_values(&[from, self.resolver.upstream(owner).name()])
                        .inc();
                    tracing::warn!(
                        %project,
                        from = self.resolver.upstream(previous.owner).name(),
                        to = self.resolver.upstream(owner).name(),
                        "the owner of a project changed"
                    );
                }
                let project_name = project.clone();
                let (resolver, metadata) = (self.resolver.clone(), self.metadata.clone());
                // Rendering makes the form this request needs (for pip, uv, poetry and pdm the
                // JSON's gzip) before the page is stored, so before its disk write competes
                // with it for the CPU.
                let (cached, rendering) = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let cached = Self::build(&resolver, &metadata, owner, |offer| {
                        CachedProject::new(&project_name, owner, *page, validators, now, offer, first)
                    });
                    // The HTML, if that is what was asked for: here, not in another trip.
                    cached.rendered.prepare(first.media_type, first.gzip);
                    (cached, started.elapsed())
                })
                .await
                .expect("rendering a page does not panic");
                let made_in = cached.rendered.made_in;
                let built = BuildTimes {
                    upstream: resolved.saturating_sub(parse_time),
                    parse: parse_time,
                    render: made_in.map_or(rendering, |made| made.render),
                    gzip: made_in.map(|made| made.gzip).unwrap_or_default(),
                };
                let cached = Arc::new(cached);
                self.resolver.owned(project, owner, &cached.page);
                self.store(project, &cached, true);
                Ok(Some(Served { project: cached, cache: CacheResult::Miss, built: Some(built) }))
            }
            Ok(Resolution::Unchanged { owner }) => {
                let Some(previous) = previous.filter(|p| p.owner == owner) else {
                    unreachable!("validators are only sent to the previous owner")
                };
                self.count("revalidated");
                self.resolver.owned(project, owner, &previous.page);
                let cached = Arc::new(previous.confirmed(now));
                self.store(project, &cached, false);
                Ok(Some(Served::from_cache(cached, CacheResult::Revalidated)))
            }
            Ok(Resolution::NotFound) => {
                self.memory.insert(project.clone(), Entry::Missing { at: now });
                Ok(None)
            }
            Err(error) => {
                let f = self.freshness;
                match previous.filter(|p| p.age(now) < f.index_ttl + f.max_stale) {
                    Some(previous) => {
                        tracing::warn!(%project, error = %error, "serving the last good page while the upstream fails");
                        Ok(Some(Served::from_cache(previous, CacheResult::Stale)))
                    }
                    None => {
                        self.metrics.fail_closed.with_label_values(&[error.upstream()]).inc();
                        Err(error)
                    }
                }
            }
        }
    }

    /// Weighs the page of `project` again after a form of it was made (the HTML, say), so
    /// the memory cap counts it; a page replaced meanwhile is left alone.
    pub fn reweigh(&self, project: &ProjectName, made_for: &Arc<CachedProject>) {
        self.put_if_current(project, made_for, made_for.clone());
    }

    /// Puts `replacement` in memory for `project` (weighing it anew) if `current` is still the
    /// page held there; a page replaced meanwhile by a newer one is left alone.
    fn put_if_current(
        &self,
        project: &ProjectName,
        current: &Arc<CachedProject>,
        replacement: Arc<CachedProject>,
    ) {
        self.memory.entry(project.clone()).and_compute_with(|now| match now.map(|e| e.into_value()) {
            Some(Entry::Found(now)) if Arc::ptr_eq(&now, current) => {
                moka::ops::compute::Op::Put(Entry::Found(replacement))
            }
            _ => moka::ops::compute::Op::Nop,
        });
    }

    /// `(bytes, pages)` held in memory now.
    pub fn usage(&self) -> (u64, u64) {
        self.memory.run_pending_tasks();
        (self.memory.weighted_size(), self.memory.entry_count())
    }

    /// Forgets the page of `project` in memory and on disk, so the next request resolves it
    /// anew (after an operator released its owner).
    pub fn invalidate(&self, project: &ProjectName) {
        self.memory.invalidate(project);
        if let Some(disk) = &self.disk {
            disk.remove(project);
        }
    }

    /// Puts the page in memory; a new version (`fetched`, not a confirmed one) also gets, in
    /// one background trip to the blocking pool, its file-name index (so a file request finds
    /// its entry at once) and its record on disk and in the shared tier. One trip, not one per
    /// job: a cold install makes a page per project, and each trip wakes a thread.
    fn store(&self, project: &ProjectName, cached: &Arc<CachedProject>, fetched: bool) {
        self.memory.insert(project.clone(), Entry::Found(cached.clone()));
        if !fetched {
            return;
        }
        let (disk, shared) = (self.disk.clone(), self.shared.clone());
        let owner = self.resolver.upstream(cached.owner).name().to_owned();
        let (project, cached) = (project.clone(), cached.clone());
        tokio::task::spawn_blocking(move || {
            cached.files_by_name();
            if let Some(disk) = disk {
                disk.store(&project, &owner, cached.fetched_at, &cached.validators, &cached.page);
            }
            if let Some(shared) = shared {
                let fingerprint = shared.page_fingerprint().expect("kept only when pages are shared");
                let record = crate::cache::page_disk::encode(
                    fingerprint,
                    &owner,
                    cached.fetched_at,
                    &cached.validators,
                    &cached.page,
                );
                if let Some(record) = record {
                    shared.put_page(&project, record);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::pypi::simple::{DistFile, ProjectPage};

    fn page_of(files: usize) -> (Arc<CachedProject>, std::sync::Weak<ProjectPage>) {
        let project = ProjectName::new("demo").unwrap();
        let mut page: ProjectPage = serde_json::from_str(r#"{"name":"demo","files":[]}"#).unwrap();
        page.files = (0..files)
            .map(|i| DistFile::new(format!("demo-1.{i}.tar.gz"), format!("https://f.example/{i:0200}")))
            .collect();
        let cached = CachedProject::new(
            &project,
            0,
            page,
            Default::default(),
            SystemTime::now(),
            None,
            FirstForm::CLIENTS,
        );
        let weak = Arc::downgrade(&cached.page);
        (Arc::new(cached), weak)
    }

    #[test]
    fn a_large_page_leaving_the_cache_is_freed_on_the_blocking_pool_and_a_small_one_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread().max_blocking_threads(1).build().unwrap();
        let _context = runtime.enter();
        let (large, large_page) = page_of(4000);
        let (small, small_page) = page_of(10);
        // The pool's one thread is busy: a page sent to it waits.
        let (release, blocked) = mpsc::channel::<()>();
        runtime.spawn_blocking(move || blocked.recv());
        drop_off_the_request_path(Entry::Found(large));
        drop_off_the_request_path(Entry::Found(small));
        assert!(small_page.upgrade().is_none(), "freed in the call");
        assert!(large_page.upgrade().is_some(), "not freed in the call");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while large_page.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "the blocking pool never freed it");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
