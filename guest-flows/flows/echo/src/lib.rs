//! Echo: reports `step` as a progress step, then returns `output`, or fails with `fail`.
//! Tests use it to show that whatever a flow writes reaches an operator as text.

use serde::Deserialize;
use serde_json::Value;
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    step: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    fail: Option<String>,
}

fn echo(ctx: &Ctx, input: Input) -> Result<Value> {
    ctx.progress(&input.step);
    match input.fail {
        Some(error) => Err(error.into()),
        None => Ok(input.output),
    }
}

sluice_flow::flow!(echo);
