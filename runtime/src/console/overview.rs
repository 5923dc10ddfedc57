//! The overview: every pool with its live figures and a chart of the last ten minutes, and
//! the node's identity, store, uptime and totals. The script keeps the figures and charts
//! live from `/ui/live/overview`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use maud::{Markup, html};
use serde::Serialize;

use super::error::ConsoleError;
use super::page::{self, Nav};
use super::viewer::Viewer;
use super::{Console, history};
use crate::api::views::{PoolView, rfc3339};

/// One pool as the overview shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolFigures {
    /// The API's view of the pool.
    #[serde(flatten)]
    pub pool: PoolView,
    /// Instances ended per second, lately.
    pub rate: f64,
}

/// Node-wide figures.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Instances with a run under way (parked and queued included).
    pub in_flight: usize,
    /// Started, completed, failed and rejected since the node started, all pools.
    pub started: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Rejected for a full queue.
    pub rejected: u64,
    /// Seconds since the console started serving.
    pub uptime_secs: u64,
}

/// The figures now, as the overview and its live stream show them.
pub fn figures(console: &Console) -> (Vec<PoolFigures>, Totals) {
    let node = console.node();
    let pools: Vec<PoolFigures> = node
        .pools()
        .iter()
        .map(|p| PoolFigures {
            pool: PoolView::of(p),
            rate: console.history.rate(p.name()),
        })
        .collect();
    let sum = |f: fn(&PoolView) -> u64| pools.iter().map(|p| f(&p.pool)).sum::<u64>();
    let totals = Totals {
        in_flight: node.running(),
        started: sum(|p| p.started),
        completed: sum(|p| p.completed),
        failed: sum(|p| p.failed),
        rejected: sum(|p| p.rejected),
        uptime_secs: console.started.elapsed().as_secs(),
    };
    (pools, totals)
}

/// Seconds as `3d 4h`, `2h 5m`, `4m 10s` or `12s`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn pool_row(p: &PoolFigures) -> Markup {
    let v = &p.pool;
    html! {
        tr data-pool=(v.name) {
            th scope="row" { (v.name) }
            td.num data-field="size" { (v.size) }
            td.num data-field="queue_capacity" { (v.queue_capacity) }
            td.num data-field="running" { (v.running) }
            td.num data-field="queued" { (v.queued) }
            td.num data-field="parked" { (v.parked) }
            td.num data-field="rejected" { (v.rejected) }
            td.num data-field="rate" { (format!("{:.1}", p.rate)) }
        }
    }
}

/// `GET /ui`: the overview.
pub async fn page(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let node = console.node();
    let (pools, totals) = figures(&console);
    let held = node.held()?.len();
    let store = node.journal().store();
    let started_ms = console
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let started = rfc3339(started_ms);
    let body = html! {
        h1 { "Overview" }
        section.cards {
            div.card { span.label { "Node" } span.value { (node.identity()) } }
            div.card { span.label { "Store" } span.value {
                (store.kind()) @if store.durable() { " (durable)" } @else { " (not durable)" }
            } }
            div.card { span.label { "Up" } span.value data-total="uptime" { (uptime(totals.uptime_secs)) }
                span.sub { "since " (page::time(Some(started.as_str()))) } }
            div.card { span.label { "In flight" } span.value data-total="in_flight" { (totals.in_flight) } }
            div.card { span.label { "Completed" } span.value data-total="completed" { (totals.completed) } }
            div.card { span.label { "Failed" } span.value data-total="failed" { (totals.failed) } }
            div.card { span.label { "Rejected" } span.value data-total="rejected" { (totals.rejected) } }
            div.card { span.label { "Held" } span.value { a href="/ui/hospital" { (held) } } }
        }
        h2 { "Pools" }
        (page::scroll(html! {
            table.pools {
                thead { tr {
                    th { "pool" } th.num { "size" } th.num { "queue" } th.num { "running" }
                    th.num { "queued" } th.num { "parked" } th.num { "rejected" } th.num { "ended/s" }
                } }
                tbody { @for p in &pools { (pool_row(p)) } }
            }
        }))
        p.live-note { span #live-state { "live" } " · figures refresh every second" }
        h2 { "Running, queued, parked" }
        div.charts {
            @for p in &pools {
                div.chart-box {
                    h3 { (p.pool.name) }
                    (history::chart(&p.pool.name, &console.history.series(&p.pool.name)))
                }
            }
        }
    };
    Ok(console.render(&viewer, "Overview", Nav::Overview, Some("overview"), body))
}

#[cfg(test)]
mod tests {
    use super::uptime;

    #[test]
    fn uptime_reads_like_a_person_would_say_it() {
        assert_eq!(uptime(12), "12s");
        assert_eq!(uptime(250), "4m 10s");
        assert_eq!(uptime(7500), "2h 5m");
        assert_eq!(uptime(3 * 86400 + 4 * 3600 + 5), "3d 4h");
    }
}
