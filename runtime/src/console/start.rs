//! Starting a flow from a form: the flow (those the viewer may start), its input as JSON
//! (checked in the browser before sending, and again here), a priority and an optional id.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::Console;
use super::error::ConsoleError;
use super::page::{self, Nav};
use super::session::same_origin;
use super::viewer::Viewer;
use crate::model::{Permission, StartRequest};

/// `GET /ui/start`: the form.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let flows: Vec<String> = crate::api::flow_views(&console.api)
        .into_iter()
        .map(|f| f.name)
        .filter(|f| viewer.may(&Permission::Start(Some(f.clone()))))
        .collect();
    if flows.is_empty() {
        return Err(ConsoleError::forbidden(format!(
            "token `{}` may start none of this node's flows",
            viewer.caller.name
        )));
    }
    let body = html! {
        h1 { "Start a flow" }
        form #start-form.start method="post" action="/ui/start" {
            (page::csrf(&viewer))
            label { span { "Flow" }
                select #flow name="flow" required {
                    @for f in &flows { option value=(f) { (f) } }
                }
            }
            label { span { "Input (JSON)" }
                textarea #input name="input" rows="8" spellcheck="false" { "{}" }
            }
            p #input-error.problem role="alert" hidden {}
            label { span { "Priority" }
                select #priority name="priority" {
                    option value="normal" selected { "normal" }
                    option value="high" { "high" }
                }
            }
            label { span { "Id (optional: a second start with the same id attaches to the first)" }
                input #id type="text" name="id" pattern="[A-Za-z0-9._\\-]{1,256}";
            }
            button #start type="submit" { "Start" }
        }
    };
    Ok(console.render(&viewer, "Start a flow", Nav::Start, None, body))
}

/// The start form.
#[derive(Debug, Deserialize)]
pub struct StartForm {
    csrf: String,
    flow: String,
    input: String,
    priority: Option<String>,
    id: Option<String>,
}

/// `POST /ui/start`: start it, then show the new instance.
pub async fn submit(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Result<Form<StartForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    let Form(form) = form.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Permission::Start(Some(form.flow.clone())))?;
    if console.api.draining() {
        return Err(crate::api::ApiError::draining().into());
    }
    let priority = crate::api::priority_of(form.priority.as_deref())?;
    let input = if form.input.trim().is_empty() {
        "null"
    } else {
        form.input.as_str()
    };
    serde_json::from_str::<serde_json::Value>(input)
        .map_err(|e| ConsoleError::bad_request(format!("the input is not JSON: {e}")))?;
    let mut request = StartRequest::rpc(
        form.flow.clone(),
        input.as_bytes().to_vec(),
        viewer.caller.name.clone(),
    )
    .with_priority(priority);
    if let Some(id) = form.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        crate::api::check_new_id(id)?;
        request = request.with_id(id);
    }
    let handle = console
        .node()
        .start(request)
        .await
        .map_err(crate::api::ApiError::from)?;
    let id = handle.id().to_string();
    tracing::info!(caller = %viewer.caller.name, flow = %form.flow, "console: started {id}");
    Ok(Redirect::to(&format!("{}?done=started", page::instance_href(&id))).into_response())
}
