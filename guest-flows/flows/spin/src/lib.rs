//! `spin`: burns CPU for `ms` milliseconds of the node's clock, never suspending.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    iterations: u64,
}

fn spin(ctx: &Ctx, input: Input) -> Result<Output> {
    let deadline = ctx.now_ms() + input.ms;
    let mut iterations = 0u64;
    let mut x = 1u64;
    while ctx.now_ms() < deadline {
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        iterations += 1;
    }
    std::hint::black_box(x);
    Ok(Output { iterations })
}

sluice_flow::flow!(spin);
