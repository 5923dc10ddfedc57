//! `fanout`: starts `n` children of flow `child` (default `hello`), then awaits them all.
//!
//! Each child gets `input` when given, else `{"name": "child-<i>"}`. With `"parallel": true`
//! it uses one `parallel` host call instead of `start` + `join`.
//! The output lists the children's outputs in the order they were started.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    n: u32,
    #[serde(default = "default_child")]
    child: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    parallel: bool,
}

fn default_child() -> String {
    "hello".into()
}

#[derive(Serialize)]
struct Output {
    results: Vec<Value>,
}

fn fanout(ctx: &Ctx, input: Input) -> Result<Output> {
    let inputs: Vec<Value> = (0..input.n)
        .map(|i| input.input.clone().unwrap_or_else(|| json!({ "name": format!("child-{i}") })))
        .collect();
    let results = if input.parallel {
        ctx.parallel::<Value, Value>(&input.child, &inputs)?.into_iter().collect::<Result<Vec<_>>>()?
    } else {
        let children = inputs.iter().map(|i| ctx.start(&input.child, i)).collect::<Result<Vec<_>>>()?;
        children.into_iter().map(|c| ctx.join::<Value>(c)).collect::<Result<Vec<_>>>()?
    };
    ctx.progress("fanned out");
    Ok(Output { results })
}

sluice_flow::flow!(fanout);
