//! `/admin/…`: what an operator does to a running pipgate. Off unless `[admin]` sets a token,
//! and every call must present it as `Authorization: Bearer <token>`: releasing a held name
//! re-opens that name to a lower upstream, and the shadow list names private projects.
//!
//! | method and path                     | answer                                             |
//! |-------------------------------------|----------------------------------------------------|
//! | `POST /admin/release/{project}`     | forgets the project's remembered owner (JSON)      |
//! | `GET /admin/shadowed`               | privately owned names also on a lower upstream     |

use http::request::Parts;
use http::{Method, Response, StatusCode, header};

use crate::body::{ResponseBody, full};
use crate::error::ServeError;
use crate::pypi::ProjectName;
use crate::state::State;

pub async fn route(state: &State, request: &Parts, rest: &str) -> Result<Response<ResponseBody>, ServeError> {
    authorize(state, request)?;
    let read = request.method == Method::GET || request.method == Method::HEAD;
    if rest == "shadowed" {
        if !read {
            return Err(ServeError::MethodNotAllowed("GET or HEAD"));
        }
        return Ok(json(serde_json::to_value(state.index.shadowed()).expect("the list serializes")));
    }
    let Some(project) = rest.strip_prefix("release/") else {
        return Err(ServeError::NotFound);
    };
    if request.method != Method::POST {
        return Err(ServeError::MethodNotAllowed("POST"));
    }
    let project = ProjectName::new(project.trim_end_matches('/'))?;
    let owned = state.index.release(&project).await?;
    Ok(json(serde_json::json!({
        "project": project.as_str(),
        "released_from": owned.upstream,
        "owned_since": humantime::format_rfc3339_seconds(owned.since).to_string(),
    })))
}

/// The request carries the admin token (compared in constant time).
fn authorize(state: &State, request: &Parts) -> Result<(), ServeError> {
    let expected = state.admin_token.as_ref().ok_or(ServeError::AdminOff)?;
    let expected = expected.current().map_err(|_| ServeError::AdminOff)?;
    let presented = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ServeError::AdminUnauthorized)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(
        presented.trim().as_bytes(),
        expected.expose().as_bytes(),
    )
    .map_err(|_| ServeError::AdminUnauthorized)
}

fn json(value: serde_json::Value) -> Response<ResponseBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("static headers are valid")
}
