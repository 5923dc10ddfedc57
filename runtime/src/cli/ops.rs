//! Operator verbs: `hospital` and `status` against a served node (`--node`) or, offline,
//! a data directory (`--data-dir`); `export` and `upgrade` against a data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sluice::operator;
use sluice::replay::describe;

use super::client::NodeArgs;
use super::remote::Hospital;

/// The data directory every operator verb acts on.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// The node's durable store directory (its `--data-dir`).
    #[arg(long)]
    data_dir: PathBuf,
}

/// Where `hospital` and `status` act: a data dir offline, else the node.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Act offline on this data directory instead of a served node.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

/// Instances held for an operator: list them, run them again, or end them.
#[derive(Debug, clap::Args)]
pub struct HospitalArgs {
    #[command(subcommand)]
    action: HospitalAction,
}

#[derive(Debug, clap::Subcommand)]
enum HospitalAction {
    /// List held instances and why they are held.
    List {
        #[command(flatten)]
        dir: Target,
    },
    /// Run a held instance again from its journal (offline: when the node next starts).
    Retry {
        #[command(flatten)]
        dir: Target,
        /// Instance id.
        id: String,
        /// Run it on this build of its flow from now on.
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// End a held instance as failed.
    Kill {
        #[command(flatten)]
        dir: Target,
        /// Instance id.
        id: String,
    },
}

/// Show an instance: its record and journal.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    dir: Target,
    /// Instance id.
    id: String,
}

/// Write an instance's record and journal as JSON, for `sluice replay`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Instance id.
    id: String,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Move an unfinished instance to another build of its flow (check with `sluice replay`).
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Instance id.
    id: String,
    /// The new build (`.wasm`).
    component: PathBuf,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn hospital(args: HospitalArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.action {
        HospitalAction::List { dir } => dir,
        HospitalAction::Retry { dir, .. } | HospitalAction::Kill { dir, .. } => dir,
    };
    let Some(data_dir) = &dir.data_dir else {
        let action = match &args.action {
            HospitalAction::List { .. } => Hospital::List,
            HospitalAction::Retry { id, component, .. } => {
                Hospital::Retry(id, component.as_deref().and_then(|p| p.to_str()))
            }
            HospitalAction::Kill { id, .. } => Hospital::Kill(id),
        };
        return super::remote::hospital(&dir.node, action);
    };
    // Listing only reads; retry and kill write, so they hold the data dir meanwhile.
    let (store, _lock) = match &args.action {
        HospitalAction::List { .. } => (operator::open_store(data_dir)?, None),
        _ => {
            let (store, lock) = operator::open_store_to_write(data_dir)?;
            (store, Some(lock))
        }
    };
    match args.action {
        HospitalAction::List { .. } => {
            let held = operator::hospital(&store)?;
            if held.is_empty() {
                println!("the flow hospital is empty");
            }
            for r in held {
                println!(
                    "{}  {}  {}",
                    r.id,
                    r.flow,
                    r.message.as_deref().unwrap_or("")
                );
            }
        }
        HospitalAction::Retry { id, component, .. } => {
            let bytes = component.as_ref().map(read).transpose()?;
            let with = component.as_deref().zip(bytes.as_deref());
            operator::retry(&store, &id, with)?;
            println!("{id} will run again from its journal when the node next starts");
        }
        HospitalAction::Kill { id, .. } => {
            operator::kill(&store, &id)?;
            println!("{id} ended as failed (killed by an operator)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(data_dir) = &args.dir.data_dir else {
        return super::remote::status(&args.dir.node, &args.id);
    };
    let store = operator::open_store(data_dir)?;
    let export = operator::export(&store, &args.id)?;
    let r = &export.record;
    println!("instance  {}", r.id);
    println!("flow      {} (component sha256 {})", r.flow, r.component);
    println!("status    {}", r.status.as_str());
    if let Some(message) = &r.message {
        println!("reason    {message}");
    }
    if r.attempts > 0 {
        println!("attempts  {} failed", r.attempts);
    }
    println!("input     {}", r.input);
    if let Some(output) = &r.output {
        println!("output    {output}");
    }
    println!("journal   {} entries", export.journal.len());
    for e in &export.journal {
        println!(
            "  {:>4}  {}  ->  {}",
            e.position,
            describe(&e.call, &e.args),
            e.result
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = operator::open_store(&args.dir.data_dir)?;
    let export = operator::export(&store, &args.id)?;
    let text = serde_json::to_string_pretty(&export)?;
    match &args.output {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn upgrade(args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let (store, _lock) = operator::open_store_to_write(&args.dir.data_dir)?;
    let bytes = read(&args.component)?;
    let hash = operator::upgrade(&store, &args.id, &args.component, &bytes)?;
    println!(
        "{} now runs on {} (sha256 {}); it replays its journal on it when the node next starts",
        args.id,
        args.component.display(),
        &hash[..12]
    );
    Ok(ExitCode::SUCCESS)
}
