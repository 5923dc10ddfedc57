//! `sluice serve`: a long-running node with the HTTP API, until SIGTERM (or a drain over
//! the API) drains it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice::{Node, NodeConfig};

/// Run a node as a service: recover its store, serve the API, drain on SIGTERM.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Node configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Listen here instead of `[server] listen` (port 0: any free port).
    #[arg(long)]
    listen: Option<String>,
    /// Durable store directory (overrides `[node] data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = NodeConfig::load(&args.config)?;
    if let Some(dir) = args.data_dir {
        config.node.data_dir = Some(dir);
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let addr = config.server.listen_addr().map_err(anyhow::Error::msg)?;
    if config.server.tokens.is_empty() {
        tracing::warn!(
            "no [[server.tokens]]: every /v1 request will be refused (make one with `sluice token`)"
        );
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let node = Node::new(&config).await?;
        // Before recovery: the event triggers observe every event resumed instances publish.
        let triggers = match std::env::var_os("SLUICE_TEST_CLOCK") {
            // Tests move the schedules' clock by writing unix ms to this file.
            Some(file) => {
                let clock = sluice::triggers::FileClock::new(file.into())
                    .context("SLUICE_TEST_CLOCK: cannot read the clock file")?;
                sluice::triggers::Triggers::start_with_clock(
                    &node,
                    &config.triggers,
                    Arc::new(clock),
                )?
            }
            None => sluice::triggers::Triggers::start(&node, &config.triggers)?,
        };
        let resumed = node.recover().await?;
        if resumed > 0 {
            tracing::info!("resumed {resumed} unfinished instance(s) from the store");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        // One line a supervisor (or a test) can wait for.
        println!("sluice serving on http://{bound}");
        tracing::info!("serving on http://{bound}");
        let state = Arc::new(sluice::api::ApiState::for_server(
            node,
            &config.server,
            triggers,
        ));
        let console = sluice::console::router(state.clone());
        let node = state.node().clone();
        let fenced = node.fenced();
        let served = sluice::api::serve(
            state,
            console,
            config.server.grace.0,
            listener,
            stop_signal(),
        );
        tokio::select! {
            served = served => served?,
            // Another node may take this one's work now: stop at once, writing nothing.
            () = fenced => super::stop_fenced(node.member_name()),
        }
        // Drained: the other nodes take over what is left at once.
        node.leave_cluster();
        anyhow::Ok(())
    })?;
    println!("sluice stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await,
            };
        tokio::select! {
            () = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
