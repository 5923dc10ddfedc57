//! `hello`: transforms `{"name": N}` into `{"greeting": "Hello, N!"}`.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn hello(ctx: &Ctx, input: Input) -> Result<Output> {
    ctx.progress("greeting");
    Ok(Output { greeting: format!("Hello, {}!", input.name) })
}

sluice_flow::flow!(hello);
