//! `warden`: starts one child — a `sleeper` of `ms`, or at `depth` > 0 a `warden` one level
//! down — cancels it when `cancel` is set, joins it, and says how it ended. A cancelled or
//! timed-out child is an answer, not a failure: the warden carries on and completes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::{Ctx, Error, FlowError, Result};

#[derive(Deserialize)]
struct Input {
    ms: u64,
    #[serde(default)]
    depth: u32,
    #[serde(default)]
    cancel: bool,
}

#[derive(Serialize)]
struct Output {
    child: String,
    outcome: String,
}

fn warden(ctx: &Ctx, input: Input) -> Result<Output> {
    let child = if input.depth == 0 {
        ctx.start("sleeper", &json!({ "ms": input.ms }))?
    } else {
        let below = json!({ "ms": input.ms, "depth": input.depth - 1 });
        ctx.start(ctx.flow_name(), &below)?
    };
    let id = child.id().to_string();
    ctx.progress("started");
    if input.cancel {
        ctx.cancel(&child)?;
    }
    let outcome = match ctx.join::<Value>(child) {
        Ok(_) => "completed",
        Err(Error::Subflow { error: FlowError::Cancelled, .. }) => "cancelled",
        Err(Error::Subflow { error: FlowError::TimedOut, .. }) => "timed-out",
        Err(e) => return Err(e),
    };
    Ok(Output { child: id, outcome: outcome.into() })
}

sluice_flow::flow!(warden);
