//! `sluice token`: make an API token; print it once, with the config entry that holds
//! only its hash.

use std::process::ExitCode;

use sluice::model::Permission;

/// Make an API token and print it with its `[[server.tokens]]` entry.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Who will hold it (shown in logs instead of the token).
    #[arg(long)]
    name: String,
    /// What it may do: start:<flow>, start:*, read, cancel, operate, publish:<topic>.
    #[arg(long, value_delimiter = ',', required = true)]
    permissions: Vec<String>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    for p in &args.permissions {
        p.parse::<Permission>().map_err(anyhow::Error::msg)?;
    }
    let (token, hash) = sluice::api::new_token();
    let permissions: Vec<String> = args
        .permissions
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    println!("token (shown once; keep it secret): {token}");
    println!();
    println!("[[server.tokens]]");
    println!("name = \"{}\"", args.name);
    println!("sha256 = \"{hash}\"");
    println!("permissions = [{}]", permissions.join(", "));
    Ok(ExitCode::SUCCESS)
}
