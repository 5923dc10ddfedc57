//! `scribe`: appends `before` to the file at `path`, sleeps `ms`, appends `after`, and
//! returns the file's lines. The appends are effects outside the journal: a crash during
//! the sleep makes the replay append `before` again (at least once, never lost).

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Error, Result};

#[derive(Deserialize)]
struct Input {
    path: String,
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    lines: Vec<String>,
}

fn append(path: &str, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Failed(format!("cannot write {path}: {e}")))?;
    writeln!(file, "{line}").map_err(|e| Error::Failed(format!("cannot write {path}: {e}")))
}

fn scribe(ctx: &Ctx, input: Input) -> Result<Output> {
    append(&input.path, "before")?;
    ctx.sleep(Duration::from_millis(input.ms));
    append(&input.path, "after")?;
    let text = std::fs::read_to_string(&input.path)
        .map_err(|e| Error::Failed(format!("cannot read {}: {e}", input.path)))?;
    Ok(Output {
        lines: text.lines().map(String::from).collect(),
    })
}

sluice_flow::flow!(scribe);
