//! `burner`: burns CPU in rounds (`rounds` of them, forever by default), reporting each
//! round as a progress step: a CPU-bound flow whose journal shows it is still running.

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    rounds: Option<u64>,
}

#[derive(Serialize)]
struct Output {
    rounds: u64,
}

fn burner(ctx: &Ctx, input: Input) -> Result<Output> {
    let rounds = input.rounds.unwrap_or(u64::MAX);
    let mut x = 1u64;
    let mut round = 0;
    while round < rounds {
        for _ in 0..5_000_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        round += 1;
        ctx.progress(&format!("round {round}"));
    }
    std::hint::black_box(x);
    Ok(Output { rounds: round })
}

sluice_flow::flow!(burner);
