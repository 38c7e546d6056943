//! Who may publish what where (`[[publish.rule]]`, I10): an authenticated client, a rule for
//! the target upstream whose project patterns cover the name, and whose identities include
//! the client: its token name, its htpasswd user, or (an OIDC token) claims that match every
//! glob of the rule, such as `repository = "acme/*"` and `ref = "refs/tags/v*"`.
//!
//! Whether the name may be published there at all (it must not belong to another upstream)
//! is the index's question, asked after this one.

use super::oidc::unmet_claim;
use super::{Client, Refusal, Who};
use crate::config::PublishRuleConfig;
use crate::glob::glob_match;
use crate::pypi::ProjectName;

#[derive(Debug)]
pub struct PublishRules {
    rules: Vec<PublishRuleConfig>,
}

impl PublishRules {
    pub fn new(rules: &[PublishRuleConfig]) -> Self {
        PublishRules { rules: rules.to_vec() }
    }

    /// The name of the rule that lets `client` publish `project` to `upstream` (a position),
    /// or the refusal: 401 for an anonymous client, 403 naming what did not match.
    pub fn allow(
        &self,
        client: &Client,
        upstream: usize,
        upstream_name: &str,
        project: &ProjectName,
    ) -> Result<&str, Refusal> {
        if matches!(client.who, Who::Anonymous | Who::Anyone) {
            return Err(Refusal::Missing);
        }
        let mut closest = None;
        for rule in self.rules.iter().filter(|r| r.upstream_position() == upstream) {
            let name = rule.name.as_deref().unwrap_or("?");
            if !rule.projects.iter().any(|p| glob_match(p, project.as_str())) {
                continue;
            }
            let admitted = match &client.who {
                Who::Token { name } => rule.tokens.contains(name),
                Who::User { name } => rule.users.contains(name),
                Who::Oidc { claims, .. } if !rule.claims.is_empty() => {
                    match unmet_claim(claims, rule.claims.iter().map(|(k, v)| (k.as_str(), v.0.as_slice()))) {
                        None => true,
                        Some(unmet) => {
                            // The most telling reason: a rule for this client kind, off by a claim.
                            closest = Some(format!("{unmet} of publish rule {name:?}"));
                            false
                        }
                    }
                }
                _ => false,
            };
            if admitted {
                return Ok(name);
            }
            closest.get_or_insert(format!(
                "publish rule {name:?} covers {project} but not {}",
                client.describe()
            ));
        }
        Err(Refusal::NotAllowed(format!(
            "{} may not publish {project} to upstream {upstream_name:?}: {}",
            client.describe(),
            closest.unwrap_or_else(|| format!(
                "no publish rule for upstream {upstream_name:?} covers {project}"
            ))
        )))
    }
}
