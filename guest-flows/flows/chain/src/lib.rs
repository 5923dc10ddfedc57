//! `chain`: calls itself with `depth - 1` until depth 0.
//!
//! Returns `{"depth": d, "sum": d + (d-1) + … + 0}`, so a wrong or lost level shows in the sum.
//! With `nap_ms`, the deepest level sleeps that long first: the whole chain is parked then.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize, Serialize)]
struct Input {
    depth: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    nap_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Deserialize, Serialize)]
struct Output {
    depth: u64,
    sum: u64,
}

fn chain(ctx: &Ctx, input: Input) -> Result<Output> {
    if input.depth == 0 {
        if input.nap_ms > 0 {
            ctx.sleep(Duration::from_millis(input.nap_ms));
        }
        return Ok(Output { depth: 0, sum: 0 });
    }
    // Call ourselves by the name we were registered under.
    let below: Output =
        ctx.call(ctx.flow_name(), &Input { depth: input.depth - 1, nap_ms: input.nap_ms })?;
    Ok(Output { depth: input.depth, sum: below.sum + input.depth })
}

sluice_flow::flow!(chain);
