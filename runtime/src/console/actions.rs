//! What an operator does from the console, each a POST from a console page (checked for
//! its origin and CSRF token) with the permission the API asks for the same thing: cancel
//! (`cancel`); retry, kill, pause and resume (`operate`). Each calls the same `Node` or
//! trigger operation as the API, then sends the browser back to a page that shows the result.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Redirect;
use serde::Deserialize;

use super::Console;
use super::error::ConsoleError;
use super::page;
use super::session::{CsrfForm, same_origin};
use super::viewer::Viewer;
use crate::api::ApiError;
use crate::model::Permission;

/// The checks every action makes before anything changes: origin, CSRF token, permission.
fn allowed<T: HasCsrf>(
    viewer: &Viewer,
    headers: &HeaderMap,
    form: Result<Form<T>, FormRejection>,
    needed: Permission,
) -> Result<T, ConsoleError> {
    same_origin(headers)?;
    viewer.require(needed)?;
    let Form(form) = form.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    viewer.check_csrf(form.csrf())?;
    Ok(form)
}

/// A form with a CSRF token.
trait HasCsrf {
    fn csrf(&self) -> &str;
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The retry form: the CSRF token and, optionally, another build.
#[derive(Debug, Deserialize)]
pub struct RetryForm {
    csrf: String,
    component: Option<String>,
}

impl HasCsrf for RetryForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /ui/instances/{id}/cancel`.
pub async fn cancel(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    allowed(&viewer, &headers, form, Permission::Cancel)?;
    crate::api::check_id(&id)?;
    let cancelled = console.node().cancel(&id).await.map_err(ApiError::from)?;
    tracing::info!(caller = %viewer.caller.name, "console: cancelled {id}: {cancelled} instance(s)");
    Ok(Redirect::to(&format!(
        "{}?done=cancelled",
        page::instance_href(&id)
    )))
}

/// `POST /ui/hospital/{id}/retry`.
pub async fn retry(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RetryForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = allowed(&viewer, &headers, form, Permission::Operate)?;
    crate::api::check_id(&id)?;
    let component = form
        .component
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(PathBuf::from);
    console
        .node()
        .retry(&id, component.as_deref())
        .await
        .map_err(ApiError::from)?;
    tracing::info!(caller = %viewer.caller.name, "console: retried {id} from the hospital");
    Ok(Redirect::to(&format!(
        "{}?done=retried",
        page::instance_href(&id)
    )))
}

/// `POST /ui/hospital/{id}/kill`.
pub async fn kill(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    allowed(&viewer, &headers, form, Permission::Operate)?;
    crate::api::check_id(&id)?;
    console.node().kill(&id).await.map_err(ApiError::from)?;
    tracing::info!(caller = %viewer.caller.name, "console: killed {id} in the hospital");
    Ok(Redirect::to("/ui/hospital?done=killed"))
}

async fn set_paused(
    console: &Console,
    viewer: &Viewer,
    name: &str,
    paused: bool,
) -> Result<Redirect, ConsoleError> {
    crate::api::set_paused(&console.api, name, paused).await?;
    let verb = if paused { "paused" } else { "resumed" };
    tracing::info!(caller = %viewer.caller.name, "console: trigger `{name}` {verb}");
    Ok(Redirect::to("/ui/flows#triggers"))
}

/// `POST /ui/triggers/{name}/pause`.
pub async fn pause(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    allowed(&viewer, &headers, form, Permission::Operate)?;
    set_paused(&console, &viewer, &name, true).await
}

/// `POST /ui/triggers/{name}/resume`.
pub async fn resume(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    allowed(&viewer, &headers, form, Permission::Operate)?;
    set_paused(&console, &viewer, &name, false).await
}
