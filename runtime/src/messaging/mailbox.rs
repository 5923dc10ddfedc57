//! One direction of a session: messages by sequence number, taken strictly in order.
//!
//! Keyed by sequence number rather than queued, so a message delivered twice (once live and
//! once rebuilt from the sender's journal after a restart) is kept once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Messages from one party of a session to the other.
#[derive(Debug, Default)]
pub struct Mailbox {
    state: Mutex<BoxState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct BoxState {
    messages: BTreeMap<u64, Vec<u8>>,
    /// Why no more messages will come: the sender's flow ended.
    closed: Option<String>,
}

/// What the receiver finds at its next sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The message.
    Message(Vec<u8>),
    /// Nothing yet; the sender may still send.
    Empty,
    /// Nothing, and nothing will come: why.
    Closed(String),
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliver message `seq` (a repeat of a kept one is ignored).
    pub fn deliver(&self, seq: u64, payload: Vec<u8>) {
        self.lock().messages.entry(seq).or_insert(payload);
        self.changed.notify_waiters();
    }

    /// The sender ended: once drained, receivers learn `why`.
    pub fn close(&self, why: String) {
        self.lock().closed.get_or_insert(why);
        self.changed.notify_waiters();
    }

    /// Take message `seq`, dropping any older ones the receiver already had.
    pub fn take(&self, seq: u64) -> Next {
        let mut state = self.lock();
        let newer = state.messages.split_off(&seq);
        state.messages = newer;
        match state.messages.remove(&seq) {
            Some(m) => Next::Message(m),
            None => match &state.closed {
                // A closed box keeps what was sent before the close: a gap is still to come
                // only if a later message exists, which cannot happen after a close.
                Some(why) => Next::Closed(why.clone()),
                None => Next::Empty,
            },
        }
    }

    /// Wait until message `seq` is there or the box is closed. Takes nothing, so an
    /// instance evicted while waiting leaves the message for its rebuilt self.
    pub async fn ready(&self, seq: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.lock();
                if state.messages.contains_key(&seq) || state.closed.is_some() {
                    return;
                }
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn messages_come_in_sequence_once_each() {
        let b = Mailbox::default();
        b.deliver(1, b"b".to_vec());
        assert_eq!(b.take(0), Next::Empty);
        b.deliver(0, b"a".to_vec());
        b.deliver(0, b"again".to_vec());
        assert_eq!(b.take(0), Next::Message(b"a".to_vec()));
        assert_eq!(b.take(1), Next::Message(b"b".to_vec()));
        b.close("ended".into());
        assert_eq!(b.take(2), Next::Closed("ended".into()));
    }

    /// Fail with `what` unless `future` ends within a generous deadline.
    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_delivery_and_on_close() {
        let b = Mailbox::default();
        let ready = b.ready(0);
        tokio::pin!(ready);
        assert!(
            futures::poll!(&mut ready).is_pending(),
            "ready before a delivery"
        );
        b.deliver(1, vec![2]);
        assert!(
            futures::poll!(&mut ready).is_pending(),
            "ready on a later message"
        );
        b.deliver(0, vec![1]);
        within("the delivery to wake the waiter", ready).await;
        assert_eq!(b.take(0), Next::Message(vec![1]));
        assert_eq!(b.take(1), Next::Message(vec![2]));

        let ready = b.ready(2);
        tokio::pin!(ready);
        assert!(
            futures::poll!(&mut ready).is_pending(),
            "ready before the close"
        );
        b.close("gone".into());
        within("the close to wake the waiter", ready).await;
        assert_eq!(b.take(2), Next::Closed("gone".into()));
    }
}
