//! `sluice cancel ID`: cancel an instance of a served node, with all its unfinished
//! descendants (`POST /v1/instances/{id}/cancel`; the token needs `cancel`).

use std::process::ExitCode;

use super::client::{Client, NodeArgs, encode};

/// Cancel an instance and its descendants on a served node.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// Instance id.
    id: String,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    let path = format!("/v1/instances/{}/cancel", encode(&args.id));
    let answer = super::runtime()?.block_on(client.post(&path, None))?;
    if args.node.json {
        println!("{}", answer.body);
    } else {
        let count = answer.body["cancelled"].as_u64().unwrap_or(0);
        println!(
            "cancelled {}: {count} instance(s), with its descendants",
            args.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
