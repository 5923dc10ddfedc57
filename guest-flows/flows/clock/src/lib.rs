//! `clock`: reads `now` and `random`, sleeps `ms`, reads both again. After a crash, replay
//! must return the values read before it, and the sleep must keep its original deadline.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    t0: u64,
    r0: u64,
    t1: u64,
    r1: u64,
}

fn clock(ctx: &Ctx, input: Input) -> Result<Output> {
    let (t0, r0) = (ctx.now_ms(), ctx.random());
    ctx.sleep(Duration::from_millis(input.ms));
    let (t1, r1) = (ctx.now_ms(), ctx.random());
    Ok(Output { t0, r0, t1, r1 })
}

sluice_flow::flow!(clock);
