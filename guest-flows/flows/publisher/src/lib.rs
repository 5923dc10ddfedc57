//! `publisher`: publishes `{"x": i}` for i in 0..count on `topic`, then returns
//! `{"published": count}`.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    topic: String,
    count: u64,
}

#[derive(Serialize)]
struct Output {
    published: u64,
}

fn publisher(ctx: &Ctx, input: Input) -> Result<Output> {
    for x in 0..input.count {
        ctx.publish(&input.topic, &serde_json::json!({ "x": x }))?;
    }
    Ok(Output { published: input.count })
}

sluice_flow::flow!(publisher);
