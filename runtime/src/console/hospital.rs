//! The hospital: instances held for an operator, with why (e.g. the two calls that
//! diverged on replay, or the last error once retries ran out), and the buttons to retry
//! one (on its build or another) or kill it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Html;
use maud::html;
use serde::Deserialize;

use super::Console;
use super::error::ConsoleError;
use super::page::{self, Nav};
use super::viewer::Viewer;
use crate::api::views::InstanceView;
use crate::model::Permission;

/// A notice after an action, by a fixed key.
#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// `GET /ui/hospital`: the held instances.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    notice: Result<Query<Notice>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let done = notice.ok().and_then(|Query(n)| n.done);
    let held: Vec<InstanceView> = console
        .node()
        .held()?
        .iter()
        .map(|r| InstanceView::of(r, None))
        .collect();
    let operate = viewer.may(&Permission::Operate);
    let body = html! {
        @if done.as_deref() == Some("killed") { p.notice role="status" { "Killed: it ended as failed." } }
        h1 { "Hospital" }
        p.intro { "Instances held for an operator: a replay that diverged from its journal, or retries exhausted. Retry runs one again from its journal (on another build if given); kill ends it as failed." }
        @if held.is_empty() {
            p.empty { "Nobody is held." }
        }
        ul.held {
            @for h in &held {
                li.patient {
                    div.head {
                        (page::instance_link(&h.id)) " "
                        span.flow { (h.flow) } " "
                        span.attempts { (h.attempts) " attempt(s)" } " "
                        (page::time(h.created.as_deref()))
                    }
                    pre.reason { (h.message.as_deref().unwrap_or("(no reason recorded)")) }
                    @if operate {
                        div.actions {
                            form.action method="post" action={ "/ui/hospital/" (page::encode_segment(&h.id)) "/retry" } {
                                (page::csrf(&viewer))
                                input type="text" name="component" placeholder="another build: /path/new.wasm (optional)"
                                    aria-label="another build (optional)";
                                button type="submit" { "Retry" }
                            }
                            (page::button(&viewer, &format!("/ui/hospital/{}/kill", page::encode_segment(&h.id)), "Kill", "danger"))
                        }
                    }
                }
            }
        }
    };
    Ok(console.render(&viewer, "Hospital", Nav::Hospital, None, body))
}
