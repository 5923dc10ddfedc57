//! Client verbs that read a served node: `result`, `list`, `pools`, `flows`, `nodes`; and the
//! node side of `status` and `hospital`.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::client::{Client, NodeArgs, encode};
use super::output::{cell, table};

/// `GET path` on the node; with `--json` the answer is printed as it came and `None`
/// returned, else it is returned for a table.
fn fetch(node: &NodeArgs, path: &str) -> anyhow::Result<Option<Value>> {
    let client = Client::new(node)?;
    let body = super::runtime()?.block_on(client.get(path))?.body;
    if node.json {
        println!("{body}");
        return Ok(None);
    }
    Ok(Some(body))
}

/// An instance's outcome, waiting for it with `--wait`.
#[derive(Debug, clap::Args)]
pub struct ResultArgs {
    /// Instance id.
    id: String,
    /// Wait for the outcome.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn result(args: ResultArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.node)?;
    super::runtime()?.block_on(async {
        let view = if args.wait {
            super::start::follow(&client, &args.id).await?
        } else {
            let answer = client
                .get(&format!("/v1/instances/{}/result", encode(&args.id)))
                .await?;
            if answer.status == 202 {
                if args.node.json {
                    println!("{}", answer.body);
                } else {
                    println!("{} is {}", args.id, cell(&answer.body, "status"));
                }
                return Ok(ExitCode::from(2));
            }
            answer.body
        };
        super::output::outcome(&view, args.node.json)
    })
}

