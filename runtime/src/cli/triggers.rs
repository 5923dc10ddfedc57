//! `sluice triggers [list]`, `sluice triggers pause NAME`, `sluice triggers resume NAME`.

use std::process::ExitCode;

use super::client::{Client, NodeArgs, encode};
use super::output::{cell, table};

/// A served node's triggers: list, pause, resume.
#[derive(Debug, clap::Args)]
pub struct TriggersArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Every trigger with its figures (the default).
    List,
    /// Pause a trigger (the token needs `operate`).
    Pause { name: String },
    /// Resume a paused trigger (the token needs `operate`).
    Resume { name: String },
}

pub fn run(args: TriggersArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    let answer = super::runtime()?.block_on(async {
        match &args.action {
            None | Some(Action::List) => client.get("/v1/triggers").await,
            Some(Action::Pause { name }) => {
                client
                    .post(&format!("/v1/triggers/{}/pause", encode(name)), None)
                    .await
            }
            Some(Action::Resume { name }) => {
                client
                    .post(&format!("/v1/triggers/{}/resume", encode(name)), None)
                    .await
            }
        }
    })?;
    if args.node.json {
        println!("{}", answer.body);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = match &answer.body {
        serde_json::Value::Array(rows) => rows.clone(),
        one => vec![one.clone()],
    };
    let columns = [
        "name",
        "kind",
        "flow",
        "source",
        "state",
        "fired",
        "started",
        "refused",
        "skipped",
        "pending",
        "last_fire",
        "next_fire",
    ];
    let mut t = table(&columns);
    for row in &rows {
        t.add_row(columns.iter().map(|c| cell(row, c)).collect::<Vec<_>>());
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
