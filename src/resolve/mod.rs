//! The owner rule (I1, I2, I9): which upstream a project's page and files come from.
//!
//! A project belongs to the first upstream, in config order, that answers its page with a
//! valid page; the page is served whole from that upstream, never merged with another. A route
//! pins matching names to one upstream, whatever the others hold. Only a definite 404/410 lets
//! the search go on to the next upstream: any other failure of a higher upstream fails closed,
//! because falling through to a public index is exactly how dependency confusion installs an
//! attacker's package when the private feed has an outage or rejects the credential.
//!
//! Beside the rule live the three things that keep a definite 404 from doing the same harm:
//!
//! - [`owners`]: the owner of each project is remembered on disk. A move to a *higher* upstream
//!   (a public name now published privately) is followed at once. A move to a *lower* one is
//!   **held**: the lookup fails closed (the page cache then serves the old owner's last page
//!   while `max_stale` allows) until an operator releases the name, by `[[release]]`, by
//!   `hold = false` on the upstream, or through `POST /admin/release/{project}`.
//! - [`health`]: a feed broken as a whole (its root answers 404, 401, 403 or a sign-in page) is
//!   unhealthy, not empty; a 404 from a health-checked feed counts only after a good probe.
//! - [`shadows`]: names owned privately that also exist on a lower upstream are found in the
//!   background, counted and listed, PEP 708 `tracks` declarations marked as such.

pub mod health;
mod owners;
mod rule;
mod shadows;

pub use owners::{Owned, OwnerMemory};
pub use rule::{Route, candidates, first_owner};
pub use shadows::Shadowed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use health::{Health, Unhealthy};
use shadows::Shadows;

use crate::glob::glob_match;
use crate::metrics::Metrics;
use crate::pypi::ProjectName;
use crate::pypi::simple::ProjectPage;
use crate::upstream::{PageAnswer, Upstream, UpstreamError, Validators};

/// Why a lookup stopped, failing closed. Cheap to clone: one failed refresh answers every
/// request that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// An upstream failed.
    #[error("upstream {upstream:?} {error}")]
    Upstream {
        upstream: String,
        #[source]
        error: Arc<UpstreamError>,
    },
    /// An upstream's index as a whole is broken.
    #[error("upstream {upstream:?} {error}")]
    Unhealthy { upstream: String, error: Unhealthy },
    /// The remembered owner no longer lists the project and a lower upstream does.
    #[error(
        "project {project} is held on upstream {owner:?}: {owner:?} no longer lists it and the lower upstream {lower:?} does, so pipgate does not move it there; if the move is intended, release the name ([[release]] in the config, or POST /admin/release/{project})"
    )]
    Held { project: ProjectName, owner: String, lower: String },
}

impl ResolveError {
    /// The upstream the lookup stopped at.
    pub fn upstream(&self) -> &str {
        match self {
            ResolveError::Upstream { upstream, .. } | ResolveError::Unhealthy { upstream, .. } => upstream,
            ResolveError::Held { owner, .. } => owner,
        }
    }

    pub fn upstream_failed(upstream: &str, error: UpstreamError) -> Self {
        ResolveError::Upstream { upstream: upstream.to_owned(), error: Arc::new(error) }
    }
}

/// The outcome of running the owner rule once.
#[derive(Debug)]
pub enum Resolution {
    /// `owner` has the project; this is its current page, which took `parse_time` to parse.
    Found { owner: usize, page: Box<ProjectPage>, validators: Validators, parse_time: std::time::Duration },
    /// The previous owner answered 304: its page has not changed.
    Unchanged { owner: usize },
    /// Every candidate answered 404/410.
    NotFound,
}

/// What one upstream said during a lookup.
#[derive(Debug)]
pub enum Asked<T> {
    Owner(T),
    NotHere,
}

/// Why one upstream stopped a lookup.
enum Stop {
    Failed(UpstreamError),
    Unhealthy(Unhealthy),
}

/// Everything [`Resolver::new`] needs, from the config.
#[derive(Debug)]
pub struct ResolverSettings {
    pub upstreams: Vec<Arc<Upstream>>,
    pub routes: Vec<Route>,
    pub negative_ttl: Duration,
    pub owners: OwnerMemory,
    /// Per upstream: whether the names it owned are held against a move down.
    pub hold: Vec<bool>,
    /// Patterns of names that may move down (`[[release]]`).
    pub releases: Vec<String>,
    /// Per upstream: whether its root is health-checked.
    pub health_checked: Vec<bool>,
    pub health_interval: Duration,
    pub shadow_check: bool,
    pub shadow_checks_per_second: f64,
    pub shadow_recheck: Duration,
    pub metrics: Arc<Metrics>,
}

