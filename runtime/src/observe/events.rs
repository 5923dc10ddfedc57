//! What happens to instances, as a stream anyone may subscribe to (tests, a future API).

use tokio::sync::broadcast;

/// Events kept for slow subscribers before they start missing some.
const CAPACITY: usize = 4096;

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// It got its first slot.
    Started,
    /// It got a slot again after a suspension point.
    Resumed,
    /// It ended (with output or not).
    Finished,
    /// It stopped without an end and is held in the flow hospital for an operator.
    Held,
    /// It reported a progress step ([`InstanceEvent::progress`]).
    Progress,
}

/// A progress step and the journal position that recorded it (a follower that read the
/// journal first skips what it has seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Journal position of the `progress` call.
    pub position: u64,
    /// The step, as the flow wrote it.
    pub step: String,
}

/// One event of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    /// Instance id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Pool name.
    pub pool: String,
    /// What happened.
    pub kind: EventKind,
    /// The step, for [`EventKind::Progress`].
    pub progress: Option<Step>,
}

/// The node's event stream. Sending costs almost nothing when nobody listens.
#[derive(Debug, Clone)]
pub struct Events(broadcast::Sender<InstanceEvent>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::channel(CAPACITY).0)
    }
}

impl Events {
    /// Publish an event.
    pub fn send(&self, id: &str, flow: &str, pool: &str, kind: EventKind) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(InstanceEvent {
                id: id.into(),
                flow: flow.into(),
                pool: pool.into(),
                kind,
                progress: None,
            });
        }
    }

    /// Publish a progress step of instance `id`, recorded at journal `position`.
    pub fn progress(&self, id: &str, flow: &str, pool: &str, position: u64, step: &str) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(InstanceEvent {
                id: id.into(),
                flow: flow.into(),
                pool: pool.into(),
                kind: EventKind::Progress,
                progress: Some(Step {
                    position,
                    step: step.into(),
                }),
            });
        }
    }

    /// Receive every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<InstanceEvent> {
        self.0.subscribe()
    }
}
