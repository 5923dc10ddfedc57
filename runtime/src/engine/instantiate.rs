//! Instantiating a flow component, with retries of one transient kernel refusal.

use std::time::Duration;

use wasmtime::Store;

use crate::wit::{Flow, FlowPre};

/// Tries after a transient image error before instantiation fails.
const TRANSIENT_RETRIES: u32 = 4;

/// Instantiate `pre` in `store`. A large component's memory image (copy-on-write, from a
/// memfd) is sealed when first built; the kernel may refuse that for a moment (`F_ADD_SEALS`
/// answers EBUSY while a page of the new memfd is briefly pinned). wasmtime keeps no image
/// after such a failure, so trying again builds it again: that is retried a few times.
pub async fn instantiate<T: Send + 'static>(
    pre: &FlowPre<T>,
    store: &mut Store<T>,
) -> wasmtime::Result<Flow> {
    match pre.instantiate_async(&mut *store).await {
        Err(e) if transient_image_error(&e) => Box::pin(instantiate_again(pre, store, e)).await,
        done => done,
    }
}

fn transient_image_error(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|cause| cause.to_string().contains("cannot add seals to the memfd"))
}

async fn instantiate_again<T: Send + 'static>(
    pre: &FlowPre<T>,
    store: &mut Store<T>,
    mut error: wasmtime::Error,
) -> wasmtime::Result<Flow> {
    for attempt in 1..=TRANSIENT_RETRIES {
        tracing::warn!(
            "instantiation failed ({error:#}); retrying ({attempt} of {TRANSIENT_RETRIES})"
        );
        tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
        match pre.instantiate_async(&mut *store).await {
            Err(e) if transient_image_error(&e) => error = e,
            done => return done,
        }
    }
    Err(error)
}
