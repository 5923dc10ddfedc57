//! Event topics: each published event is taken by exactly one waiter, oldest first.
//!
//! Every event has an id (`<publisher id>.<journal position>`): the store keeps an event
//! from its publish until it is taken, in the same transactions as the publisher's and the
//! taker's journal entries, so a restart puts back exactly the events nobody took.
//!
//! Besides its waiters, a topic has two kinds of observers, neither of which takes events:
//! *followers* (live streams: a bounded broadcast, lossy for a slow follower, never slowing
//! a publisher) and *event triggers* (a lossless channel to their dispatcher, backed by the
//! store's outbox, which [`Topics::writes_for`] adds to the publish's own batch).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::store::{StoredEvent, Write};

/// Events kept for a slow follower before it starts missing some.
const FOLLOW_CAPACITY: usize = 1024;

/// The node's event topics, created on first use.
#[derive(Debug)]
pub struct Topics {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    observers: Arc<Observers>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            topics: Mutex::default(),
            observers: Arc::new(Observers {
                follow: broadcast::channel(FOLLOW_CAPACITY).0,
                subscribed: RwLock::default(),
                dispatch: Mutex::default(),
            }),
        }
    }
}

/// One event on a topic: its id and payload.
pub type Event = (String, Vec<u8>);

/// An event as observers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id.
    pub id: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Who observes published events, besides the waiters of each topic.
#[derive(Debug)]
struct Observers {
    /// Live followers, of any topic.
    follow: broadcast::Sender<Published>,
    /// Topics with event triggers.
    subscribed: RwLock<HashSet<String>>,
    /// The event triggers' dispatcher.
    dispatch: Mutex<Option<mpsc::UnboundedSender<Published>>>,
}

impl Observers {
    fn subscribed(&self, topic: &str) -> bool {
        let subscribed = self.subscribed.read().unwrap_or_else(|p| p.into_inner());
        !subscribed.is_empty() && subscribed.contains(topic)
    }

    fn published(&self, topic: &str, id: &str, payload: &[u8]) {
        let followed = self.follow.receiver_count() > 0;
        let dispatched = self.subscribed(topic);
        if !followed && !dispatched {
            return;
        }
        let event = Published {
            id: id.to_string(),
            topic: topic.to_string(),
            payload: payload.to_vec(),
        };
        if dispatched {
            let dispatch = self.dispatch.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = dispatch.as_ref() {
                let _ = tx.send(event.clone());
            }
        }
        if followed {
            let _ = self.follow.send(event);
        }
    }
}

/// One topic's events not yet taken.
#[derive(Debug)]
pub struct Topic {
    name: String,
    events: Mutex<VecDeque<Event>>,
    published: Notify,
    observers: Arc<Observers>,
}

impl Topics {
    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_string(),
                    events: Mutex::default(),
                    published: Notify::new(),
                    observers: self.observers.clone(),
                })
            })
            .clone()
    }

    /// The topics used here so far (waited on or published to), by name.
    pub fn names(&self) -> Vec<String> {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.keys().cloned().collect()
    }

    /// Events waiting to be taken, over all topics.
    pub fn waiting(&self) -> usize {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.values().map(|t| t.lock().len()).sum()
    }

    /// What the store writes for publishing `event`, in one batch: the event for its
    /// waiters and, when its topic has event triggers, the outbox entry they are
    /// dispatched from.
    pub fn writes_for(&self, event: StoredEvent) -> Vec<Write> {
        if self.observers.subscribed(&event.topic) {
            vec![Write::Outbox(event.clone()), Write::Publish(event)]
        } else {
            vec![Write::Publish(event)]
        }
    }

    /// Send every event published from now on to `topics`' event triggers through `tx`
    /// (replacing any earlier dispatcher).
    pub fn dispatch_to(&self, topics: HashSet<String>, tx: mpsc::UnboundedSender<Published>) {
        *self
            .observers
            .subscribed
            .write()
            .unwrap_or_else(|p| p.into_inner()) = topics;
        *self
            .observers
            .dispatch
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Every event published from now on, on any topic; a follower that falls more than a
    /// bounded buffer behind misses events (and learns how many from the receiver).
    pub fn follow(&self) -> broadcast::Receiver<Published> {
        self.observers.follow.subscribe()
    }
}

impl Topic {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add event `id`, wake the waiters (the first to look takes it) and tell observers.
    pub fn publish(&self, id: String, payload: Vec<u8>) {
        self.observers.published(&self.name, &id, &payload);
        self.restore(id, payload);
    }

    /// Put back event `id`, published before a restart: for waiters only (its observers
    /// were told when it was published, or are told from the store's outbox).
    pub fn restore(&self, id: String, payload: Vec<u8>) {
        self.lock().push_back((id, payload));
        self.published.notify_waiters();
    }

    /// Offer event `id`, read from the store (in a cluster, another node may have published
    /// it): for waiters only, and only if it is not on offer here already.
    pub fn offer(&self, id: String, payload: Vec<u8>) {
        let mut events = self.lock();
        if events.iter().any(|(known, _)| *known == id) {
            return;
        }
        events.push_back((id, payload));
        drop(events);
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
