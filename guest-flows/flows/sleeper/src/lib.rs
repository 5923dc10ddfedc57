//! `sleeper`: sleeps `ms` milliseconds, `times` times (default once).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    ms: u64,
    #[serde(default = "one")]
    times: u64,
}

fn one() -> u64 {
    1
}

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
}

fn sleeper(ctx: &Ctx, input: Input) -> Result<Output> {
    for _ in 0..input.times {
        ctx.sleep(Duration::from_millis(input.ms));
    }
    Ok(Output { slept_ms: input.ms * input.times })
}

sluice_flow::flow!(sleeper);