/// The ordered upstreams, the routes over them, the upstreams' recent 404s, and the owner
/// memory, health and shadow checks that guard the rule.
#[derive(Debug)]
pub struct Resolver {
    upstreams: Arc<Vec<Arc<Upstream>>>,
    routes: Vec<Route>,
    /// (upstream, project) pairs that answered 404/410 lately, so that a public project does
    /// not cost a round trip to every private upstream above it on each lookup.
    not_found: moka::sync::Cache<(usize, ProjectName), ()>,
    owners: OwnerMemory,
    hold: Vec<bool>,
    releases: Vec<String>,
    /// Names held now, with their owner, so each hold is logged and counted once.
    held: Mutex<HashMap<ProjectName, usize>>,
    health: Health,
    /// `None` when shadow checks are off.
    shadows: Option<Shadows>,
    metrics: Arc<Metrics>,
}

impl Resolver {
    /// Builds the resolver and starts its background work (health probes, shadow checks):
    /// call it inside the runtime.
    pub fn new(settings: ResolverSettings) -> Self {
        let upstreams = Arc::new(settings.upstreams);
        let not_found =
            moka::sync::Cache::builder().max_capacity(200_000).time_to_live(settings.negative_ttl).build();
        let health = Health::new(
            upstreams.clone(),
            &settings.health_checked,
            settings.health_interval,
            settings.metrics.clone(),
        );
        health.spawn_probes();
        let shadows = settings.shadow_check.then(|| {
            Shadows::start(
                upstreams.clone(),
                settings.shadow_checks_per_second,
                settings.shadow_recheck,
                settings.metrics.clone(),
            )
        });
        Resolver {
            upstreams,
            routes: settings.routes,
            not_found,
            owners: settings.owners,
            hold: settings.hold,
            releases: settings.releases,
            held: Mutex::new(HashMap::new()),
            health,
            shadows,
            metrics: settings.metrics,
        }
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn upstream(&self, index: usize) -> &Arc<Upstream> {
        &self.upstreams[index]
    }

    /// The upstreams that may own `project` (a route pins it to one; otherwise all).
    pub fn candidates(&self, project: &ProjectName) -> Vec<usize> {
        candidates(&self.routes, self.upstreams.len(), project)
    }

    /// A project was just published to an upstream: forget the 404s remembered for it, so the
    /// next lookup asks again.
    pub fn forget_not_found(&self, project: &ProjectName) {
        for i in 0..self.upstreams.len() {
            self.not_found.invalidate(&(i, project.clone()));
        }
    }

    pub fn position_of(&self, name: &str) -> Option<usize> {
        self.position(name)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name() == name)
    }