/// List a node's instances.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only this state: running, completed, failed, held, cancelled.
    #[arg(long)]
    status: Option<String>,
    /// Only this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Only children of this instance.
    #[arg(long)]
    parent: Option<String>,
    /// Only this instance and its descendants.
    #[arg(long)]
    root: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after this cursor (printed under the table).
    #[arg(long)]
    cursor: Option<u64>,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut query = vec![format!("limit={}", args.limit)];
    for (key, value) in [
        ("flow", &args.flow),
        ("status", &args.status),
        ("pool", &args.pool),
        ("parent", &args.parent),
        ("root", &args.root),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", encode(v)));
        }
    }
    if let Some(c) = args.cursor {
        query.push(format!("cursor={c}"));
    }
    let Some(page) = fetch(&args.node, &format!("/v1/instances?{}", query.join("&")))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut t = table(&["id", "flow", "status", "pool", "origin", "progress"]);
    for i in page["instances"].as_array().into_iter().flatten() {
        t.add_row(vec![
            cell(i, "id"),
            cell(i, "flow"),
            cell(i, "status"),
            cell(i, "pool"),
            format!("{} {}", cell(i, "origin"), cell(i, "by")),
            cell(i, "progress"),
        ]);
    }
    println!("{t}");
    if let Some(next) = page["next_cursor"].as_u64() {
        println!("more: --cursor {next}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Show a node's pools with their live figures, or resize one.
#[derive(Debug, clap::Args)]
pub struct PoolsArgs {
    #[command(subcommand)]
    action: Option<PoolsAction>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum PoolsAction {
    /// Change a pool's size and/or queue capacity, live.
    Resize {
        /// Pool name.
        name: String,
        /// New size (1 to 4096).
        #[arg(long)]
        size: Option<u64>,
        /// New queue capacity (at least 1).
        #[arg(long)]
        queue: Option<u64>,
    },
}

pub fn pools(args: PoolsArgs) -> anyhow::Result<ExitCode> {
    if let Some(PoolsAction::Resize { name, size, queue }) = args.action {
        anyhow::ensure!(
            size.is_some() || queue.is_some(),
            "pools resize {name}: give --size, --queue or both"
        );
        let client = Client::new(&args.node)?;
        let body = serde_json::to_vec(&json!({ "size": size, "queue": queue }))?;
        let path = format!("/v1/pools/{}", encode(&name));
        let pool = super::runtime()?.block_on(client.patch(&path, body))?.body;
        if args.node.json {
            println!("{pool}");
        } else {
            println!(
                "pool {name}: size {}, queue {}",
                cell(&pool, "size"),
                cell(&pool, "queue_capacity")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(pools) = fetch(&args.node, "/v1/pools")? else {
        return Ok(ExitCode::SUCCESS);
    };
    // (header, key in the pool's JSON)
    let columns = [
        ("pool", "name"),
        ("size", "size"),
        ("queue", "queue_capacity"),
        ("running", "running"),
        ("queued", "queued"),
        ("parked", "parked"),
        ("started", "started"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("rejected", "rejected"),
    ];
    let mut t = table(&columns.map(|(header, _)| header));
    for p in pools.as_array().into_iter().flatten() {
        t.add_row(columns.iter().map(|(_, k)| cell(p, k)).collect::<Vec<_>>());
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// The nodes sharing the node's database: name, state, lease, instances each runs.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    #[command(flatten)]
    node: NodeArgs,
}

pub fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let Some(view) = fetch(&args.node, "/v1/cluster")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(me) = view["node"].as_str() else {
        println!("this node is not in a cluster (its store is its own: SQLite or memory)");
        return Ok(ExitCode::SUCCESS);
    };
    let mut t = table(&[
        "node",
        "epoch",
        "state",
        "lease left",
        "running",
        "leader",
        "this",
    ]);
    let mut leader_seen = false;
    for m in view["members"].as_array().into_iter().flatten() {
        let live = m["state"] == "live" && m["lease_left_ms"].as_i64().unwrap_or(0) > 0;
        let leads = live && !leader_seen;
        leader_seen |= leads;
        let left = m["lease_left_ms"].as_i64().unwrap_or(0);
        t.add_row(vec![
            cell(m, "name"),
            cell(m, "epoch"),
            cell(m, "state"),
            if left > 0 {
                format!("{:.1} s", left as f64 / 1e3)
            } else {
                "lapsed".into()
            },
            cell(m, "running"),
            if leads { "yes".into() } else { String::new() },
            if m["name"] == me {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Show the other nodes a node's flows hold sessions with.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    #[command(flatten)]
    node: NodeArgs,
}

pub fn peers(args: PeersArgs) -> anyhow::Result<ExitCode> {
    let Some(view) = fetch(&args.node, "/v1/peers")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let peers = view.as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        println!("this node has no peers (add `[peers.<party>]` to its config)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "peer",
        "url",
        "reachable",
        "last contact",
        "outbox",
        "sent",
        "received",
        "retried",
        "refused",
    ]);
    let now = sluice::model::unix_ms();
    for p in &peers {
        let contact = match p["last_contact_ms"].as_u64() {
            Some(ms) => format!("{:.1} s ago", now.saturating_sub(ms) as f64 / 1e3),
            None => "never".into(),
        };
        t.add_row(vec![
            cell(p, "party"),
            cell(p, "url"),
            match (p["reachable"].as_bool(), p["last_error"].as_str()) {
                (Some(true), _) => "yes".into(),
                (_, Some(why)) => format!("no: {why}"),
                _ => "not yet tried".into(),
            },
            contact,
            cell(p, "outbox"),
            cell(p, "sent"),
            cell(p, "received"),
            cell(p, "retried"),
            cell(p, "refused"),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Show the flows a node knows.
#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    node: NodeArgs,
}

pub fn flows(args: FlowsArgs) -> anyhow::Result<ExitCode> {
    let Some(flows) = fetch(&args.node, "/v1/flows")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut t = table(&["flow", "component", "pool", "in flight"]);
    for f in flows.as_array().into_iter().flatten() {
        let hash = cell(f, "component");
        t.add_row(vec![
            cell(f, "name"),
            hash.chars().take(12).collect(),
            cell(f, "pool"),
            cell(f, "in_flight"),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// `sluice status ID` against a node.
pub fn status(node: &NodeArgs, id: &str) -> anyhow::Result<ExitCode> {
    let Some(view) = fetch(node, &format!("/v1/instances/{}", encode(id)))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut t = table(&["field", "value"]);
    for key in [
        "id", "flow", "status", "pool", "origin", "by", "parent", "attempts", "progress", "output",
        "message",
    ] {
        if !view[key].is_null() {
            t.add_row(vec![key.to_string(), cell(&view, key)]);
        }
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// The hospital verbs against a node.
pub enum Hospital<'a> {
    /// List held instances.
    List,
    /// Retry one, optionally on another build.
    Retry(&'a str, Option<&'a str>),
    /// Kill one.
    Kill(&'a str),
}

/// `sluice hospital …` against a node.
pub fn hospital(node: &NodeArgs, action: Hospital<'_>) -> anyhow::Result<ExitCode> {
    let client = Client::new(node)?;
    let runtime = super::runtime()?;
    let answer = match action {
        Hospital::List => runtime.block_on(client.get("/v1/hospital"))?,
        Hospital::Retry(id, component) => {
            let body = serde_json::to_vec(&json!({ "component": component }))?;
            runtime
                .block_on(client.post(&format!("/v1/hospital/{}/retry", encode(id)), Some(body)))?
        }
        Hospital::Kill(id) => {
            runtime.block_on(client.post(&format!("/v1/hospital/{}/kill", encode(id)), None))?
        }
    };
    if node.json {
        println!("{}", answer.body);
        return Ok(ExitCode::SUCCESS);
    }
    match &answer.body {
        Value::Array(held) => {
            if held.is_empty() {
                println!("the flow hospital is empty");
            } else {
                let mut t = table(&["id", "flow", "why"]);
                for h in held {
                    t.add_row(vec![cell(h, "id"), cell(h, "flow"), cell(h, "message")]);
                }
                println!("{t}");
            }
        }
        done => println!("{}", cell(done, "message")),
    }
    Ok(ExitCode::SUCCESS)
}
