//! The one door into the index: what handlers ask for a project page, a file or the root list.
//!
//! Behind it sit the owner rule ([`crate::resolve`]), the page cache, the file store and the
//! root list. Every answer comes with its owner, so a handler never needs to know how
//! upstreams are numbered or where a page came from; it only turns the answer into HTTP.

use std::sync::Arc;

use http::Response;

use crate::cache::entry::CachedProject;
use crate::cache::files::{FileStore, Fill, Lookup, is_sha256};
use crate::cache::metadata::{CoreMetadataFile, MetadataFailure, WheelRef};
use crate::cache::rendered::{FirstForm, Rendered};
use crate::cache::{CacheResult, PageCache, RootCache};
use crate::error::ServeError;
use crate::identity::{Client, Refusal};
use crate::metrics::Metrics;
use crate::pypi::ProjectName;
use crate::pypi::simple::{CoreMetadata, version_from_filename};
use crate::resolve::{Owned, Shadowed};
use crate::upstream::{Expected, Upstream, VerifiedBody};

/// How often, and how far apart, the page of a just-published project is fetched again until
/// it lists the new file.
const PUBLISH_SETTLE_ATTEMPTS: u32 = 10;
const PUBLISH_SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// A project page as the owner rule and the cache answered it.
#[derive(Debug)]
pub struct ProjectAnswer {
    pub project: Arc<CachedProject>,
    /// How the cache answered; `Stale` is past its freshness (stale-while-revalidate or
    /// stale-on-error).
    pub cache: CacheResult,
    pub owner: Arc<Upstream>,
    /// Where the time went, when this request waited for the page to be made.
    pub built: Option<crate::cache::BuildTimes>,
}

/// A file that the owner's page lists: where it comes from and what it must be.
#[derive(Debug)]
pub struct ListedFile {
    pub owner: Arc<Upstream>,
    pub filename: String,
    url: String,
    pub expected: Expected,
    /// Lowercase hex, when the index gives one: the cache key and the ETag.
    pub sha256: Option<String>,
}

/// What a `/files/` path names: a file the owner's page lists (or the metadata file the owner
/// offers beside it), or the metadata pipgate offers for a listed wheel whose owner offers none.
#[derive(Debug)]
pub enum Located {
    File(ListedFile),
    Metadata(WheelMetadata),
}

/// The metadata pipgate reads out of a listed wheel (PEP 658, for an owner without it).
#[derive(Debug)]
pub struct WheelMetadata {
    /// The wheel, as its owner lists it.
    pub wheel: ListedFile,
    project: ProjectName,
    version: String,
}

/// Where the bytes of a listed file come from.
pub enum FileSource {
    /// A committed, verified file.
    Cached { file: Arc<std::fs::File>, size: u64 },
    /// A fill in progress, possibly started by this request.
    Filling(Arc<Fill>),
    /// Not cacheable (no sha256 in the index) or the cache disk is failing: stream it through.
    PassThrough,
}

#[derive(Debug)]
pub struct Index {
    pages: Arc<PageCache>,
    files: Arc<FileStore>,
    root: RootCache,
    metrics: Arc<Metrics>,
}

impl Index {
    pub fn new(pages: Arc<PageCache>, files: Arc<FileStore>, root: RootCache, metrics: Arc<Metrics>) -> Self {
        Index { pages, files, root, metrics }
    }

    /// The page of `project` from its owner; `ProjectNotFound` when no upstream has it.
    /// `client_forces` is a client's `max-age=0`: it may start a background revalidation.
    /// `client` must be allowed to read the owner; if not, the answer is a refusal, never the
    /// same name from another upstream (I10).
    /// A page made for this request is made in `first` (the form the client asked for) first.
    pub async fn page(
        &self,
        project: &ProjectName,
        client_forces: bool,
        client: &Client,
        first: FirstForm,
    ) -> Result<ProjectAnswer, ServeError> {
        let answer = self.lookup(project, client_forces, first).await?;
        self.check_read(client, project, &answer)?;
        // Counted here, for page requests only (a file request looks the page up too).
        self.pages.resolver().served(project, answer.project.owner);
        Ok(answer)
    }

