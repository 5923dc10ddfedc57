//! `sluice new`: a new flow project that builds and passes its own scenarios as it stands.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::project::{self, Lang, RustSdk};

/// Create a flow project: the flow, its SDK, two scenarios and a README.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The flow's name (lowercase letters, digits, `_`), or a path ending in it: the
    /// directory to create.
    name: PathBuf,
    /// rust, python or js.
    #[arg(long, default_value = "rust")]
    lang: String,
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let lang: Lang = args.lang.parse()?;
    let sdk = RustSdk::of_this_build();
    let created = project::create(&args.name, lang, &sdk)?;
    let name = &created.name;
    let dir = created.dir.display();
    println!(
        "Created the {} flow `{name}` in {dir}/:",
        created.lang.title()
    );
    for file in &created.files {
        println!("  {}", file.display());
    }
    println!(
        "Its name is `{name}`: a flow's name is its component's file stem ({}), and other flows call it by that name.",
        created.component.display()
    );
    if sdk == RustSdk::Registry && lang == Lang::Rust {
        println!(
            "Note: sluice-flow is not on crates.io yet; point its `path` in Cargo.toml at a Sluice checkout's guest-flows/sdk."
        );
    }
    println!("Next:");
    println!("  cd {dir}");
    println!(
        "  sluice build                        # -> {}",
        created.component.display()
    );
    println!("  sluice test                         # scenarios/*.toml");
    println!("  sluice run . --input '{{\"from\":3}}'   # counts down, a second a step");
    println!(
        "The flow is {}; the guide is docs/first-flow.md.",
        created.source.display()
    );
    Ok(ExitCode::SUCCESS)
}
