//! `watcher`: takes up to `count` events from `topic`, giving up on the first wait that
//! lasts longer than `timeout_ms`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    topic: String,
    count: usize,
    timeout_ms: Option<u64>,
}

#[derive(Serialize)]
struct Output {
    events: Vec<Value>,
    timed_out: bool,
}

fn watcher(ctx: &Ctx, input: Input) -> Result<Output> {
    let timeout = input.timeout_ms.map(Duration::from_millis);
    let mut events = Vec::new();
    while events.len() < input.count {
        match ctx.wait_event::<Value>(&input.topic, timeout)? {
            Some(event) => events.push(event),
            None => return Ok(Output { events, timed_out: true }),
        }
    }
    Ok(Output { events, timed_out: false })
}

sluice_flow::flow!(watcher);
