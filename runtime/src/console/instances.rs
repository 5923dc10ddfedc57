//! The instance list: filtered by flow, status, pool and how recently it was created, a
//! page at a time (oldest first, as the API lists them), and a search by id that opens the
//! instance.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::error::ConsoleError;
use super::page::{self, Nav};
use super::viewer::Viewer;
use crate::api::views::{InstanceView, ListParams, rfc3339};

/// Instances per page.
const PAGE: usize = 50;
/// The statuses the list filters by.
const STATUSES: [&str; 5] = ["running", "completed", "failed", "held", "cancelled"];
/// How recent the listed instances may be: the filter's value and how many seconds back.
const WITHIN: [(&str, u64); 4] = [("5m", 300), ("1h", 3600), ("24h", 86_400), ("7d", 604_800)];

/// The list's query: filters, the page, or an id to open.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    id: Option<String>,
    flow: Option<String>,
    status: Option<String>,
    pool: Option<String>,
    within: Option<String>,
    cursor: Option<u64>,
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Rows of instances, with a link to each.
pub fn table(instances: &[InstanceView]) -> Markup {
    page::scroll(html! {
        table.instances {
            thead { tr {
                th { "id" } th { "flow" } th { "status" } th { "pool" } th { "origin" }
                th { "created" } th { "ended" }
            } }
            tbody {
                @for i in instances {
                    tr {
                        td { (page::instance_link(&i.id)) }
                        td { (i.flow) }
                        td { (page::status(&i.status)) }
                        td { (i.pool) }
                        td { (i.origin) }
                        td { (page::time(i.created.as_deref())) }
                        td { (page::time(i.ended.as_deref())) }
                    }
                }
            }
        }
    })
}

fn select(name: &str, label: &str, options: &[String], chosen: Option<&str>) -> Markup {
    html! {
        label {
            span { (label) }
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[chosen == Some(o.as_str())] { (o) }
                }
            }
        }
    }
}

/// `GET /ui/instances`: the list, or the instance whose id was searched for.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(query) = query.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    if let Some(id) = given(&query.id) {
        crate::api::check_id(&id)?;
        if console.node().journal().store().record(&id)?.is_some() {
            return Ok(Redirect::to(&page::instance_href(&id)).into_response());
        }
        let body = html! {
            h1 { "Instances" }
            p.problem role="alert" { "No instance has the id " code { (id) } "." }
            p { a href="/ui/instances" { "All instances" } }
        };
        let page = console.render(&viewer, "Instances", Nav::Instances, None, body);
        return Ok((axum::http::StatusCode::NOT_FOUND, page).into_response());
    }
    let (flow, status, pool) = (given(&query.flow), given(&query.status), given(&query.pool));
    let within = given(&query.within);
    let since = match within.as_deref() {
        None => None,
        Some(w) => {
            let Some((_, secs)) = WITHIN.iter().find(|(name, _)| *name == w) else {
                return Err(ConsoleError::bad_request(format!(
                    "within = `{}`: use 5m, 1h, 24h or 7d",
                    w.chars().take(16).collect::<String>()
                )));
            };
            let now = crate::model::unix_ms();
            Some(rfc3339(now.saturating_sub(secs * 1000)))
        }
    };
    let params = ListParams {
        flow: flow.clone(),
        status: status.clone(),
        pool: pool.clone(),
        since,
        cursor: query.cursor,
        limit: Some(PAGE),
        ..ListParams::default()
    };
    let found = crate::api::list_page(&console.api, params)?;
    let flows: Vec<String> = crate::api::flow_views(&console.api)
        .into_iter()
        .map(|f| f.name)
        .collect();
    let pools: Vec<String> = console
        .node()
        .pools()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let statuses: Vec<String> = STATUSES.iter().map(|s| s.to_string()).collect();
    let recent: Vec<String> = WITHIN.iter().map(|(w, _)| w.to_string()).collect();
    let filters = |cursor: Option<u64>| {
        let mut q = Vec::new();
        for (k, v) in [
            ("flow", &flow),
            ("status", &status),
            ("pool", &pool),
            ("within", &within),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", page::encode_query(v)));
            }
        }
        if let Some(c) = cursor {
            q.push(format!("cursor={c}"));
        }
        if q.is_empty() {
            "/ui/instances".to_string()
        } else {
            format!("/ui/instances?{}", q.join("&"))
        }
    };
    let body = html! {
        h1 { "Instances" }
        form.search method="get" action="/ui/instances" {
            label { span { "Id" } input type="search" name="id" placeholder="open an instance by id"; }
            button type="submit" { "Open" }
        }
        form.filters method="get" action="/ui/instances" {
            (select("flow", "Flow", &flows, flow.as_deref()))
            (select("status", "Status", &statuses, status.as_deref()))
            (select("pool", "Pool", &pools, pool.as_deref()))
            (select("within", "Created in the last", &recent, within.as_deref()))
            button type="submit" { "Filter" }
        }
        @if found.instances.is_empty() {
            p.empty { "No instances match." }
        } @else {
            (table(&found.instances))
        }
        nav.pager {
            @if query.cursor.is_some() { a href=(filters(None)) { "First page" } }
            @if let Some(next) = found.next_cursor { a href=(filters(Some(next))) { "Next page" } }
        }
    };
    Ok(console
        .render(&viewer, "Instances", Nav::Instances, None, body)
        .into_response())
}
