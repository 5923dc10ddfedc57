//! `sluice replay`: check a new build of a flow against a journal exported from a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sluice::operator::Export;
use sluice::testing::replay::JournalReplay;

/// Re-run an exported journal (`sluice export ID`) against another build of its flow:
/// passes when the build makes the same host calls in the same order.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The exported journal (JSON).
    #[arg(long)]
    journal: PathBuf,
    /// The build to check (`.wasm`).
    flow: PathBuf,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.journal)
        .with_context(|| format!("cannot read {}", args.journal.display()))?;
    let export: Export = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a journal written by `sluice export`",
            args.journal.display()
        )
    })?;
    let replay = JournalReplay::load(&args.flow)?;
    let report = super::runtime()?.block_on(replay.check(&export));
    match report.verdict {
        Ok(summary) => {
            println!(
                "OK {} replays instance {} of `{}`: {summary}",
                args.flow.display(),
                export.record.id,
                export.record.flow
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!(
                "DIVERGES {} does not replay instance {} of `{}`: {why}",
                args.flow.display(),
                export.record.id,
                export.record.flow
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
