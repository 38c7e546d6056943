//! The owner rule (I1, I2): which upstream a project's page and files come from.
//!
//! A project belongs to the first upstream, in config order, that answers its page with a
//! valid page; the page is served whole from that upstream, never merged with another. A route
//! pins matching names to one upstream, whatever the others hold. Only a definite 404/410 lets
//! the search go on to the next upstream: any other failure of a higher upstream fails closed,
//! because falling through to a public index is exactly how dependency confusion installs an
//! attacker's package when the private feed has an outage or rejects the credential.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::pypi::ProjectName;
use crate::pypi::simple::ProjectPage;
use crate::upstream::{PageAnswer, Upstream, UpstreamError, Validators};

/// Name patterns pinned to one upstream (by index into the upstream list).
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalized patterns; `*` matches any run of characters.
    pub patterns: Vec<String>,
    pub upstream: usize,
}

/// An upstream failed, so the lookup stopped there. Cheap to clone: one failed refresh
/// answers every request that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("upstream {upstream:?} {error}")]
pub struct ResolveError {
    pub upstream: String,
    #[source]
    pub error: Arc<UpstreamError>,
}

/// The outcome of running the owner rule once.
#[derive(Debug)]
pub enum Resolution {
    /// `owner` has the project; this is its current page.
    Found { owner: usize, page: Box<ProjectPage>, validators: Validators },
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

/// The ordered upstreams, the routes over them, and the upstreams' recent 404s.
#[derive(Debug)]
pub struct Resolver {
    upstreams: Vec<Arc<Upstream>>,
    routes: Vec<Route>,
    /// (upstream, project) pairs that answered 404/410 lately, so that a public project does
    /// not cost a round trip to every private upstream above it on each lookup.
    not_found: moka::sync::Cache<(usize, ProjectName), ()>,
}

impl Resolver {
    pub fn new(upstreams: Vec<Arc<Upstream>>, routes: Vec<Route>, negative_ttl: Duration) -> Self {
        let not_found = moka::sync::Cache::builder().max_capacity(200_000).time_to_live(negative_ttl).build();
        Resolver { upstreams, routes, not_found }
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn upstream(&self, index: usize) -> &Arc<Upstream> {
        &self.upstreams[index]
    }

    /// Runs the owner rule for `project`. With `previous` (the owner and validators of the
    /// cached page), that owner is asked conditionally.
    pub async fn resolve(
        &self,
        project: &ProjectName,
        previous: Option<(usize, &Validators)>,
    ) -> Result<Resolution, ResolveError> {
        let candidates = candidates(&self.routes, self.upstreams.len(), project);
        let found = first_owner(&candidates, |i| async move {
            if self.not_found.contains_key(&(i, project.clone())) {
                return Ok(Asked::NotHere);
            }
            let validators = previous.filter(|(owner, v)| *owner == i && !v.is_empty()).map(|(_, v)| v);
            match self.upstreams[i].fetch_page(project, validators).await? {
                PageAnswer::Found(fetched) => Ok(Asked::Owner(Some(fetched))),
                PageAnswer::NotModified => Ok(Asked::Owner(None)),
                PageAnswer::NotFound => {
                    self.not_found.insert((i, project.clone()), ());
                    Ok(Asked::NotHere)
                }
            }
        })
        .await;
        match found {
            Ok(Some((owner, Some(fetched)))) => {
                let fetched = *fetched;
                Ok(Resolution::Found { owner, page: Box::new(fetched.page), validators: fetched.validators })
            }
            Ok(Some((owner, None))) => Ok(Resolution::Unchanged { owner }),
            Ok(None) => Ok(Resolution::NotFound),
            Err((i, error)) => {
                Err(ResolveError { upstream: self.upstreams[i].name().to_owned(), error: Arc::new(error) })
            }
        }
    }
}

/// The upstreams that may own `project`, in order: the routed one alone, or all of them.
pub fn candidates(routes: &[Route], upstream_count: usize, project: &ProjectName) -> Vec<usize> {
    let routed = routes.iter().find(|route| route.patterns.iter().any(|p| glob_match(p, project.as_str())));
    match routed {
        Some(route) => vec![route.upstream],
        None => (0..upstream_count).collect(),
    }
}

/// Asks `candidates` in order; the first owner wins, the first error stops the search.
pub async fn first_owner<T, F, Fut>(
    candidates: &[usize],
    mut ask: F,
) -> Result<Option<(usize, T)>, (usize, UpstreamError)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Asked<T>, UpstreamError>>,
{
    for &i in candidates {
        match ask(i).await {
            Ok(Asked::Owner(found)) => return Ok(Some((i, found))),
            Ok(Asked::NotHere) => continue,
            Err(error) => return Err((i, error)),
        }
    }
    Ok(None)
}

/// Matches a normalized name against a pattern where `*` is any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::StatusCode;

    use super::*;

    enum Script {
        Page,
        Missing,
        Fails(StatusCode),
    }

    async fn run(scripts: Vec<Script>, routes: &[Route], name: &str) -> Result<Option<usize>, usize> {
        let project = ProjectName::new(name).unwrap();
        let by_index: HashMap<usize, Script> = scripts.into_iter().enumerate().collect();
        let candidates = candidates(routes, by_index.len(), &project);
        let result = first_owner(&candidates, |i| {
            let answer = match &by_index[&i] {
                Script::Page => Ok(Asked::Owner(i.to_string())),
                Script::Missing => Ok(Asked::NotHere),
                Script::Fails(status) => Err(UpstreamError::Status(*status)),
            };
            async move { answer }
        })
        .await;
        result
            .map(|found| {
                found.map(|(i, marker)| {
                    assert_eq!(marker, i.to_string());
                    i
                })
            })
            .map_err(|(i, _)| i)
    }

    #[tokio::test]
    async fn the_owner_rule_table() {
        use Script::*;
        let acme = [Route { patterns: vec!["acme-*".into()], upstream: 0 }];
        type Case<'a> = (Vec<Script>, &'a [Route], &'a str, Result<Option<usize>, usize>);
        let cases: Vec<Case<'_>> = vec![
            // The first upstream that has it owns it, even if a later one has a higher version.
            (vec![Page, Page], &[], "acme-core", Ok(Some(0))),
            (vec![Missing, Page], &[], "six", Ok(Some(1))),
            (vec![Missing, Missing], &[], "nothing", Ok(None)),
            // Any failure above stops the search: never fall through to the public index.
            (vec![Fails(StatusCode::INTERNAL_SERVER_ERROR), Page], &[], "acme-core", Err(0)),
            (vec![Fails(StatusCode::UNAUTHORIZED), Page], &[], "acme-core", Err(0)),
            (vec![Missing, Fails(StatusCode::BAD_GATEWAY)], &[], "six", Err(1)),
            // A route pins the name: the private 404 is final, the public page is never asked.
            (vec![Missing, Page], &acme, "acme-new", Ok(None)),
            (vec![Missing, Page], &acme, "Acme_New", Ok(None)),
            (vec![Missing, Page], &acme, "six", Ok(Some(1))),
        ];
        for (scripts, routes, name, expected) in cases {
            assert_eq!(run(scripts, routes, name).await, expected, "{name}");
        }
    }

    #[test]
    fn globs() {
        for (pattern, name, expected) in [
            ("acme-*", "acme-core", true),
            ("acme-*", "acme", false),
            ("*-internal", "tools-internal", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxc", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} {name}");
        }
    }
}
