//! `ordered`: calls `double` with 1, sleeps `ms`, calls `double` with 2. Build 1 of an
//! upgrade pair; `reordered` makes the same calls in the other order.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Doubled {
    y: u64,
}

#[derive(Serialize)]
struct Output {
    first: u64,
    second: u64,
}

fn ordered(ctx: &Ctx, input: Input) -> Result<Output> {
    let first: Doubled = ctx.call("double", &serde_json::json!({ "x": 1 }))?;
    ctx.sleep(Duration::from_millis(input.ms));
    let second: Doubled = ctx.call("double", &serde_json::json!({ "x": 2 }))?;
    Ok(Output { first: first.y, second: second.y })
}

sluice_flow::flow!(ordered);
