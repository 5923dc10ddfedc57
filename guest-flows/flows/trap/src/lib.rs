//! `trap`: panics (a trap, with panic = "abort") with `message`, or with `"fail": true`
//! returns it as the flow's error instead.

use serde::Deserialize;
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    message: String,
    #[serde(default)]
    fail: bool,
}

fn trap(_ctx: &Ctx, input: Input) -> Result<()> {
    if input.fail {
        return Err(input.message.into());
    }
    panic!("{}", input.message);
}

sluice_flow::flow!(trap);
