//! Flows and triggers: every registered flow with its build, pool and instances in flight,
//! the older builds some instances still run on, and every trigger with its last and next
//! fire and the buttons to pause or resume it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::Html;
use maud::{Markup, html};

use super::Console;
use super::error::ConsoleError;
use super::page::{self, Nav};
use super::viewer::Viewer;
use crate::api::TriggerView;
use crate::model::Permission;

fn hash(h: &str) -> Markup {
    html! { code title=(h) { (h.get(..12).unwrap_or(h)) } }
}

fn trigger_row(viewer: &Viewer, t: &TriggerView) -> Markup {
    let name = page::encode_segment(&t.name);
    html! {
        tr data-trigger=(t.name) {
            th scope="row" { (t.name) }
            td { (t.kind) }
            td { (t.flow) }
            td { code { (t.source) } }
            td { span class={ "state t-" (t.state) } { (t.state) } }
            td.num { (t.fired) } td.num { (t.started) } td.num { (t.refused) } td.num { (t.skipped) }
            td { (page::time(t.last_fire.as_deref())) }
            td { (page::time(t.next_fire.as_deref())) }
            @if viewer.may(&Permission::Operate) {
                td {
                    @if t.state == "paused" {
                        (page::button(viewer, &format!("/ui/triggers/{name}/resume"), "Resume", ""))
                    } @else {
                        (page::button(viewer, &format!("/ui/triggers/{name}/pause"), "Pause", ""))
                    }
                }
            }
        }
    }
}

/// `GET /ui/flows`: flows, pinned builds and triggers.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let flows = crate::api::flow_views(&console.api);
    let pinned = console.node().pinned_builds();
    let triggers: Vec<TriggerView> = console
        .api
        .triggers()
        .all()
        .iter()
        .map(|t| TriggerView::of(t))
        .collect();
    let operate = viewer.may(&Permission::Operate);
    let body = html! {
        h1 { "Flows" }
        @if flows.is_empty() { p.empty { "No flows are registered (flows found by name in a search directory show once started)." } } @else {
            (page::scroll(html! {
                table.flows {
                    thead { tr { th { "flow" } th { "build (SHA-256)" } th { "pool" } th.num { "in flight" } th { "instances" } } }
                    tbody { @for f in &flows {
                        tr data-flow=(f.name) {
                            th scope="row" { (f.name) }
                            td { @if let Some(h) = &f.component { (hash(h)) } @else { span.none { "not loaded" } } }
                            td { (f.pool.as_deref().unwrap_or("default rules")) }
                            td.num { (f.in_flight) }
                            td { a href={ "/ui/instances?flow=" (page::encode_query(&f.name)) } { "list" } }
                        }
                    } }
                }
            }))
        }
        h2 { "Older builds still running" }
        @if pinned.is_empty() { p.empty { "None: every instance runs on its flow's registered build." } } @else {
            (page::scroll(html! {
                table.pinned {
                    thead { tr { th { "flow" } th { "build (SHA-256)" } th.num { "in flight" } } }
                    tbody { @for b in &pinned {
                        tr { th scope="row" { (b.name) } td { (hash(&b.component.hash)) } td.num { (b.in_flight.load(Ordering::Relaxed)) } }
                    } }
                }
            }))
        }
        h2 #triggers { "Triggers" }
        @if triggers.is_empty() { p.empty { "No triggers are configured." } } @else {
            (page::scroll(html! {
                table.triggers {
                    thead { tr {
                        th { "trigger" } th { "kind" } th { "flow" } th { "source" } th { "state" }
                        th.num { "fired" } th.num { "started" } th.num { "refused" } th.num { "skipped" }
                        th { "last fire" } th { "next fire" }
                        @if operate { th { "" } }
                    } }
                    tbody { @for t in &triggers { (trigger_row(&viewer, t)) } }
                }
            }))
        }
    };
    Ok(console.render(&viewer, "Flows", Nav::Flows, None, body))
}
