//! Event topics: each published event is taken by exactly one waiter, oldest first.
//!
//! Every event has an id (`<publisher id>.<journal position>`): the store keeps an event
//! from its publish until it is taken, in the same transactions as the publisher's and the
//! taker's journal entries, so a restart puts back exactly the events nobody took.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The node's event topics, created on first use.
#[derive(Debug, Default)]
pub struct Topics {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
}

/// One event on a topic: its id and payload.
pub type Event = (String, Vec<u8>);

/// One topic's events not yet taken.
#[derive(Debug, Default)]
pub struct Topic {
    events: Mutex<VecDeque<Event>>,
    published: Notify,
}

impl Topics {
    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.entry(name.to_string()).or_default().clone()
    }

    /// Events waiting to be taken, over all topics.
    pub fn waiting(&self) -> usize {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.values().map(|t| t.lock().len()).sum()
    }
}

impl Topic {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add event `id` and wake the waiters (the first to look takes it).
    pub fn publish(&self, id: String, payload: Vec<u8>) {
        self.lock().push_back((id, payload));
        self.published.notify_waiters();
    }

    /// The oldest event, if any.
    pub fn take(&self) -> Option<Event> {
        self.lock().pop_front()
    }

    /// Wait until the topic has an event. Takes nothing: another waiter may take it first.
    pub async fn ready(&self) {
        loop {
            let published = self.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            if !self.lock().is_empty() {
                return;
            }
            published.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_event_is_taken_once_in_order() {
        let topics = Topics::default();
        let t = topics.topic("prices");
        t.publish("a.0".into(), b"1".to_vec());
        t.publish("a.1".into(), b"2".to_vec());
        assert_eq!(topics.waiting(), 2);
        topics.topic("prices").ready().await;
        assert_eq!(t.take(), Some(("a.0".into(), b"1".to_vec())));
        assert_eq!(t.take(), Some(("a.1".into(), b"2".to_vec())));
        assert_eq!(t.take(), None);
        assert!(topics.topic("other").take().is_none());
    }
}
