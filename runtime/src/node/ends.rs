//! How instances' ends reach the store and whoever waits for them.

use std::future::Future;

use tokio::sync::oneshot;

use super::{Node, Outcome};
use crate::error::FlowError;
use crate::instance::End;
use crate::journal::{Status, Write, encode};
use crate::messaging::sessions::end_reason;
use crate::recovery::outcome_of_record;

impl Node {
    /// The outcome of instance `id` once it ends, whether it runs here now or ended before.
    pub(crate) fn outcome_of(&self, id: &str) -> impl Future<Output = Outcome> + Send + 'static {
        let (node, id) = (self.clone(), id.to_string());
        async move {
            let completions = &node.inner.completions;
            let journal = &node.inner.journal;
            let ended = |node: &Node| -> Result<Option<Outcome>, FlowError> {
                let record = node.inner.journal.store().record(&id);
                match record.map_err(|e| FlowError::Failed(e.to_string()))? {
                    Some(record) => Ok(outcome_of_record(&record)),
                    None => Ok(None),
                }
            };
            let waited = |rx: oneshot::Receiver<Outcome>| async {
                rx.await
                    .unwrap_or_else(|_| Err(FlowError::Failed(format!("instance {id} vanished"))))
            };
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended(&node) {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            // It may have ended with its end still queued: once that is committed, the store
            // has it.
            if let Err(e) = journal.sync().await {
                return Err(FlowError::Failed(e.to_string()));
            }
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended(&node) {
                Ok(Some(outcome)) => outcome,
                // Held, or not resumed yet: wait for whoever runs it next.
                Ok(None) => waited(completions.watch(&id)).await,
                Err(e) => Err(e),
            }
        }
    }

    /// Record how instance `id` ended, then tell whoever waits for it. A child's end is only
    /// queued: its parent, the one who learns it, queues its own writes after it, so a crash
    /// keeps both or neither. Anyone else learns an end only once it is durable.
    pub(crate) async fn conclude(&self, id: &str, end: End, child: bool, before: Vec<Write>) {
        let (write, outcome) = match end {
            End::Completed(output) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Completed,
                    output: Some(output.clone()),
                    message: None,
                },
                Some(Ok(output)),
            ),
            End::Failed(error) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Failed,
                    output: Some(encode(&error).to_string().into_bytes()),
                    message: Some(error.to_string()),
                },
                Some(Err(error)),
            ),
            End::Held(why) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Hospital,
                    output: None,
                    message: Some(why),
                },
                None,
            ),
        };
        let held = outcome.is_none();
        let mut batch = before;
        batch.push(write);
        let recorded = if child && !held {
            self.inner.journal.append(batch)
        } else {
            self.inner.journal.write(batch).await
        };
        if let Err(e) = recorded {
            // Waiters still learn the outcome; after a restart the instance is replayed.
            tracing::error!("cannot record the end of instance {id}: {e}");
        }
        if let Some(outcome) = &outcome {
            // Counterparties receive what it sent, then learn it ended. A held instance may
            // still go on, so its sessions stay open.
            let sessions = &self.inner.messaging.sessions;
            sessions.ended(id, || end_reason(id, outcome));
        }
        match outcome {
            Some(outcome) => self.inner.completions.finish(id, &outcome),
            None => self.inner.completions.hold(id),
        }
    }
}
