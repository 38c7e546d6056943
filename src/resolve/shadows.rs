//! Shadow detection: which privately owned names also exist on a lower (public) upstream.
//!
//! The owner rule already keeps such a shadow from being installed; the security team still
//! wants to know it exists, since a public project under a private name is exactly how a
//! dependency-confusion attack starts. After the owner rule gives a project to an upstream that
//! has others below it, the name is queued here; a background worker asks the lower upstreams
//! for it, at most `checks_per_second`, and re-checks each known name every `recheck`. Nothing
//! here runs on the request path: a request only reads the current list (to count what the
//! owner rule kept from a shadow).
//!
//! PEP 708: an owner page that `tracks` (or lists as an `alternate-locations`) the lower
//! upstream's page of the same project declares the two as one project. Such a name is listed as
//! *tracked*: sanctioned, not an attack.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::pypi::ProjectName;
use crate::pypi::simple::ProjectPage;
use crate::upstream::{PageAnswer, Upstream};

/// Names waiting for a check; more are dropped (and come back on their next refresh).
const QUEUE: usize = 1024;

/// One shadowed name, as `/admin/shadowed` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Shadowed {
    pub project: String,
    pub owner: String,
    pub shadowing_upstream: String,
    pub owner_versions: Vec<String>,
    pub shadow_versions: Vec<String>,
    /// RFC 3339.
    pub first_seen: String,
    /// The owner's page declares the lower page as the same project (PEP 708).
    pub tracked: bool,
}

/// What the worker needs to check one name.
struct Job {
    project: ProjectName,
    owner: usize,
    owner_versions: Vec<String>,
    declared: Vec<String>,
}

/// A shadowed name as the worker knows it.
#[derive(Debug)]
struct Entry {
    owner: usize,
    shadow: usize,
    /// The owner page's `tracks` and `alternate-locations`, for re-checks.
    declared: Vec<String>,
    listed: Shadowed,
}

#[derive(Debug, Default)]
struct Known {
    /// Shadowed names now.
    shadowed: HashMap<ProjectName, Entry>,
    /// When each name was last checked (or queued), to pace re-checks.
    checked: HashMap<ProjectName, Instant>,
}

#[derive(Debug, Clone)]
pub struct Shadows {
    known: Arc<Mutex<Known>>,
    queue: mpsc::Sender<Job>,
    upstreams: Arc<Vec<Arc<Upstream>>>,
    recheck: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("project", &self.project).finish_non_exhaustive()
    }
}

impl Shadows {
    /// Starts the worker (needs a runtime).
    pub fn start(
        upstreams: Arc<Vec<Arc<Upstream>>>,
        checks_per_second: f64,
        recheck: Duration,
        metrics: Arc<Metrics>,
    ) -> Shadows {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let shadows = Shadows { known: Arc::default(), queue, upstreams, recheck, metrics };
        let pace = Duration::from_secs_f64(1.0 / checks_per_second.max(0.001));
        tokio::spawn(shadows.clone().work(jobs, pace));
        tokio::spawn(shadows.clone().sweep());
        shadows
    }

    /// The owner rule gave `project` to `owner` with `page`: check it against the lower
    /// upstreams unless that was done within `recheck`.
    pub fn consider(&self, project: &ProjectName, owner: usize, page: &ProjectPage) {
        if owner + 1 >= self.upstreams.len() {
            return;
        }
        {
            let mut known = self.known.lock().expect("shadows lock");
            if known.checked.get(project).is_some_and(|at| at.elapsed() < self.recheck) {
                return;
            }
            known.checked.insert(project.clone(), Instant::now());
        }
        let declared = page.tracks.iter().chain(&page.alternate_locations).cloned().collect();
        let job = Job { project: project.clone(), owner, owner_versions: page.versions.clone(), declared };
        if self.queue.try_send(job).is_err() {
            // Full: forget the mark so the next refresh queues it again.
            self.known.lock().expect("shadows lock").checked.remove(project);
        }
    }

    /// A page of `project` was served from `owner`: counts it as kept from its shadow, if any.
    pub fn served(&self, project: &ProjectName, owner: usize) {
        if owner + 1 >= self.upstreams.len() {
            return;
        }
        let known = self.known.lock().expect("shadows lock");
        if let Some(entry) = known.shadowed.get(project)
            && !entry.listed.tracked
        {
            let names = [self.upstreams[owner].name(), self.upstreams[entry.shadow].name()];
            self.metrics.shadow_kept.with_label_values(&names).inc();
        }
    }

