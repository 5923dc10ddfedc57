//! `flaky`: calls `double`, then fails unless the file `/in/ready` exists (a directory the
//! node grants). Retries re-run it from its journal: the child is not run again.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    x: u64,
}

#[derive(Serialize, Deserialize)]
struct Doubled {
    y: u64,
}

fn flaky(ctx: &Ctx, input: Input) -> Result<Doubled> {
    let doubled: Doubled = ctx.call("double", &serde_json::json!({ "x": input.x }))?;
    if std::fs::metadata("/in/ready").is_err() {
        return Err("/in/ready does not exist yet".into());
    }
    Ok(doubled)
}

sluice_flow::flow!(flaky);
