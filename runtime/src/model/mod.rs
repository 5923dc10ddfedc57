//! Plain data and its serde forms: what the layers above pass each other. Imports nothing
//! from the crate.

pub mod clock;
pub mod ids;
pub mod invocation;
pub mod limits;
pub mod names;
pub mod outcome;
pub mod peer;
pub mod permission;
pub mod session;
pub mod settings;
pub mod start;
pub mod units;
pub mod urls;

pub use clock::{WallClock, wait_left};
pub use ids::IdScheme;
pub use invocation::{Invocation, Origin, Priority};
pub use limits::{LimitExceeded, Limits, LimitsConfig};
pub use names::{TopicName, TriggerName};
pub use outcome::{FlowError, Outcome, json_of, printed_output};
pub use peer::{
    Delivery, END_SEQ, OpenSession, Opened, PeerBody, PeerMessage, Receipt, RefusedMessage,
};
pub use permission::Permission;
pub use session::{SessionRef, Side, end_reason};
pub use settings::{DirGrant, FlowSettings, RetryPolicy};
pub use start::{FlowHandle, StartMeta, StartRequest};
pub use units::{EPOCH_TICK, HumanDuration, unix_ms};
