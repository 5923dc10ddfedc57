//! Live streams as Server-Sent Events: one instance's state changes, progress steps and
//! outcome, in order; a topic's events as they are published.
//!
//! A follower never slows the node: the node's instance events and published events go
//! out through bounded broadcasts that never wait for a receiver. A follower that falls
//! behind by more than such a buffer (plus its own small queue) misses events and is told
//! so with a `dropped` event saying how many.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::instances::{check_id, path_of, record_of};
use super::topics::topic_of;
use super::views::{OutcomeView, json_of};
use crate::model::Permission;
use crate::observe::EventKind;
use crate::replay::Kind;

/// One Server-Sent Event of a stream, as the OpenAPI document describes it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StreamEvent {
    /// Its name: `state`, `progress`, `dropped`, `outcome` (instances); `ready`, `event`,
    /// `dropped` (topics).
    pub event: String,
    /// Its data: one JSON object.
    pub data: String,
    /// The event's id (a topic's events).
    pub id: Option<String>,
}

/// Events queued for one follower's connection before it counts as slow.
const FOLLOWER_QUEUE: usize = 64;

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<axum::response::sse::KeepAliveStream<Events>>;

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// A stream of what `produce` sends; it ends when `produce` returns, and `produce` learns
/// the follower is gone when a send fails.
fn sse<F, Fut>(produce: F) -> EventStream
where
    F: FnOnce(mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(FOLLOWER_QUEUE);
    tokio::spawn(produce(tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok(event), rx))
    });
    Sse::new(Box::pin(stream) as Events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Follow one instance: `state` (its status now, then `started`, `resumed`, `held`),
/// `progress` (each step, with its journal position, earlier ones first), `dropped`
/// (events missed by a slow follower) and, last, `outcome`; then the stream ends.
#[utoipa::path(
    get, path = "/v1/instances/{id}/events", tag = "triggers",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Server-Sent Events: state, progress, dropped, outcome", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn instance_events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<EventStream, ApiError> {
    caller.require(Permission::Read)?;
    let id = path_of(id)?;
    check_id(&id)?;
    // Subscribed before the journal is read: a step is either in what is read or in what
    // arrives (or both, and then skipped by its position).
    let mut live = state.node.events().subscribe();
    state.node.journal().sync().await?;
    let record = record_of(&state, &id).await?;
    let journal = state.node.journal().store().journal(&id)?;
    let steps: Vec<(u64, String)> = journal
        .iter()
        .filter(|e| Kind::from_name(&e.call) == Some(Kind::Progress))
        .filter_map(|e| Some((e.position, e.args.get("step")?.as_str()?.to_string())))
        .collect();
    let ended = record.outcome();
    let outcome = state.node.services().outcome_of(&id);
    let status = super::views::InstanceView::of(&record, None).status;
    Ok(sse(move |tx| async move {
        let send = |e: Event| {
            let tx = tx.clone();
            async move { tx.send(e).await.is_ok() }
        };
        if !send(event("state", &json!({ "id": id, "status": status }))).await {
            return;
        }
        let mut seen = None;
        for (position, step) in steps {
            seen = Some(position);
            if !send(event(
                "progress",
                &json!({ "step": step, "position": position }),
            ))
            .await
            {
                return;
            }
        }
        if let Some(outcome) = ended {
            let _ = send(event("outcome", &json!(OutcomeView::ended(&id, &outcome)))).await;
            return;
        }
        tokio::pin!(outcome);
        loop {
            // Biased: every event already broadcast goes out before the outcome.
            let next = tokio::select! {
                biased;
                received = live.recv() => Some(received),
                _ = tx.closed() => return,
                outcome = &mut outcome => {
                    // Steps broadcast just before the end may still be queued.
                    while let Ok(e) = live.try_recv() {
                        if e.id == id && e.kind == EventKind::Progress
                            && let Some(step) = e.progress
                            && seen.is_none_or(|s| step.position > s)
                        {
                            seen = Some(step.position);
                            let data = json!({ "step": step.step, "position": step.position });
                            if !send(event("progress", &data)).await {
                                return;
                            }
                        }
                    }
                    let _ = send(event("outcome", &json!(OutcomeView::ended(&id, &outcome)))).await;
                    None
                }
            };
            let Some(received) = next else { return };
            let out = match received {
                Ok(e) if e.id != id => continue,
                Ok(e) => match (e.kind, e.progress) {
                    (EventKind::Progress, Some(step)) => {
                        if seen.is_some_and(|s| step.position <= s) {
                            continue;
                        }
                        seen = Some(step.position);
                        event(
                            "progress",
                            &json!({ "step": step.step, "position": step.position }),
                        )
                    }
                    (EventKind::Started, _) => {
                        event("state", &json!({ "id": id, "status": "started" }))
                    }
                    (EventKind::Resumed, _) => {
                        event("state", &json!({ "id": id, "status": "resumed" }))
                    }
                    (EventKind::Held, _) => event("state", &json!({ "id": id, "status": "held" })),
                    _ => continue,
                },
                Err(RecvError::Lagged(missed)) => event("dropped", &json!({ "missed": missed })),
                Err(RecvError::Closed) => return,
            };
            if !send(out).await {
                return;
            }
        }
    }))
}

/// Follow a topic: `ready` once subscribed, then an `event` (SSE id: the event's id) for
/// every event published on it from then on, and `dropped` when a slow follower missed
/// some. Following takes nothing: `wait-event` waiters and triggers see every event too.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/events", tag = "triggers",
    params(("topic" = String, Path, description = "Topic: 1 to 128 of A-Z a-z 0-9 . _ - :")),
    responses(
        (status = 200, description = "Server-Sent Events: ready, event, dropped", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "A malformed topic", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn topic_events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    topic: Result<Path<String>, PathRejection>,
) -> Result<EventStream, ApiError> {
    caller.require(Permission::Read)?;
    let topic = topic_of(topic)?;
    let mut live = state.node.messaging().topics.follow();
    Ok(sse(move |tx| async move {
        if tx
            .send(event("ready", &json!({ "topic": topic })))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                _ = tx.closed() => return,
            };
            let out = match received {
                Ok(e) if e.topic != topic => continue,
                Ok(e) => event(
                    "event",
                    &json!({ "id": e.id, "topic": e.topic, "payload": json_of(&e.payload) }),
                )
                .id(e.id),
                Err(RecvError::Lagged(missed)) => event("dropped", &json!({ "missed": missed })),
                Err(RecvError::Closed) => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    }))
}
