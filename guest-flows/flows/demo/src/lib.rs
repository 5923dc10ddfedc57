//! `demo`: starts a `fanout` of `fanout` children and a `chain` of depth `chain` at the same
//! time, then waits for both. In pools of one slot each, a thread-per-flow engine deadlocks
//! on the first wait; here every waiting flow is parked and holds nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    fanout: u32,
    chain: u64,
}

#[derive(Serialize)]
struct Output {
    fanout_children: usize,
    chain_depth: u64,
    chain_sum: u64,
}

fn demo(ctx: &Ctx, input: Input) -> Result<Output> {
    ctx.info(&format!("starting a fan-out of {} and a chain of {}", input.fanout, input.chain));
    let fan = ctx.start("fanout", &json!({ "n": input.fanout }))?;
    let chain = ctx.start("chain", &json!({ "depth": input.chain }))?;
    let fanned: Value = ctx.join(fan)?;
    let chained: Value = ctx.join(chain)?;
    ctx.progress("both done");
    Ok(Output {
        fanout_children: fanned["results"].as_array().map_or(0, Vec::len),
        chain_depth: chained["depth"].as_u64().unwrap_or(0),
        chain_sum: chained["sum"].as_u64().unwrap_or(0),
    })
}

sluice_flow::flow!(demo);
