//! `sluice build`: build a flow project into its component with its language's tool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice::project::{self, Project, Tools};

/// Build the flow project in DIR into a component named after the flow.
///
/// Rust: cargo build --target wasm32-wasip2 --release. Python: componentize-py. JavaScript:
/// componentize-js. The componentizers are the pinned versions, installed on first use into
/// $SLUICE_TOOLS_DIR (default ~/.cache/sluice/tools).
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.dir)?;
    let tools = Tools::from_env()?;
    let component = project::build(&project, &tools)?;
    println!(
        "Built the {} flow `{}`: {}",
        project.lang.title(),
        project.name,
        component.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The flow project in `dir`, built, for `sluice run` and `sluice test`; warns when the
/// flow's source changed after its component was built.
pub fn built(dir: &Path) -> anyhow::Result<Project> {
    let project = Project::open(dir)?;
    let component = project.built_component()?;
    if project.is_stale() {
        eprintln!(
            "warning: {} changed after {} was built: run `sluice build` to test and run the change",
            project.source.display(),
            component.display()
        );
    }
    Ok(project)
}
