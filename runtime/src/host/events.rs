//! `publish` and `wait-event`: events between instances of this node, by topic.

use std::time::Duration;

use serde_json::Value;

use super::{HostState, unix_ms};
use crate::journal::{Payload, decode, encode};
use crate::journal_calls as calls;

impl HostState {
    /// Journal the event, then put it on its topic (a replayed publish was delivered in
    /// the life that journaled it).
    pub(super) fn publish_event(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        let args = calls::publish_args(&topic, &payload);
        if self.recorder.replay("publish", &args)?.is_some() {
            return Ok(());
        }
        self.recorder.record("publish", args, Value::Null)?;
        self.node.messaging().topics.topic(&topic).publish(payload);
        Ok(())
    }

    /// Take the next event on `topic`, parked until one comes or `timeout_ms` passes.
    pub(super) async fn take_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.meter.journaled(1)?;
        let args = calls::wait_event_args(&topic, timeout_ms);
        if let Some(answer) = self.recorder.replay("wait-event", &args)? {
            let taken: Option<Payload> = decode(&answer)?;
            return Ok(taken.map(|p| p.0));
        }
        let deadline = timeout_ms.map(|ms| unix_ms().saturating_add(ms));
        let events = self.node.messaging().topics.topic(&topic);
        let taken = loop {
            if let Some(event) = events.take() {
                break Some(event);
            }
            let left = deadline.map(|d| d.saturating_sub(unix_ms()));
            if left == Some(0) {
                break None;
            }
            let ready = events.clone();
            // Waiting takes nothing, so an instance evicted meanwhile leaves the event to
            // whoever looks first, its rebuilt self included.
            self.park(async move {
                match left {
                    Some(ms) => {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(ms), ready.ready()).await;
                    }
                    None => ready.ready().await,
                }
            })
            .await?;
        };
        let journaled = taken.clone().map(Payload);
        self.recorder
            .record("wait-event", args, encode(&journaled))?;
        Ok(taken)
    }
}
