//! `stepper`: for `{"steps": n, "ms": m}`, reports progress `step 1` … `step n`, sleeping
//! `m` ms after each, and returns `{"steps": n}`. Followers of its stream see every step.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    steps: u64,
    #[serde(default)]
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    steps: u64,
}

fn stepper(ctx: &Ctx, input: Input) -> Result<Output> {
    for i in 1..=input.steps {
        ctx.progress(&format!("step {i}"));
        if input.ms > 0 {
            ctx.sleep(Duration::from_millis(input.ms));
        }
    }
    Ok(Output { steps: input.steps })
}

sluice_flow::flow!(stepper);
