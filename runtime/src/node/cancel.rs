//! Cancelling an instance from outside it (an operator, the API, the CLI): the façade over
//! [`Services::cancel`](crate::host::Services::cancel), where the cascade lives.

use super::Node;
use crate::host::CancelError;

impl Node {
    /// Cancel instance `id` and all its unfinished descendants: each ends as `cancelled`
    /// (written in one durable batch first), its waiters learn `flow-error.cancelled`, and
    /// its code stops: a queued one leaves its queue, a parked or evicted one stops
    /// waiting, a running one stops at its next host call or epoch tick. A held one ends
    /// too. Returns how many instances were cancelled.
    pub async fn cancel(&self, id: &str) -> Result<usize, CancelError> {
        let result = self.services().cancel(id).await;
        match &result {
            Ok(count) => tracing::info!(id, "cancelled {id}: {count} instance(s)"),
            Err(e) => tracing::debug!(id, "cancel {id}: {e}"),
        }
        result
    }
}
