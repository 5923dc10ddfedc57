//! `double`: sleeps 5 ms, then returns `{"y": 2x}` for `{"x": x}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    x: u64,
}

#[derive(Serialize)]
struct Output {
    y: u64,
}

fn double(ctx: &Ctx, input: Input) -> Result<Output> {
    ctx.sleep(Duration::from_millis(5));
    Ok(Output { y: input.x * 2 })
}

sluice_flow::flow!(double);