    /// Counts a form of `project`'s page made for `answer` in the page cache's memory cap.
    pub fn reweigh(&self, project: &ProjectName, answer: &ProjectAnswer) {
        self.pages.reweigh(project, &answer.project);
    }

    /// The page of `project` from its owner, for a page or a file request.
    async fn lookup(
        &self,
        project: &ProjectName,
        client_forces: bool,
        first: FirstForm,
    ) -> Result<ProjectAnswer, ServeError> {
        let served = self
            .pages
            .get(project, client_forces, first)
            .await?
            .ok_or_else(|| ServeError::ProjectNotFound(project.clone()))?;
        let owner = self.pages.resolver().upstream(served.project.owner).clone();
        Ok(ProjectAnswer { project: served.project, cache: served.cache, owner, built: served.built })
    }

    /// The file `filename` as the owner of `project` lists it, or the PEP 658 metadata of a
    /// listed file that offers it. The project goes through the owner rule again (a page-cache
    /// hit), so a file can only come from the upstream that owns the project (I8).
    pub async fn file(
        &self,
        project: &ProjectName,
        filename: &str,
        client: &Client,
    ) -> Result<Located, ServeError> {
        let answer = self.lookup(project, false, FirstForm::CLIENTS).await?;
        self.check_read(client, project, &answer)?;
        locate(project, filename, &answer.project, answer.owner.clone()).ok_or_else(|| {
            ServeError::FileNotListed {
                project: project.clone(),
                filename: filename.to_owned(),
                upstream: answer.owner.name().to_owned(),
            }
        })
    }

    /// Refuses `answer` to a client that may not read its owner. The owner rule ran in full
    /// before this, with every upstream, so a refusal here can never turn into the same name
    /// from an upstream the client may read.
    fn check_read(
        &self,
        client: &Client,
        project: &ProjectName,
        answer: &ProjectAnswer,
    ) -> Result<(), ServeError> {
        if client.may_read(answer.project.owner) {
            return Ok(());
        }
        let upstream = answer.owner.name();
        self.metrics.access_denied.with_label_values(&[upstream]).inc();
        let refusal = Refusal::Unreadable {
            client: client.describe(),
            anonymous: client.is_anonymous(),
            project: project.to_string(),
            upstream: upstream.to_owned(),
        };
        tracing::info!(%upstream, %project, client = %client.describe(), "project withheld: the client may not read its owner");
        Err(ServeError::Access(refusal))
    }

    /// Where to read `file` from: the cache, a fill (started here if none runs), or the
    /// upstream directly. Counts the file-cache lookup.
    pub async fn open(&self, file: &ListedFile) -> FileSource {
        let Some(sha256) = &file.sha256 else {
            self.metrics.pass_through.with_label_values(&[file.owner.name(), "no_hash"]).inc();
            return FileSource::PassThrough;
        };
        let lookup = self.files.get_or_fill(sha256, &file.owner, &file.url, file.expected.clone()).await;
        let (source, result) = match lookup {
            Lookup::Hit { file, size } => (FileSource::Cached { file, size }, "hit"),
            Lookup::Filling(fill) => (FileSource::Filling(fill), "miss"),
            Lookup::Unavailable => {
                self.metrics.pass_through.with_label_values(&[file.owner.name(), "disk"]).inc();
                (FileSource::PassThrough, "bypass")
            }
        };
        self.metrics.cache_lookups.with_label_values(&["file", result]).inc();
        source
    }

