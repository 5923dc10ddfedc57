//! `sluice start`: start a flow on a served node; with `--wait`, follow it to its end with
//! a spinner showing its latest progress step.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::client::{Client, NodeArgs, encode};
use super::output;

/// Start a flow on a node.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The flow's name.
    flow: String,
    /// Input JSON.
    #[arg(long, default_value = "null")]
    input: String,
    /// Instance id: starting the same id again attaches to the first.
    #[arg(long)]
    id: Option<String>,
    /// `normal` or `high`.
    #[arg(long)]
    priority: Option<String>,
    /// Wait for the outcome and print it.
    #[arg(long)]
    wait: bool,
    /// Follow it live (Server-Sent Events): print each state change and progress step,
    /// then the outcome.
    #[arg(long, conflicts_with = "wait")]
    follow: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn run(args: StartArgs) -> anyhow::Result<ExitCode> {
    let input: Value = serde_json::from_str(&args.input)
        .with_context(|| format!("invalid --input JSON `{}`", args.input))?;
    let client = Client::new(&args.node)?;
    let mut query = Vec::new();
    if let Some(id) = &args.id {
        query.push(format!("id={}", encode(id)));
    }
    if let Some(p) = &args.priority {
        query.push(format!("priority={}", encode(p)));
    }
    let path = format!("/v1/flows/{}/start?{}", encode(&args.flow), query.join("&"));
    super::runtime()?.block_on(async {
        let started = client
            .post(&path, Some(serde_json::to_vec(&input)?))
            .await?;
        let id = started.body["id"].as_str().unwrap_or_default().to_string();
        if args.follow {
            return stream(&client, &id, args.node.json).await;
        }
        if !args.wait {
            if args.node.json {
                println!("{}", started.body);
            } else {
                println!("{id}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = follow(&client, &id).await?;
        output::outcome(&outcome, args.node.json)
    })
}

/// Follow `id` live: each state change and progress step on stderr (as JSON lines on
/// stdout with `--json`), then its outcome as `--wait` prints it.
async fn stream(client: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut events = client
        .events(&format!("/v1/instances/{}/events", encode(id)))
        .await?;
    while let Some(event) = events.next().await? {
        if json {
            println!(
                "{}",
                serde_json::json!({ "event": event.name, "data": event.data })
            );
        }
        match event.name.as_str() {
            "outcome" if json => {
                let ok = event.data["status"] == "completed";
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            "outcome" => return output::outcome(&event.data, false),
            _ if json => {}
            "progress" => eprintln!("{id}: {}", event.data["step"].as_str().unwrap_or("")),
            "state" => eprintln!("{id}: {}", event.data["status"].as_str().unwrap_or("")),
            "dropped" => eprintln!(
                "{id}: {} event(s) dropped (this follower was slow)",
                event.data["missed"]
            ),
            _ => {}
        }
    }
    anyhow::bail!("the node closed the stream of {id} before its outcome")
}

/// Wait for `id` to end, long-polling its result; on a terminal, a spinner shows its
/// latest progress step meanwhile.
pub async fn follow(client: &Client, id: &str) -> anyhow::Result<Value> {
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(100));
        s.set_message(format!("{id}: running"));
        s
    });
    let result = format!("/v1/instances/{}/result?wait=1s", encode(id));
    let status = format!("/v1/instances/{}", encode(id));
    let outcome = loop {
        let answer = client.get(&result).await?;
        if answer.status == 200 {
            break answer.body;
        }
        if let Some(spinner) = &spinner
            && let Ok(view) = client.get(&status).await
        {
            let step = view.body["progress"].as_str().unwrap_or("running");
            spinner.set_message(format!("{id}: {step}"));
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(outcome)
}
