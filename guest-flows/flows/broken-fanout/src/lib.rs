//! `broken-fanout`: `fanout` with a deliberate bug, chosen by the name it runs under, so
//! the same scenario files can show that tests catch each kind of regression:
//! `…wrong-output…` returns the results reversed, `…extra-call…` reads the clock once more,
//! `…missing-call…` skips the final `progress` call.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    n: u32,
    #[serde(default = "default_child")]
    child: String,
}

fn default_child() -> String {
    "hello".into()
}

#[derive(Serialize)]
struct Output {
    results: Vec<Value>,
}

fn broken_fanout(ctx: &Ctx, input: Input) -> Result<Output> {
    let bug = ctx.flow_name().to_string();
    let children = (0..input.n)
        .map(|i| ctx.start(&input.child, &json!({ "name": format!("child-{i}") })))
        .collect::<Result<Vec<_>>>()?;
    let mut results = children.into_iter().map(|c| ctx.join::<Value>(c)).collect::<Result<Vec<_>>>()?;
    if bug.contains("wrong-output") {
        results.reverse();
    }
    if bug.contains("extra-call") {
        ctx.now_ms();
    }
    if !bug.contains("missing-call") {
        ctx.progress("fanned out");
    }
    Ok(Output { results })
}

sluice_flow::flow!(broken_fanout);
