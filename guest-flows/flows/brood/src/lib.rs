//! `brood`: starts `sleepers` children that sleep `ms` (parked) and `burners` CPU-bound
//! `burner` children, then joins them all, in order; returns how many completed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    sleepers: usize,
    burners: usize,
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    completed: usize,
}

fn brood(ctx: &Ctx, input: Input) -> Result<Output> {
    let mut children = Vec::with_capacity(input.sleepers + input.burners);
    for _ in 0..input.sleepers {
        children.push(ctx.start("sleeper", &json!({ "ms": input.ms }))?);
    }
    for _ in 0..input.burners {
        children.push(ctx.start("burner", &json!({}))?);
    }
    ctx.progress("started");
    let mut completed = 0;
    for child in children {
        if ctx.join::<Value>(child).is_ok() {
            completed += 1;
        }
    }
    Ok(Output { completed })
}

sluice_flow::flow!(brood);
