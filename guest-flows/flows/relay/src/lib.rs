//! `relay`: the subscriber of the trackBy test. For an event `{"x": n}` it starts the
//! subflow `double` and waits for it (a suspension point: no slot held while waiting),
//! returning `{"x": n, "y": 2n}`.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    x: u64,
}

#[derive(Deserialize)]
struct Doubled {
    y: u64,
}

#[derive(Serialize)]
struct Output {
    x: u64,
    y: u64,
}

fn relay(ctx: &Ctx, input: Input) -> Result<Output> {
    let doubled: Doubled = ctx.call("double", &serde_json::json!({ "x": input.x }))?;
    Ok(Output { x: input.x, y: doubled.y })
}

sluice_flow::flow!(relay);