    /// Every shadowed name now, sorted by project.
    pub fn list(&self) -> Vec<Shadowed> {
        let known = self.known.lock().expect("shadows lock");
        let mut list: Vec<Shadowed> = known.shadowed.values().map(|entry| entry.listed.clone()).collect();
        list.sort_by(|a, b| a.project.cmp(&b.project));
        list
    }

    async fn work(self, mut jobs: mpsc::Receiver<Job>, pace: Duration) {
        let mut ticks = tokio::time::interval(pace);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(job) = jobs.recv().await {
            let mut asked = false;
            let mut found = None;
            for shadow in job.owner + 1..self.upstreams.len() {
                // The pace applies to every request towards a lower (public) upstream.
                ticks.tick().await;
                asked = true;
                match self.upstreams[shadow].fetch_page(&job.project, None).await {
                    Ok(PageAnswer::Found(fetched)) => {
                        found = Some((shadow, fetched.page.versions));
                        break;
                    }
                    Ok(_) => continue,
                    // No answer: keep what was known, try again at the next re-check.
                    Err(_) => {
                        asked = false;
                        break;
                    }
                }
            }
            if asked {
                self.update(job, found);
            }
        }
    }

    fn update(&self, job: Job, found: Option<(usize, Vec<String>)>) {
        let mut known = self.known.lock().expect("shadows lock");
        let before = known.shadowed.remove(&job.project);
        let owner_name = self.upstreams[job.owner].name();
        if let Some(entry) = &before {
            self.gauge(self.upstreams[entry.owner].name(), entry.shadow, entry.listed.tracked, -1);
        }
        let Some((shadow, shadow_versions)) = found else {
            if before.is_some() {
                tracing::info!(project = %job.project, owner = owner_name, "a shadowed name is no longer on a lower upstream");
            }
            return;
        };
        let shadow_url = self.upstreams[shadow].project_url(&job.project);
        let tracked = job.declared.iter().any(|url| same_page(url, shadow_url.as_str()));
        let first_seen = match &before {
            Some(entry) if entry.shadow == shadow && entry.owner == job.owner => {
                entry.listed.first_seen.clone()
            }
            _ => {
                if tracked {
                    tracing::info!(project = %job.project, owner = owner_name, shadow = self.upstreams[shadow].name(), "a private name is also on a lower upstream, which its page tracks (PEP 708)");
                } else {
                    tracing::warn!(project = %job.project, owner = owner_name, shadow = self.upstreams[shadow].name(), "a private name is also published on a lower upstream: the owner rule keeps it private");
                }
                humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
            }
        };
        let listed = Shadowed {
            project: job.project.to_string(),
            owner: owner_name.to_owned(),
            shadowing_upstream: self.upstreams[shadow].name().to_owned(),
            owner_versions: job.owner_versions,
            shadow_versions,
            first_seen,
            tracked,
        };
        self.gauge(owner_name, shadow, tracked, 1);
        let entry = Entry { owner: job.owner, shadow, declared: job.declared, listed };
        known.shadowed.insert(job.project, entry);
    }

    fn gauge(&self, owner: &str, shadow: usize, tracked: bool, by: i64) {
        let tracked = if tracked { "true" } else { "false" };
        self.metrics.shadowed.with_label_values(&[owner, self.upstreams[shadow].name(), tracked]).add(by);
    }

    /// Re-checks the shadowed names every `recheck`, so a shadow that disappears (or appears on
    /// another lower upstream) is noticed even when nobody asks for the name.
    async fn sweep(self) {
        let mut ticks = tokio::time::interval(self.recheck);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let jobs: Vec<Job> = {
                let mut known = self.known.lock().expect("shadows lock");
                let jobs: Vec<Job> = known
                    .shadowed
                    .iter()
                    .map(|(project, entry)| Job {
                        project: project.clone(),
                        owner: entry.owner,
                        owner_versions: entry.listed.owner_versions.clone(),
                        declared: entry.declared.clone(),
                    })
                    .collect();
                for job in &jobs {
                    known.checked.insert(job.project.clone(), Instant::now());
                }
                jobs
            };
            for job in jobs {
                let _ = self.queue.send(job).await;
            }
        }
    }
}

/// Whether two project-page URLs name the same page (trailing slash and host case aside).
fn same_page(a: &str, b: &str) -> bool {
    let canonical =
        |url: &str| url::Url::parse(url).map(|u| u.as_str().trim_end_matches('/').to_owned()).ok();
    canonical(a).is_some() && canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_urls_compare_as_pages() {
        assert!(same_page("https://PyPI.org/simple/acme-core", "https://pypi.org/simple/acme-core/"));
        assert!(!same_page("https://pypi.org/simple/acme-corp/", "https://pypi.org/simple/acme-core/"));
        assert!(!same_page("not a url", "not a url"));
    }
}
