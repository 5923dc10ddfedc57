//! One instance: its status, origin, pool, parent and children (as a tree), its progress
//! steps, its journal as a timeline (each host call with its arguments, answer and time), its
//! output or error, and the buttons its viewer may use: cancel; retry or kill when held.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::error::ConsoleError;
use super::page::{self, Nav};
use super::viewer::Viewer;
use crate::api::views::{EntryView, InstanceView, latest_progress};
use crate::model::Permission;
use crate::replay::Kind;
use crate::store::{InstanceRecord, ListQuery};

/// Most descendants drawn in the tree.
const TREE_MOST: usize = 500;
/// Deepest level drawn; deeper descendants are reached from their ancestors' pages.
const TREE_DEPTH: usize = 12;
/// Most journal entries drawn (the API's journal has them all).
const TIMELINE_MOST: usize = 1000;

/// A notice after an action, by a fixed key (never text from the request).
#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "started" => "Started.",
        "cancelled" => "Cancelled, with its unfinished descendants.",
        "retried" => "Retried: it runs again from its journal.",
        _ => return None,
    })
}

/// The instances below `id`, by parent.
struct Tree {
    children: HashMap<String, Vec<InstanceView>>,
    shown: usize,
    more: bool,
}

fn tree_of(console: &Console, id: &str) -> Result<Tree, ConsoleError> {
    let query = ListQuery {
        root: Some(id.to_string()),
        limit: TREE_MOST + 2,
        ..ListQuery::default()
    };
    let found = console.node().journal().store().list(&query)?;
    let mut children: HashMap<String, Vec<InstanceView>> = HashMap::new();
    let mut shown = 0;
    for (_, record) in found.iter().filter(|(_, r)| r.id != id).take(TREE_MOST) {
        let view = InstanceView::of(record, None);
        if let Some(parent) = &view.parent {
            children.entry(parent.clone()).or_default().push(view);
            shown += 1;
        }
    }
    Ok(Tree {
        children,
        shown,
        more: found.len() > TREE_MOST + 1,
    })
}

fn branch(tree: &Tree, id: &str, depth: usize) -> Markup {
    let Some(children) = tree.children.get(id) else {
        return html! {};
    };
    html! {
        ul {
            @for child in children {
                li {
                    (page::instance_link(&child.id)) " "
                    span.flow { (child.flow) } " "
                    (page::status(&child.status))
                    @if depth < TREE_DEPTH {
                        (branch(tree, &child.id, depth + 1))
                    } @else if tree.children.contains_key(&child.id) {
                        " " a href=(page::instance_href(&child.id)) { "deeper…" }
                    }
                }
            }
        }
    }
}

fn timeline(journal: &[EntryView]) -> Markup {
    html! {
        ol.timeline {
            @for e in journal {
                li class={ "entry c-" (e.call) } {
                    div.head {
                        span.pos title="journal position" { "#" (e.position) }
                        " " span.call { (e.call) }
                        " " span.at { (page::time(e.at.as_deref())) }
                    }
                    div.args { span.label { "arguments" } (page::json_line(&e.args)) }
                    div.answer { span.label { "answer" } (page::json_line(&e.result)) }
                }
            }
        }
    }
}

fn actions(viewer: &Viewer, view: &InstanceView) -> Markup {
    let href = page::instance_href(&view.id);
    let open = matches!(view.status.as_str(), "running" | "held");
    let held = view.status == "held";
    let segment = page::encode_segment(&view.id);
    html! {
        @if open && viewer.may(&Permission::Cancel) {
            (page::button(viewer, &format!("{href}/cancel"), "Cancel", "danger"))
        }
        @if held && viewer.may(&Permission::Operate) {
            form.action method="post" action={ "/ui/hospital/" (segment) "/retry" } {
                (page::csrf(viewer))
                input type="text" name="component" placeholder="another build: /path/new.wasm (optional)"
                    aria-label="another build (optional)";
                button type="submit" { "Retry" }
            }
            (page::button(viewer, &format!("/ui/hospital/{segment}/kill"), "Kill", "danger"))
        }
    }
}

fn facts(view: &InstanceView, record: &InstanceRecord) -> Markup {
    html! {
        dl.facts {
            dt { "status" } dd #status { (page::status(&view.status)) }
            dt { "flow" } dd { a href={ "/ui/instances?flow=" (page::encode_query(&view.flow)) } { (view.flow) } }
            dt { "pool" } dd { (view.pool) }
            dt { "origin" } dd { (view.origin) " · " (view.by) }
            dt { "parent" } dd {
                @if let Some(parent) = &view.parent { (page::instance_link(parent)) } @else { span.none { "—" } }
            }
            dt { "attempts" } dd { (view.attempts) }
            dt { "build" } dd { code title=(record.component) { (record.component.get(..12).unwrap_or(record.component.as_str())) } }
            dt { "created" } dd { (page::time(view.created.as_deref())) }
            dt { "ended" } dd { (page::time(view.ended.as_deref())) }
        }
    }
}

/// `GET /ui/instances/{id}`: one instance.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    notice_query: Result<Query<Notice>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let done = notice_query.ok().and_then(|Query(n)| n.done);
    let record = crate::api::record_of(&console.api, &id).await?;
    let entries = console.node().journal().store().journal(&id)?;
    let view = InstanceView::of(&record, latest_progress(&entries));
    let steps: Vec<(u64, String)> = entries
        .iter()
        .filter(|e| Kind::from_name(&e.call) == Some(Kind::Progress))
        .filter_map(|e| Some((e.position, e.args.get("step")?.as_str()?.to_string())))
        .collect();
    let journal: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
    let tree = tree_of(&console, &id)?;
    let ended = record.outcome().is_some();
    let live_url = format!(
        "{}/live?status={}&journal={}",
        page::instance_href(&id),
        page::encode_query(&view.status),
        journal.len()
    );
    let body = html! {
        @if let Some(text) = notice(done.as_deref()) { p.notice role="status" { (text) } }
        h1.instance { span.label { "Instance" } " " span #instance-id { (view.id) } }
        @if !ended { div #live data-url=(live_url) hidden {} }
        div.actions { (actions(&viewer, &view)) }
        (facts(&view, &record))
        @if let Some(output) = &view.output {
            h2 { "Output" }
            div #output { (page::json(output)) }
        }
        @if let Some(message) = &view.message {
            h2 { @if view.status == "held" { "Why it is held" } @else { "Error" } }
            pre #error.error { (message) }
        }
        h2 { "Progress" }
        @if steps.is_empty() { p.empty { "No progress steps." } } @else {
            ol #progress.steps { @for (position, step) in &steps {
                li { span.pos { "#" (position) } " " span.step { (step) } }
            } }
        }
        h2 { "Children" }
        @if tree.shown == 0 { p.empty { "It started no instances." } } @else {
            div #tree.tree { (branch(&tree, &id, 1)) }
            @if tree.more { p.more { "Only the first " (TREE_MOST) " descendants are shown; open a child for its own." } }
        }
        h2 { "Journal" }
        @if journal.is_empty() { p.empty { "No host calls journaled yet." } } @else {
            (timeline(&journal[..journal.len().min(TIMELINE_MOST)]))
            @if journal.len() > TIMELINE_MOST {
                p.more { "The first " (TIMELINE_MOST) " of " (journal.len()) " calls are shown; "
                    code { "GET /v1/instances/" (id) "/journal" } " has them all." }
            }
        }
    };
    let title = format!("Instance {id}");
    Ok(console.render(
        &viewer,
        &title,
        Nav::Instances,
        (!ended).then_some("instance"),
        body,
    ))
}
