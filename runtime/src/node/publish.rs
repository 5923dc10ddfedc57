//! Publishing an event from outside the node (the API): the same event a flow's
//! `publish` makes, kept durably before it is acknowledged.

use super::Node;
use crate::store::{Payload, StoreError, StoredEvent};

impl Node {
    /// Publish `payload` on `topic` (a checked topic name): it is durable once this
    /// returns, then offered to the topic's `wait-event` waiters, its event triggers and
    /// its followers, as an event a flow publishes. Returns the event's id (`api-<ulid>`).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<String, StoreError> {
        let id = format!("api-{}", ulid::Ulid::new());
        let topics = &self.messaging().topics;
        let writes = topics.writes_for(StoredEvent {
            id: id.clone(),
            topic: topic.to_string(),
            payload: Payload(payload.clone()),
        });
        self.journal().write(writes).await?;
        topics.topic(topic).publish(id.clone(), payload);
        Ok(id)
    }
}