    /// The METADATA of `wheel`, read out of the wheel: from memory, the cache, or the
    /// upstream by ranges (see `cache::metadata`). What is learned (a hash, or a wheel that
    /// cannot be offered) reaches the project's page in a re-render soon after.
    pub async fn metadata(&self, wheel: &WheelMetadata) -> Result<Arc<CoreMetadataFile>, ServeError> {
        let listed = &wheel.wheel;
        let sha256 = listed.sha256.as_deref().expect("offered only for wheels with a sha256");
        let upstream = listed.owner.name();
        let got = self
            .pages
            .metadata()
            .get(WheelRef {
                owner: &listed.owner,
                url: &listed.url,
                expected: &listed.expected,
                sha256,
                project: &wheel.project,
                version: &wheel.version,
            })
            .await;
        match got {
            Ok((metadata, source)) => {
                self.metrics.core_metadata.with_label_values(&[upstream, source]).inc();
                if source != "memory" {
                    self.pages.rerender_soon(&wheel.project);
                }
                Ok(metadata)
            }
            Err(error) => {
                self.metrics.core_metadata_failures.with_label_values(&[upstream, error.reason()]).inc();
                if let MetadataFailure::Wheel(_) = error {
                    tracing::warn!(%upstream, filename = %listed.filename, %error, "the wheel's metadata cannot be offered");
                    self.pages.rerender_soon(&wheel.project);
                }
                Err(ServeError::metadata_failed(upstream, &listed.filename, error))
            }
        }
    }

    /// Sets the gauges that describe the caches now (at scrape time: cheap, and exact then).
    pub fn record_gauges(&self) {
        let metrics = &self.metrics;
        let (page_bytes, pages) = self.pages.usage();
        let (file_bytes, files, fills) = self.files.usage();
        for (cache, bytes, entries) in [("index", page_bytes, pages), ("file", file_bytes, files)] {
            metrics.cache_bytes.with_label_values(&[cache]).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            metrics.cache_entries.with_label_values(&[cache]).set(i64::try_from(entries).unwrap_or(i64::MAX));
        }
        metrics.fills_in_progress.set(i64::try_from(fills).unwrap_or(i64::MAX));
    }

    /// Starts streaming `file` from its owner without the cache, checked as it streams.
    pub async fn pass_through(&self, file: &ListedFile) -> Result<Response<VerifiedBody>, ServeError> {
        file.owner
            .fetch_file(&file.url, file.expected.clone())
            .await
            .map_err(|error| ServeError::upstream(file.owner.name(), error))
    }

    /// The root list of every upstream's projects, rendered, and whether it was kept (`hit`) or
    /// fetched now (`miss`).
    /// Only the upstreams `client` may read are listed.
    pub async fn root(&self, client: &Client) -> Result<(Arc<Rendered>, &'static str), ServeError> {
        Ok(self.root.get(self.pages.resolver().upstreams(), client.reads).await?)
    }

    /// An operator releases `project` from its remembered owner: the next request resolves it
    /// anew, and may move it to a lower upstream. Returns the owner it had.
    pub async fn release(&self, project: &ProjectName) -> Result<Owned, ServeError> {
        let owned = self
            .pages
            .resolver()
            .release(project)
            .await
            .ok_or_else(|| ServeError::NothingToRelease(project.clone()))?;
        self.pages.invalidate(project);
        Ok(owned)
    }

    /// The position of the upstream called `name`.
    pub fn upstream_position(&self, name: &str) -> Option<usize> {
        self.pages.resolver().position_of(name)
    }

    pub fn upstream(&self, position: usize) -> &Arc<Upstream> {
        self.pages.resolver().upstream(position)
    }

