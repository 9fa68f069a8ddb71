//! `vault-controller`: the operator's controller binary.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Runs and unseals Vault clusters described by `Vault` resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the CustomResourceDefinition of `Vault` as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            let crd = vault_api::crd_yaml().context("rendering the CustomResourceDefinition")?;
            std::io::stdout()
                .write_all(crd.as_bytes())
                .context("writing the CRD to stdout")?;
        }
    }
    Ok(())
}