    /// Runs the owner rule for `project`. With `previous` (the owner and validators of the
    /// cached page), that owner is asked conditionally.
    pub async fn resolve(
        &self,
        project: &ProjectName,
        previous: Option<(usize, &Validators)>,
    ) -> Result<Resolution, ResolveError> {
        let candidates = candidates(&self.routes, self.upstreams.len(), project);
        let remembered = self.owners.get(project).and_then(|owned| self.position(&owned.upstream));
        let found = first_owner(&candidates, |i| async move {
            self.health.gate(i).map_err(Stop::Unhealthy)?;
            // The remembered owner is always asked: a held name must see its owner come back.
            if Some(i) != remembered && self.not_found.contains_key(&(i, project.clone())) {
                return Ok(Asked::NotHere);
            }
            let validators = previous.filter(|(owner, v)| *owner == i && !v.is_empty()).map(|(_, v)| v);
            match self.upstreams[i].fetch_page(project, validators).await.map_err(Stop::Failed)? {
                PageAnswer::Found(fetched) => Ok(Asked::Owner(Some(fetched))),
                PageAnswer::NotModified => Ok(Asked::Owner(None)),
                PageAnswer::NotFound => {
                    // A 404 from a feed whose root is broken means nothing (I9).
                    self.health.trust_not_found(i).await.map_err(Stop::Unhealthy)?;
                    self.not_found.insert((i, project.clone()), ());
                    Ok(Asked::NotHere)
                }
            }
        })
        .await;
        let (owner, fetched) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Resolution::NotFound),
            Err((i, stop)) => {
                let upstream = self.upstreams[i].name().to_owned();
                return Err(match stop {
                    Stop::Failed(error) => ResolveError::Upstream { upstream, error: Arc::new(error) },
                    Stop::Unhealthy(error) => ResolveError::Unhealthy { upstream, error },
                });
            }
        };
        self.check_move(project, remembered, owner).await?;
        Ok(match fetched {
            Some(fetched) => {
                let fetched = *fetched;
                Resolution::Found {
                    owner,
                    page: Box::new(fetched.page),
                    validators: fetched.validators,
                    parse_time: fetched.parse_time,
                }
            }
            None => Resolution::Unchanged { owner },
        })
    }

    /// Compares the owner just found with the remembered one: a move down is held unless the
    /// name is released; anything else is remembered.
    async fn check_move(
        &self,
        project: &ProjectName,
        remembered: Option<usize>,
        owner: usize,
    ) -> Result<(), ResolveError> {
        if let Some(was) = remembered.filter(|&was| owner > was) {
            if self.hold[was] && !self.releases.iter().any(|p| glob_match(p, project.as_str())) {
                self.start_hold(project, was, owner);
                return Err(ResolveError::Held {
                    project: project.clone(),
                    owner: self.upstreams[was].name().to_owned(),
                    lower: self.upstreams[owner].name().to_owned(),
                });
            }
            tracing::warn!(%project, from = self.upstreams[was].name(), to = self.upstreams[owner].name(), "a released name moved to a lower upstream");
            self.metrics.owner_releases.with_label_values(&[self.upstreams[was].name(), "config"]).inc();
        }
        self.end_hold(project);
        // Only owners with a lower upstream below them can lose a name to it: a name owned by
        // the last upstream is remembered by nobody (and most lookups are of such names).
        let is_last = owner + 1 == self.upstreams.len();
        if remembered == Some(owner) || (is_last && remembered.is_none()) {
            return Ok(());
        }
        let owners = self.owners.clone();
        let project = project.clone();
        let name = self.upstreams[owner].name().to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            if is_last {
                owners.forget(&project);
            } else {
                owners.record(&project, &name, SystemTime::now());
            }
        })
        .await;
        Ok(())
    }

    fn start_hold(&self, project: &ProjectName, owner: usize, lower: usize) {
        let mut held = self.held.lock().expect("held lock");
        if held.insert(project.clone(), owner).is_none() {
            let (owner, lower) = (self.upstreams[owner].name(), self.upstreams[lower].name());
            tracing::warn!(%project, owner, lower, "holding a project on its upstream: it left the owner and a lower upstream has it");
            self.metrics.owner_holds.with_label_values(&[owner, lower]).inc();
            self.metrics.held_projects.with_label_values(&[owner]).inc();
        }
    }

    fn end_hold(&self, project: &ProjectName) {
        if let Some(owner) = self.held.lock().expect("held lock").remove(project) {
            let owner = self.upstreams[owner].name();
            tracing::info!(%project, owner, "a held project resolves again");
            self.metrics.held_projects.with_label_values(&[owner]).dec();
        }
    }

    /// An operator releases `project`: its remembered owner is forgotten, so the next lookup
    /// follows whatever the owner rule finds. Returns the owner it had.
    pub async fn release(&self, project: &ProjectName) -> Option<Owned> {
        let owners = self.owners.clone();
        let name = project.clone();
        let owned = tokio::task::spawn_blocking(move || owners.forget(&name)).await.ok()??;
        self.end_hold(project);
        for i in 0..self.upstreams.len() {
            self.not_found.invalidate(&(i, project.clone()));
        }
        tracing::warn!(%project, owner = %owned.upstream, "an operator released a project: it may now move to a lower upstream");
        self.metrics.owner_releases.with_label_values(&[&owned.upstream, "admin"]).inc();
        Some(owned)
    }

    /// The owner rule gave `project` to `owner` with `page` (fetched now or confirmed by a
    /// 304): check it for shadows in the background.
    pub fn owned(&self, project: &ProjectName, owner: usize, page: &ProjectPage) {
        if let Some(shadows) = &self.shadows {
            shadows.consider(project, owner, page);
        }
    }

    /// A page of `project` from `owner` was served.
    pub fn served(&self, project: &ProjectName, owner: usize) {
        if let Some(shadows) = &self.shadows {
            shadows.served(project, owner);
        }
    }

    pub fn shadowed(&self) -> Vec<Shadowed> {
        self.shadows.as_ref().map(Shadows::list).unwrap_or_default()
    }

    /// `(upstream, reason, since)` of every unhealthy upstream.
    pub fn unhealthy(&self) -> Vec<(&str, String, SystemTime)> {
        self.health.unhealthy()
    }
}
