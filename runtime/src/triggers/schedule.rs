//! Schedule triggers: not wired yet.

use std::sync::Arc;

use super::state::TriggerState;
use crate::config::ScheduleTriggerConfig;
use crate::host::BoxFuture;
use crate::node::Node;
use crate::store::StoreError;

/// The time schedules run on.
pub trait Clock: Send + Sync + 'static {
    /// Now, unix ms.
    fn now_ms(&self) -> u64;
    /// Resolves once [`Clock::now_ms`] has reached `at_ms`.
    fn sleep_until(&self, at_ms: u64) -> BoxFuture<()>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::model::unix_ms()
    }

    fn sleep_until(&self, at_ms: u64) -> BoxFuture<()> {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

pub(super) fn start(
    _node: &Node,
    configs: &[ScheduleTriggerConfig],
    _clock: Arc<dyn Clock>,
) -> Result<Vec<Arc<TriggerState>>, StoreError> {
    if !configs.is_empty() {
        tracing::warn!("schedule triggers are not implemented yet; they never fire");
    }
    Ok(Vec::new())
}
