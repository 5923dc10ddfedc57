//! The `sluice` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

mod bench;
mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
