//! `sluice events TOPIC`: follow a topic of a served node, one JSON line per event, until
//! interrupted; and `sluice publish TOPIC`: publish one event.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::client::{Client, NodeArgs, encode};

/// Follow a topic: print every event published on it from now on.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The topic.
    topic: String,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn follow(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    let path = format!("/v1/topics/{}/events", encode(&args.topic));
    super::runtime()?.block_on(async {
        let mut stream = client.events(&path).await?;
        let mut seen = 0;
        while let Some(event) = stream.next().await? {
            match event.name.as_str() {
                "ready" => eprintln!("following topic {}", args.topic),
                "dropped" => eprintln!(
                    "warning: this follower was too slow; {} event(s) were dropped",
                    event.data["missed"]
                ),
                "event" => {
                    if args.node.json {
                        println!("{}", event.data);
                    } else {
                        println!(
                            "{}  {}",
                            event.data["id"].as_str().unwrap_or(""),
                            event.data["payload"]
                        );
                    }
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        break;
                    }
                }
                _ => {}
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Publish one event on a topic (the token needs `publish:<topic>`).
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The topic.
    topic: String,
    /// The payload (JSON).
    #[arg(long, default_value = "null")]
    data: String,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let data: Value = serde_json::from_str(&args.data)
        .with_context(|| format!("invalid --data JSON `{}`", args.data))?;
    let client = Client::new(&args.node)?;
    let path = format!("/v1/topics/{}/publish", encode(&args.topic));
    let answer =
        super::runtime()?.block_on(client.post(&path, Some(serde_json::to_vec(&data)?)))?;
    if args.node.json {
        println!("{}", answer.body);
    } else {
        println!("{}", answer.body["id"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}
