//! The owner rule itself, without I/O: which upstreams may own a name, and the first-owner
//! search over them. Unit-tested as a table.

use std::future::Future;

use super::Asked;
use crate::glob::glob_match;
use crate::pypi::ProjectName;

/// Name patterns pinned to one upstream (by index into the upstream list).
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalized patterns; `*` matches any run of characters.
    pub patterns: Vec<String>,
    pub upstream: usize,
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
pub async fn first_owner<T, E, F, Fut>(
    candidates: &[usize],
    mut ask: F,
) -> Result<Option<(usize, T)>, (usize, E)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Asked<T>, E>>,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::StatusCode;

    use super::*;
    use crate::upstream::UpstreamError;

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
}
