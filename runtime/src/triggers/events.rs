//! Event triggers (Corda's `trackBy`, made safe): every event published on a topic —
//! by a flow's `publish` or through the API — starts one instance of each trigger's flow
//! with the event's payload as input, exactly once per event and trigger, also across a
//! crash:
//!
//! - the publish's own batch keeps the event in the store's outbox (atomic with the
//!   publisher's journal entry, see `Topics::writes_for`);
//! - the instance's id is derived from the trigger and the event
//!   (`t_<trigger>_<event id>`), so starting it again attaches to the first;
//! - only once every trigger of the topic has its instance, durably, is the event
//!   forgotten (`Write::Dispatched`). After a crash the dispatcher starts from the outbox.
//!
//! Dispatch is a tokio task: it never takes a pool slot and never waits on one. A pool
//! whose queue is full is retried with a backoff; the event stays in the outbox meanwhile.
//! Each event still goes to its topic's `wait-event` waiters as before (one of them takes
//! it): triggers observe a topic, waiters consume it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::state::{TriggerKind, TriggerState};
use crate::config::EventTriggerConfig;
use crate::error::StartError;
use crate::messaging::Published;
use crate::model::names::trigger_instance_id;
use crate::model::{Origin, Priority, StartRequest, unix_ms};
use crate::node::Node;
use crate::store::{StoreError, Write};

/// Events dispatched at once: their starts share the store's group commits.
const IN_FLIGHT: usize = 64;
/// Longest wait before retrying a start refused for a full queue or a failing store.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One event trigger.
struct EventTrigger {
    flow: String,
    priority: Priority,
    state: Arc<TriggerState>,
}

/// How often a node in a cluster looks for events kept by nodes that died.
const ADOPT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Start the dispatcher of `configs` on `node`: register it with the node's topics (from
/// now on every publish on their topics reaches it), then dispatch what the outbox kept.
pub(super) fn start(
    node: &Node,
    configs: &[EventTriggerConfig],
    paused: &HashSet<String>,
    stopping: &Arc<AtomicBool>,
) -> Result<Vec<Arc<TriggerState>>, StoreError> {
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_topic: HashMap<String, Vec<Arc<EventTrigger>>> = HashMap::new();
    let mut states = Vec::new();
    for config in configs {
        let state = TriggerState::new(
            TriggerKind::Event,
            config.name.get_ref().as_str(),
            config.flow.get_ref(),
            format!("topic {}", config.topic),
        );
        if paused.contains(&state.name) {
            state.pause();
        }
        states.push(state.clone());
        by_topic
            .entry(config.topic.as_str().to_string())
            .or_default()
            .push(Arc::new(EventTrigger {
                flow: config.flow.get_ref().clone(),
                priority: config.mode.into(),
                state,
            }));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let topics: HashSet<String> = by_topic.keys().cloned().collect();
    node.messaging().topics.dispatch_to(topics, tx.clone());
    // Registered first, read second: an event published in between is seen twice, and its
    // second dispatch attaches to the instances of the first.
    // In a cluster: the events this node kept, and those of nodes no longer live.
    let store = node.journal().store();
    let kept = match store.cluster() {
        Some(cluster) => cluster.claim_outbox()?,
        None => store.outbox()?,
    };
    if !kept.is_empty() {
        tracing::info!(
            "event triggers: {} event(s) kept from before the restart",
            kept.len()
        );
    }
    for event in kept {
        let _ = tx.send(Published {
            id: event.id,
            topic: event.topic,
            payload: event.payload.0,
        });
    }
    if store.cluster().is_some() {
        tokio::spawn(adopt_kept_events(node.clone(), tx.downgrade()));
    }
    let by_topic = Arc::new(by_topic);
    let (node, stopping) = (node.clone(), stopping.clone());
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(event) = rx.recv().await {
            let Some(triggers) = by_topic.get(&event.topic) else {
                continue;
            };
            for t in triggers {
                t.state.pending_add(1);
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (node, triggers, stopping) = (node.clone(), triggers.clone(), stopping.clone());
            tokio::spawn(async move {
                dispatch(&node, &triggers, event, &stopping).await;
                drop(permit);
            });
        }
    });
    Ok(states)
}

/// In a cluster: now and then, dispatch the events kept by nodes that died (and this
/// node's own kept ones again: a second dispatch attaches to the first's instances).
async fn adopt_kept_events(node: Node, tx: mpsc::WeakUnboundedSender<Published>) {
    loop {
        tokio::time::sleep(ADOPT_EVERY).await;
        let Some(tx) = tx.upgrade() else {
            return;
        };
        let store = node.journal().store().clone();
        let kept = tokio::task::spawn_blocking(move || match store.cluster() {
            Some(cluster) => cluster.claim_outbox(),
            None => Ok(Vec::new()),
        })
        .await;
        match kept {
            Ok(Ok(kept)) => {
                for event in kept {
                    let _ = tx.send(Published {
                        id: event.id,
                        topic: event.topic,
                        payload: event.payload.0,
                    });
                }
            }
            Ok(Err(StoreError::Fenced { .. })) => return,
            Ok(Err(e)) => tracing::warn!("event triggers: cannot read kept events: {e}"),
            Err(e) => tracing::warn!("event triggers: {e}"),
        }
    }
}

/// Start every trigger's instance for `event`, then forget the event.
async fn dispatch(
    node: &Node,
    triggers: &[Arc<EventTrigger>],
    event: Published,
    stopping: &AtomicBool,
) {
    for trigger in triggers {
        let state = &trigger.state;
        if stopping.load(Ordering::Acquire) {
            // Draining: the event stays in the outbox for the node's next start.
            return;
        }
        if state.paused() {
            state.skipped();
        } else if !start_once(node, trigger, &event).await {
            // The node is stopping: the event stays in the outbox for its next start.
            return;
        }
        state.pending_add(-1);
    }
    // Queued, not awaited: a crash before it commits only means a second dispatch, which
    // attaches to the instances already started.
    let forget = node
        .journal()
        .append(vec![Write::Dispatched { id: event.id }]);
    if let Err(e) = forget {
        tracing::warn!("event triggers: cannot mark an event dispatched: {e}");
    }
}

/// Start `trigger`'s instance for `event` (or find it started). Retries while the pool's
/// queue is full or the store fails; false when the node is shutting down.
async fn start_once(node: &Node, trigger: &EventTrigger, event: &Published) -> bool {
    let state = &trigger.state;
    let request = StartRequest {
        flow: trigger.flow.clone(),
        input: event.payload.clone(),
        origin: Origin::Trigger(state.name.clone()),
        priority: trigger.priority,
        fan_out: false,
        id: Some(trigger_instance_id(&state.name, &event.id)),
    };
    state.fired(unix_ms());
    let mut backoff = Duration::from_millis(10);
    loop {
        match node.submit(request.clone()).await {
            Ok(_) => {
                state.started();
                return true;
            }
            Err(StartError::ShuttingDown) => return false,
            Err(
                e @ (StartError::QueueFull { .. }
                | StartError::Store { .. }
                | StartError::StoreUnavailable { .. }),
            ) => {
                tracing::debug!(trigger = %state.name, "event trigger: {e}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::error!(
                    trigger = %state.name,
                    "event trigger `{}`: event {} starts nothing: {e}",
                    state.name,
                    event.id
                );
                state.refused();
                return true;
            }
        }
    }
}
