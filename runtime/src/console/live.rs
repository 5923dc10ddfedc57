//! What keeps console pages live, as Server-Sent Events: the overview's figures once a
//! second, and a `changed` event when the instance a page shows has moved on (the page
//! then reloads itself).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::error::ConsoleError;
use super::viewer::Viewer;
use super::{Console, history, overview};
use crate::api::views::InstanceView;

/// How often an instance page's stream looks at the journal for entries no event announces.
const LOOK_EVERY: Duration = Duration::from_secs(1);

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<KeepAliveStream<Events>>;

/// `GET /ui/live/overview`: a `figures` event every second (pools and totals), until the
/// node drains.
pub async fn overview(State(console): State<Arc<Console>>, _viewer: Viewer) -> EventStream {
    let stream = futures::stream::unfold(
        (console, tokio::time::interval(history::EVERY)),
        |(console, mut tick)| async move {
            tick.tick().await;
            // A draining node ends its streams, so the drain does not wait for viewers.
            if console.api.draining() {
                return None;
            }
            let (pools, totals) = overview::figures(&console);
            let data = json!({ "pools": pools, "totals": totals,
                "uptime": overview::uptime(totals.uptime_secs) });
            let event = Event::default().event("figures").data(data.to_string());
            Some((Ok(event), (console, tick)))
        },
    );
    Sse::new(Box::pin(stream) as Events).keep_alive(KeepAlive::default())
}

/// What the page showed: its status and journal length. When either differs now, the
/// page is told at once.
#[derive(Debug, Deserialize)]
pub struct Shown {
    status: String,
    journal: usize,
}

/// `GET /ui/instances/{id}/live?status=&journal=`: one `changed` event when the instance
/// has moved on from what the page shows (a new state, progress step or journal entry, its
/// end); the stream then stays open, quiet, until the page goes.
pub async fn instance(
    State(console): State<Arc<Console>>,
    _viewer: Viewer,
    Path(id): Path<String>,
    shown: Result<Query<Shown>, axum::extract::rejection::QueryRejection>,
) -> Result<EventStream, ConsoleError> {
    let Query(shown) = shown.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    let node = console.node().clone();
    // Subscribed before reading: a change is either in what is read or in what arrives.
    let mut events = node.events().subscribe();
    node.journal().sync().await?;
    let record = crate::api::record_of(&console.api, &id).await?;
    let journal = node.journal().store().journal(&id)?.len();
    let moved = InstanceView::of(&record, None).status != shown.status || journal != shown.journal;
    let ended = record.outcome().is_some();
    let outcome = node.services().outcome_of(&id);
    let (tx, rx) = mpsc::channel::<Event>(2);
    tokio::spawn(async move {
        let changed = Event::default().event("changed").data("{}");
        if !moved && !ended {
            tokio::pin!(outcome);
            // Journal entries without an event (a sleep, a start) are seen by a slow look.
            let mut look = tokio::time::interval(LOOK_EVERY);
            look.tick().await;
            loop {
                tokio::select! {
                    _ = &mut outcome => break,
                    _ = tx.closed() => return,
                    _ = look.tick() => {
                        // Committed entries only: no flush is forced on the node's writer.
                        let now = node.journal().store().journal(&id).map(|j| j.len());
                        if now.map_or(true, |n| n != shown.journal) {
                            break;
                        }
                    }
                    received = events.recv() => match received {
                        Ok(e) if e.id != id => continue,
                        Ok(_) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
            // Let the journal catch up with what the event announced before the reload.
            let _ = node.journal().sync().await;
        }
        if moved || !ended {
            let _ = tx.send(changed).await;
        }
        // Open until the page goes: a stream that ends makes the browser reconnect.
        let _ = tokio::time::timeout(Duration::from_secs(3600), tx.closed()).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok(event), rx))
    });
    Ok(Sse::new(Box::pin(stream) as Events).keep_alive(KeepAlive::default()))
}
