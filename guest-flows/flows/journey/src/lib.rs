//! `journey`: the durability workload. For input `{"n": k}` it sleeps, calls `double`,
//! fans out three `double`s with `parallel`, starts one more and joins it after a sleep.
//! The output depends only on the input, so a run interrupted by crashes must give the
//! same output as one that was not.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    n: u64,
}

#[derive(Serialize, Deserialize)]
struct Doubled {
    y: u64,
}

#[derive(Serialize)]
struct Output {
    n: u64,
    sum: u64,
}

fn journey(ctx: &Ctx, input: Input) -> Result<Output> {
    let k = input.n;
    ctx.sleep(Duration::from_millis(20 + k % 30));
    let a: Doubled = ctx.call("double", &serde_json::json!({ "x": k }))?;
    ctx.sleep(Duration::from_millis(10));
    let inputs: Vec<_> = (1..=3).map(|i| serde_json::json!({ "x": k + i })).collect();
    let mut sum = a.y;
    for part in ctx.parallel::<_, Doubled>("double", &inputs)? {
        sum += part?.y;
    }
    let child = ctx.start("double", &serde_json::json!({ "x": k + 4 }))?;
    ctx.sleep(Duration::from_millis(5));
    sum += ctx.join::<Doubled>(child)?.y;
    ctx.progress("done");
    Ok(Output { n: k, sum })
}

sluice_flow::flow!(journey);
