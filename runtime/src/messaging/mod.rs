//! Messaging between flow instances: sessions with counterparties, and event topics.

pub mod mailbox;
pub mod sessions;
pub mod topics;

pub use mailbox::{Mailbox, Next};
pub use sessions::{Boxes, Sessions};
pub use topics::{Published, Topic, Topics};

/// The node's sessions and topics.
#[derive(Debug, Default)]
pub struct Messaging {
    /// Live sessions and their mailboxes.
    pub sessions: Sessions,
    /// Event topics.
    pub topics: Topics,
}
