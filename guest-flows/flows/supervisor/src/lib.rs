//! `supervisor`: calls `child` with `input` and reports how it ended, as data:
//! `{"outcome": "completed", "output": …}` or `{"outcome": "failed" | "rejected" | …, "message": …}`.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_flow::{Ctx, Error, FlowError, Result};

#[derive(Deserialize)]
struct Input {
    child: String,
    #[serde(default)]
    input: Value,
}

fn supervisor(ctx: &Ctx, input: Input) -> Result<Value> {
    Ok(match ctx.call::<Value, Value>(&input.child, &input.input) {
        Ok(output) => json!({ "outcome": "completed", "output": output }),
        Err(Error::Subflow { error, .. }) => match error {
            FlowError::Failed(m) => json!({ "outcome": "failed", "message": m }),
            FlowError::Rejected(m) => json!({ "outcome": "rejected", "message": m }),
            FlowError::TimedOut => json!({ "outcome": "timed-out" }),
            FlowError::Cancelled => json!({ "outcome": "cancelled" }),
        },
        Err(other) => return Err(other),
    })
}

sluice_flow::flow!(supervisor);
