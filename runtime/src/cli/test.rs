//! `sluice test`: run scenario files against one flow component, in isolation.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use sluice::testing::FlowTest;
use sluice::testing::scenario::{Scenario, ScenarioResult};

/// Run scenario files against a flow component: scripted subflows, virtual time.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The flow component (`.wasm`), or a flow project's directory (its built component).
    #[arg(default_value = ".")]
    flow: PathBuf,
    /// Scenario files (TOML); for a project, its `scenarios/*.toml` by default.
    scenarios: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn run(mut args: TestArgs) -> anyhow::Result<ExitCode> {
    if args.flow.is_dir() {
        let project = super::build::built(&args.flow)?;
        if args.scenarios.is_empty() {
            args.scenarios = project.scenarios()?;
        }
        args.flow = project.component;
    } else if args.scenarios.is_empty() {
        bail!(
            "no scenario files given to run against {}",
            args.flow.display()
        );
    }
    // Every file is checked before anything runs: a bad file is an error, not a failed test.
    let scenarios = args
        .scenarios
        .iter()
        .map(|p| Scenario::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let test = FlowTest::load(&args.flow)?;
    let runtime = super::runtime()?;
    let results: Vec<ScenarioResult> = scenarios
        .iter()
        .map(|s| runtime.block_on(s.run(&test)))
        .collect();
    let mut failed = 0;
    for r in &results {
        let virtual_time = if r.slept.is_zero() {
            String::new()
        } else {
            format!(", {} virtual", humantime::format_duration(r.slept))
        };
        match &r.failure {
            None => println!(
                "PASS {} ({:.1} ms{virtual_time})",
                r.name,
                r.took.as_secs_f64() * 1e3
            ),
            Some(why) => {
                failed += 1;
                println!("FAIL {} ({})", r.name, r.path.display());
                for line in why.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if let Some(path) = &args.junit {
        let xml = junit(&args.flow, &results)
            .to_string()
            .context("cannot render JUnit XML")?;
        std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn junit(flow: &std::path::Path, results: &[ScenarioResult]) -> Report {
    let mut suite = TestSuite::new(flow.display().to_string());
    for r in results {
        let status = match &r.failure {
            None => TestCaseStatus::success(),
            Some(why) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(why.lines().next().unwrap_or("failed").to_string());
                status.set_description(why.clone());
                status
            }
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname(r.path.display().to_string())
            .set_time(r.took);
        suite.add_test_case(case);
    }
    let mut report = Report::new("sluice test");
    report.add_test_suite(suite);
    report
}
