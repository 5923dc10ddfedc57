//! `sluice run`: run one flow to completion in an embedded node and print its output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use sluice::{Node, NodeConfig, StartRequest};

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
    /// After the run, print a per-pool report of what ran where to stderr.
    #[arg(long)]
    report: bool,
    /// After the run, print the node's metrics (Prometheus text format) to stderr.
    #[arg(long)]
    metrics: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .with_context(|| format!("invalid --input JSON `{}`", args.input))?;
    let config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::parse("", Path::new("<defaults>"), Path::new("."))?,
    };
    let runtime = super::runtime()?;
    let _guard = runtime.enter();
    let node = runtime.block_on(Node::new(&config))?;
    let name = register_target(&node, &config, &args.flow)?;
    let started = Instant::now();
    let outcome =
        runtime.block_on(node.run(StartRequest::rpc(&name, serde_json::to_vec(&input)?, "cli")))?;
    let elapsed = started.elapsed();
    if args.report {
        eprint!("{}", sluice::report::pools_table(node.pools(), elapsed));
    }
    if args.metrics {
        eprint!("{}", node.render_metrics());
    }
    match outcome {
        Ok(bytes) => {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
                Err(_) => println!("{}", String::from_utf8_lossy(&bytes)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: flow `{name}` {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Make the flow argument runnable; returns the name to start.
fn register_target(node: &Node, config: &NodeConfig, flow: &str) -> anyhow::Result<String> {
    let path = Path::new(flow);
    let is_file = path.extension().is_some_and(|e| e == "wasm") || path.is_file();
    if !is_file {
        if config.flows.iter().any(|f| f.name == flow) {
            return Ok(flow.to_string());
        }
        bail!("unknown flow `{flow}`: not a .wasm file and not a [[flows]] name in the config");
    }
    if !path.exists() {
        bail!("{flow}: no such file");
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
    let tag = config
        .flows
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.pool.clone());
    node.register(&name, path, tag)?;
    Ok(name)
}
