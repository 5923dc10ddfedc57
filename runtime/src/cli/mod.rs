//! Command-line interface: one file per verb.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod build;
mod cancel;
mod client;
mod events;
mod new;
mod ops;
mod output;
mod remote;
mod replay;
mod run;
mod serve;
mod sse;
mod start;
mod test;
mod token;
mod triggers;
mod wit;

/// Sluice runs business flows as WebAssembly components, in named bounded pools,
/// parked off their worker at every suspension point.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    New(new::NewArgs),
    Build(build::BuildArgs),
    Run(run::RunArgs),
    Serve(serve::ServeArgs),
    Start(start::StartArgs),
    Result(remote::ResultArgs),
    Cancel(cancel::CancelArgs),
    List(remote::ListArgs),
    Pools(remote::PoolsArgs),
    /// The nodes sharing this node's database (a cluster on PostgreSQL).
    Nodes(remote::NodesArgs),
    /// The other nodes this node's flows hold sessions with, and how delivery to each goes.
    Peers(remote::PeersArgs),
    Flows(remote::FlowsArgs),
    Events(events::EventsArgs),
    Publish(events::PublishArgs),
    Triggers(triggers::TriggersArgs),
    Token(token::TokenArgs),
    Test(test::TestArgs),
    Replay(replay::ReplayArgs),
    Hospital(ops::HospitalArgs),
    Status(ops::StatusArgs),
    Export(ops::ExportArgs),
    Upgrade(ops::UpgradeArgs),
    Wit(wit::WitArgs),
    Bench(bench::BenchArgs),
}

/// Log to stderr; the default shows Sluice's own info lines and every warning.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,sluice=info",
        1 => "info,sluice=debug",
        _ => "debug,sluice=trace,cranelift=info,wasmtime=info",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// Run the chosen command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Start(args) => start::run(args),
        Command::Result(args) => remote::result(args),
        Command::Cancel(args) => cancel::run(args),
        Command::List(args) => remote::list(args),
        Command::Pools(args) => remote::pools(args),
        Command::Nodes(args) => remote::nodes(args),
        Command::Peers(args) => remote::peers(args),
        Command::Flows(args) => remote::flows(args),
        Command::Events(args) => events::follow(args),
        Command::Publish(args) => events::publish(args),
        Command::Triggers(args) => triggers::run(args),
        Command::Token(args) => token::run(args),
        Command::Test(args) => test::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Hospital(args) => ops::hospital(args),
        Command::Status(args) => ops::status(args),
        Command::Export(args) => ops::export(args),
        Command::Upgrade(args) => ops::upgrade(args),
        Command::Wit(args) => wit::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// A multi-threaded runtime with one worker per core: guest code runs on these workers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A node fenced out of its cluster stops at once: another node may run its instances now.
/// The process exits without unwinding, since connections cut by a partition may hang any
/// orderly shutdown (a store call never answered).
fn stop_fenced(name: Option<&str>) -> ! {
    let name = name.unwrap_or_default();
    tracing::error!(
        node = name,
        "node `{name}` lost its place in the cluster; exiting"
    );
    eprintln!(
        "error: node `{name}` lost its place in the cluster (no lease renewal in time, or it joined again elsewhere); exiting"
    );
    std::process::exit(3)
}
