//! `sluice wit`: print the WIT package flows are built against.

use std::process::ExitCode;

/// Print the `sluice:flow` WIT package, to generate guest bindings in any language.
#[derive(Debug, clap::Args)]
pub struct WitArgs {}

pub fn run(_args: WitArgs) -> anyhow::Result<ExitCode> {
    print!("{}", sluice::wit::WIT);
    Ok(ExitCode::SUCCESS)
}
