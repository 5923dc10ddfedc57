//! How an instance's end reaches the store and whoever waits for it.

use crate::host::Services;
use crate::host::cancel::cancelled_write;
use crate::model::{FlowError, end_reason};
use crate::store::{Status, Write, encode};

/// How an instance's run ended.
#[derive(Debug)]
pub enum End {
    /// It returned output.
    Completed(Vec<u8>),
    /// It failed, with no retries left to try (or no retry policy).
    Failed(FlowError),
    /// It is held in the flow hospital for an operator; the message says why.
    Held(String),
}

/// Record how instance `id` ended (after the writes `before`), then tell whoever waits for
/// it. A child's end is only queued: its parent, the one who learns it, queues its own
/// writes after it, so a crash keeps both or neither. Anyone else learns an end only once
/// it is durable.
///
/// An instance marked for cancellation before it got here writes no end and tells nobody:
/// its canceller does both. A timed-out instance's unfinished descendants are cancelled
/// in the batch that records its end.
pub(super) async fn conclude(
    services: &Services,
    id: &str,
    end: End,
    child: bool,
    before: Vec<Write>,
) {
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
    let descendants = if outcome == Some(Err(FlowError::TimedOut)) {
        services.mark_descendants(id).await.unwrap_or_else(|e| {
            tracing::error!("cannot find the descendants of timed-out instance {id}: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    // No `.await` between this and queuing the end (see `Cancellations::begin_end`). A held
    // instance has not ended: a cancellation may still end it.
    let ending = held || services.cancels.begin_end(id);
    let mut batch = before;
    if ending {
        batch.push(write);
        // Counterparties on other nodes learn the end from the same commit.
        if let Some(outcome) = &outcome {
            batch.extend(services.peer_ends(id, outcome));
        }
    }
    for (id, _) in &descendants {
        batch.push(cancelled_write(id));
        batch.extend(services.peer_ends(id, &Err(FlowError::Cancelled)));
    }
    let to_peers: Vec<Write> = batch
        .iter()
        .filter(|w| matches!(w, Write::PeerOut(_)))
        .cloned()
        .collect();
    // Descendants are told only once their cancellation is durable.
    let recorded = if child && !held && descendants.is_empty() {
        services.journal.append(batch)
    } else {
        services.journal.write(batch).await
    };
    if let Err(e) = recorded {
        // Waiters still learn the outcome; after a restart the instance is replayed.
        tracing::error!("cannot record the end of instance {id}: {e}");
    }
    services.wake_peers(&to_peers);
    if !descendants.is_empty() {
        let count = services.tell_cancelled(descendants);
        tracing::info!("instance {id} timed out: {count} descendant(s) cancelled");
    }
    if !ending {
        return;
    }
    if let Some(outcome) = &outcome {
        // Counterparties receive what it sent, then learn it ended. A held instance may
        // still go on, so its sessions stay open.
        let sessions = &services.messaging.sessions;
        sessions.ended(id, || end_reason(id, outcome));
    }
    match outcome {
        Some(outcome) => services.completions.finish(id, &outcome),
        None => services.completions.hold(id),
    }
}
