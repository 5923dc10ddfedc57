//! `sluice run`: run flows to completion in an embedded node and print their output.
//! With `--data-dir` the node is durable: it first resumes what an earlier run left
//! unfinished, and `--id` / `--batch` make starts idempotent across restarts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sluice::observe::{EventKind, InstanceEvent};
use sluice::{FlowError, Node, NodeConfig, StartRequest};
use tokio::sync::broadcast;

/// Run a flow to completion in an embedded node and print its output JSON.
///
/// Subflows resolve by name from the config's `[[flows]]`, or as `<name>.wasm`
/// next to the given component.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A flow component (`.wasm`), or the name of a flow in the config.
    flow: String,
    /// Input JSON.
    #[arg(long, default_value = "null")]
    input: String,
    /// Node configuration (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Durable store directory (overrides `[node] data-dir`): instances survive a crash and
    /// are resumed by the next run.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Instance id. Running again with the same id (and data dir) attaches to that
    /// instance instead of starting another.
    #[arg(long)]
    id: Option<String>,
    /// Start one instance per line of this file (JSON inputs), ids `<ID>-<line>` (ID
    /// defaults to the file's stem); prints one JSON line per instance, in order.
    #[arg(long, conflicts_with = "input")]
    batch: Option<PathBuf>,
    /// After the run, print a per-pool report of what ran where to stderr.
    #[arg(long)]
    report: bool,
    /// After the run, print the node's metrics (Prometheus text format) to stderr.
    #[arg(long)]
    metrics: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::parse("", Path::new("<defaults>"), Path::new("."))?,
    };
    if let Some(dir) = &args.data_dir {
        config.node.data_dir = Some(dir.clone());
    }
    let inputs = match &args.batch {
        Some(file) => read_batch(file)?,
        None => vec![
            serde_json::from_str(&args.input)
                .with_context(|| format!("invalid --input JSON `{}`", args.input))?,
        ],
    };
    let runtime = super::runtime()?;
    let _guard = runtime.enter();
    let node = runtime.block_on(Node::new(&config))?;
    let name = register_target(&node, &config, &args.flow)?;
    let held = node.events().subscribe();
    let resumed = runtime.block_on(node.recover())?;
    if resumed > 0 {
        eprintln!("resumed {resumed} unfinished instance(s) from the store");
    }
    let started = Instant::now();
    let ids: Vec<Option<String>> = match &args.batch {
        Some(file) => {
            let prefix = args.id.clone().unwrap_or_else(|| stem(file));
            (1..=inputs.len())
                .map(|i| Some(format!("{prefix}-{i}")))
                .collect()
        }
        None => vec![args.id.clone()],
    };
    let fenced = node.fenced();
    let results = runtime.block_on(async {
        tokio::select! {
            results = async {
                let results = run_all(&node, &name, inputs, ids, held).await;
                wait_for_resumed(&node).await;
                results
            } => results,
            () = fenced => super::stop_fenced(node.member_name()),
        }
    })?;
    node.leave_cluster();
    let elapsed = started.elapsed();
    if args.report {
        eprint!(
            "{}",
            sluice::observe::report::pools_table(node.pools(), elapsed)
        );
    }
    if args.metrics {
        eprint!("{}", node.render_metrics());
    }
    let mut ok = true;
    for (id, result) in &results {
        ok &= result.is_ok();
        if args.batch.is_some() {
            let line = match result {
                Ok(output) => json!({ "id": id, "output": output }),
                Err(e) => json!({ "id": id, "error": e }),
            };
            println!("{line}");
            continue;
        }
        match result {
            Ok(output) => println!("{}", serde_json::to_string_pretty(output)?),
            Err(e) => eprintln!("error: flow `{name}` {e} (instance {id})"),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Start every input, then wait for each outcome (or for the instance to be held).
async fn run_all(
    node: &Node,
    name: &str,
    inputs: Vec<Value>,
    ids: Vec<Option<String>>,
    mut events: broadcast::Receiver<InstanceEvent>,
) -> anyhow::Result<Vec<(String, Result<Value, String>)>> {
    let mut handles = Vec::with_capacity(inputs.len());
    for (input, id) in inputs.into_iter().zip(ids) {
        let mut request = StartRequest::rpc(name, serde_json::to_vec(&input)?, "cli");
        if let Some(id) = id {
            request = request.with_id(id);
        }
        let handle = node.start(request).await?;
        tracing::info!("instance {} of flow `{name}`", handle.id());
        handles.push(handle);
    }
    let mut held: HashSet<String> = HashSet::new();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        let id = handle.id().to_string();
        let outcome = handle.outcome();
        tokio::pin!(outcome);
        let result = loop {
            if held.contains(&id) {
                break Err("is held in the flow hospital (see `sluice hospital list`)".to_string());
            }
            tokio::select! {
                outcome = &mut outcome => break outcome.map(|b| sluice::model::json_of(&b)).map_err(describe),
                event = events.recv() => match event {
                    Ok(e) if e.kind == EventKind::Held => { held.insert(e.id); }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
        };
        results.push((id, result));
    }
    Ok(results)
}

/// Let instances resumed from the store (and not awaited above) finish too.
async fn wait_for_resumed(node: &Node) {
    while node.running() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe(e: FlowError) -> String {
    e.to_string()
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".into())
}

/// One JSON input per non-empty line.
fn read_batch(file: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid JSON input", file.display(), i + 1))
        })
        .collect()
}

/// Make the flow argument (a component, a flow project's directory, or a `[[flows]]` name)
/// runnable; returns the name to start.
fn register_target(node: &Node, config: &NodeConfig, flow: &str) -> anyhow::Result<String> {
    let project;
    let mut path = Path::new(flow);
    if path.is_dir() {
        project = super::build::built(path)?;
        path = &project.component;
    }
    let is_file = path.extension().is_some_and(|e| e == "wasm") || path.is_file();
    if !is_file {
        if config.flows.iter().any(|f| f.name == flow) {
            return Ok(flow.to_string());
        }
        let names: Vec<String> = config
            .flows
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect();
        let known = match names.is_empty() {
            true => "it has none".to_string(),
            false => format!("it has {}", names.join(", ")),
        };
        bail!(
            "unknown flow `{flow}`: not a .wasm file, a flow project's directory or a [[flows]] name in the config ({known})"
        );
    }
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("flow file name is not UTF-8")?
        .to_string();
    if let Some(dir) = path.parent() {
        node.add_search_dir(if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        });
    }
    match config.flows.iter().find(|f| f.name == name) {
        // The file given, run as its `[[flows]]` entry says (pool, limits, grants, retry).
        Some(entry) => {
            let settings = config
                .flow_settings(entry)
                .map_err(|e| anyhow::anyhow!("flow `{name}`: {e}"))?;
            node.register_with(&name, path, settings)?;
        }
        None => {
            node.register(&name, path, None)?;
        }
    }
    Ok(name)
}