    /// Whether `project` may be published to the upstream at `target`: no route pins it
    /// elsewhere, and no other upstream owns it (publishing below its owner would make a
    /// shadow; above it, take the name over). A lookup that fails fails the publish closed.
    pub async fn check_publish_owner(&self, project: &ProjectName, target: usize) -> Result<(), ServeError> {
        let resolver = self.pages.resolver();
        let target_name = resolver.upstream(target).name();
        let candidates = resolver.candidates(project);
        if !candidates.contains(&target) {
            let pinned = resolver.upstream(candidates[0]).name();
            return Err(ServeError::PublishRefused(format!(
                "project {project} is routed to upstream {pinned:?}; it would never be served from {target_name:?}"
            )));
        }
        match self.lookup(project, true, FirstForm::CLIENTS).await {
            Ok(answer) if answer.project.owner == target => Ok(()),
            Ok(answer) => {
                let owner = answer.owner.name();
                let what = if answer.project.owner < target {
                    "a lower upstream may not shadow it"
                } else {
                    "publishing it higher would take the name over (release it from the owner, or publish there)"
                };
                Err(ServeError::PublishRefused(format!(
                    "project {project} is owned by upstream {owner:?}, not {target_name:?}: {what}"
                )))
            }
            Err(ServeError::ProjectNotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `filename` of `project` was just published: drop the cached page and the remembered
    /// 404s so the next install sees it, and keep refreshing the page briefly until it lists
    /// the file (feeds take a moment to show a new upload).
    pub fn published(&self, project: &ProjectName, filename: &str) {
        self.pages.resolver().forget_not_found(project);
        self.pages.invalidate(project);
        let (pages, project, filename) = (self.pages.clone(), project.clone(), filename.to_owned());
        tokio::spawn(async move {
            for attempt in 1..=PUBLISH_SETTLE_ATTEMPTS {
                match pages.get(&project, true, FirstForm::CLIENTS).await {
                    Ok(Some(served)) if served.project.file(&filename).is_some() => return,
                    _ => {}
                }
                tokio::time::sleep(PUBLISH_SETTLE_PAUSE).await;
                pages.resolver().forget_not_found(&project);
                pages.invalidate(&project);
                tracing::debug!(%project, %filename, attempt, "the owner does not list the new file yet");
            }
            tracing::warn!(%project, %filename, "the upstream still does not list the published file");
        });
    }

    /// Privately owned names that a lower upstream also has.
    pub fn shadowed(&self) -> Vec<Shadowed> {
        self.pages.resolver().shadowed()
    }

    /// `(upstream, reason, since)` of every health-checked upstream that is broken now.
    pub fn unhealthy(&self) -> Vec<(&str, String, std::time::SystemTime)> {
        self.pages.resolver().unhealthy()
    }

    /// Upstreams whose credential cannot authenticate yet (no first token): not ready.
    pub fn waiting_for_credentials(&self) -> Vec<&str> {
        self.pages.resolver().upstreams().iter().filter(|u| !u.is_ready()).map(|u| u.name()).collect()
    }
}

fn locate(
    project: &ProjectName,
    filename: &str,
    page: &CachedProject,
    owner: Arc<Upstream>,
) -> Option<Located> {
    let synthesizes = owner.synthesizes_metadata();
    let listed = |url: String, sha256: Option<&str>, size: Option<u64>| {
        let sha256 = sha256.map(|h| h.to_ascii_lowercase()).filter(|h| is_sha256(h));
        ListedFile {
            owner,
            filename: filename.to_owned(),
            url,
            expected: Expected::new(sha256.as_deref(), size),
            sha256,
        }
    };
    if let Some(file) = page.file(filename) {
        return Some(Located::File(listed(file.url.clone(), file.hashes.get("sha256"), file.size)));
    }
    let stem = filename.strip_suffix(".metadata")?;
    let file = page.file(stem)?;
    if synthesizes && file.wheel_without_metadata().is_some() {
        let version = version_from_filename(project.as_str(), &file.filename)?.to_owned();
        let mut wheel = listed(file.url.clone(), file.hashes.get("sha256"), file.size);
        wheel.filename = file.filename.clone();
        return Some(Located::Metadata(WheelMetadata { wheel, project: project.clone(), version }));
    }
    if !file.has_metadata() {
        return None;
    }
    let mut url = url::Url::parse(&file.url).ok()?;
    url.set_path(&format!("{}.metadata", url.path()));
    let sha256 = match &file.core_metadata {
        Some(CoreMetadata::Hashes(hashes)) => hashes.get("sha256"),
        _ => None,
    };
    Some(Located::File(listed(url.into(), sha256, None)))
}
