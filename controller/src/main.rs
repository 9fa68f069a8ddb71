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
    /// Runs the controller: reconciles every `Vault` into its Kubernetes objects.
    Run(Box<vault_controller::runner::RunArgs>),
    /// Renders a Vault configuration file, expanding `${.Env.NAME}` and `${env "NAME"}`
    /// (what the init container of each Vault pod runs).
    Template(vault_controller::runner::TemplateArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            let crd = vault_api::crd_yaml().context("rendering the CustomResourceDefinition")?;
            std::io::stdout()
                .write_all(crd.as_bytes())
                .context("writing the CRD to stdout")?;
        }
        Command::Run(args) => {
            vault_controller::runner::init_logging(&args)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(vault_controller::runner::run(*args))?;
        }
        Command::Template(args) => {
            vault_controller::template::render_file(&args.input, &args.output)?;
        }
    }
    Ok(())
}
