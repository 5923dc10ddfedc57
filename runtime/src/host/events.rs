//! `publish` and `wait-event`: events between instances of this node, by topic.

use std::time::Duration;

use tokio::time::Instant;

use super::{HostState, Services};
use crate::model::ids;
use crate::replay::Call;
use crate::store::{Payload, StoredEvent, Write};

impl HostState {
    /// Journal the event (the store keeps it until it is taken), then put it on its topic.
    /// A replayed publish was delivered in the life that journaled it.
    pub(super) fn publish_event(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        let call = Call::Publish {
            topic: &topic,
            payload: &payload,
        };
        if self.recorder.replay(&call)?.is_some() {
            return Ok(());
        }
        let id = ids::event_id(&self.owner.id, self.recorder.position());
        let stored = StoredEvent {
            id: id.clone(),
            topic: topic.clone(),
            payload: Payload(payload.clone()),
        };
        let writes = self.services.messaging.topics.writes_for(stored);
        self.recorder.record_with(&call, &(), writes)?;
        self.services
            .messaging
            .topics
            .topic(&topic)
            .publish(id, payload);
        Ok(())
    }

    /// Take the next event on `topic`, parked until one comes or `timeout_ms` passes.
    pub(super) async fn take_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.meter.journaled(2)?;
        let call = Call::WaitEvent {
            topic: &topic,
            timeout_ms,
        };
        // Two entries: the deadline, journaled before the wait (so it survives restarts
        // unchanged, as a sleep's does), then what the wait took.
        let (deadline, fresh): (Option<u64>, bool) = match self.recorder.replay_as(&call)? {
            Some(deadline) => (deadline, false),
            None => {
                let now = self.services.clock.now_ms();
                let deadline = timeout_ms.map(|ms| now.saturating_add(ms));
                self.recorder.record(&call, &deadline)?;
                (deadline, true)
            }
        };
        let call = Call::TakeEvent { topic: &topic };
        if let Some(taken) = self.recorder.replay_as::<Option<Payload>>(&call)? {
            return Ok(taken.map(|p| p.0));
        }
        // When the wait times out, on the monotonic clock, decided once: a jump of the wall
        // clock while it waits changes nothing (see `model::clock`).
        let until = match (timeout_ms, deadline) {
            (Some(ms), _) if fresh => Some(Instant::now() + Duration::from_millis(ms)),
            // (Later entries would mean the take was replayed above: ended at once.)
            (Some(ms), Some(deadline)) => {
                Some(Instant::now() + self.replayed_wait(ms, deadline).unwrap_or_default())
            }
            _ => None,
        };
        self.wait_end = until;
        let events = self.services.messaging.topics.topic(&topic);
        // In a cluster the event may be another node's, and another node may offer the same
        // one: what the store holds is offered here too, and the store decides who takes it.
        let shared = self.services.journal.store().cluster().is_some();
        if shared {
            // Committed first: an event this instance claimed and whose taking is still
            // queued must not be offered to it again. What it claimed and never journaled
            // (it crashed between) is offered to it alone.
            self.services.journal.sync().await?;
            self.services.offer_stored_events(&topic, &self.owner.id);
        }
        let taken = loop {
            if let Some(event) = events.take() {
                if shared
                    && !self
                        .services
                        .journal
                        .store()
                        .claim_event(&event.0, &self.owner.id)?
                {
                    continue; // another instance, here or on another node, has it
                }
                break Some(event);
            }
            if until.is_some_and(|until| Instant::now() >= until) {
                break None;
            }
            let ready = events.clone();
            // Waiting takes nothing, so an instance evicted meanwhile leaves the event to
            // whoever looks first, its rebuilt self included.
            self.park(async move {
                match until {
                    Some(until) => {
                        let _ = tokio::time::timeout_at(until, ready.ready()).await;
                    }
                    None => ready.ready().await,
                }
            })
            .await?;
        };
        let (journaled, effects) = match taken {
            // Taken in the same transaction as the entry: after a crash, either the journal
            // has it or the store still offers it.
            Some((id, payload)) => (Some(Payload(payload)), vec![Write::Take { id }]),
            None => (None, Vec::new()),
        };
        let call = Call::TakeEvent { topic: &topic };
        self.recorder.record_with(&call, &journaled, effects)?;
        Ok(journaled.map(|p| p.0))
    }
}

impl Services {
    /// Offer on `topic` the events the store holds for it that nobody (but `taker`, when
    /// given) claimed: in a cluster, events published on other nodes.
    pub fn offer_stored_events(&self, topic: &str, taker: &str) {
        match self.journal.store().events_on(topic, taker) {
            Ok(stored) => {
                let events = self.messaging.topics.topic(topic);
                for e in stored {
                    events.offer(e.id, e.payload.0);
                }
            }
            Err(e) => tracing::warn!("cannot read the events of topic {topic}: {e}"),
        }
    }
}
