//! The `kubectl-vault` binary: parses the command line, runs the command, and prints errors
//! last, in red on a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use kubectl_vault::cli::{
    Cli, ClusterArgs, ColorChoice, Command, InitArgs, ManifestFormat, StatusArgs, StatusFormat,
};
use kubectl_vault::cluster::Cluster;
use kubectl_vault::status::fetch::{Query, fetch};
use kubectl_vault::status::render::render;
use kubectl_vault::{complete, init, install, validate};
use serde_json::{Value, json};

/// The flags that do not count as "flags given" when `init` decides whether to prompt.
const NOT_CHOICES: &[&str] = &["name", "kubeconfig", "context", "namespace", "color"];

fn main() -> ExitCode {
    // kube's TLS needs a process-wide crypto provider and its features choose none (the
    // workspace builds only ring); without one every command that talks to a cluster
    // panics. An error means one is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // kubectl's completion protocol is answered before clap parses, so that it stays out of
    // the help and the generated completion scripts.
    let words: Vec<String> = std::env::args().skip(1).collect();
    if let Some((first, rest)) = words.split_first()
        && let Some(descriptions) = complete::protocol(first)
    {
        let mut completion = complete::complete(Cli::command(), rest);
        if let Some(prefix) = completion.vault_names.clone() {
            let names = vault_names(&completion.cluster);
            let names = names.into_iter().filter(|name| name.starts_with(&prefix));
            completion.candidates.extend(names.map(|name| (name, None)));
        }
        let _ = out(&completion.render(descriptions));
        return ExitCode::SUCCESS;
    }

    // Usage lines read as the user types the command: through kubectl.
    let matches = Cli::command().bin_name("kubectl vault").get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let colour = colour(cli.color, std::io::stderr().is_terminal());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e).context("starting"), colour),
    };
    match runtime.block_on(run(cli, &matches)) {
        Ok(code) => code,
        Err(e) => fail(&e, colour),
    }
}

/// The Vaults in the namespace, or none when the cluster does not answer within a second:
/// completion must not hang the shell.
fn vault_names(cluster_args: &ClusterArgs) -> Vec<String> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let names = async {
            let cluster = Cluster::connect(cluster_args).await.ok()?;
            kubectl_vault::status::fetch::vault_names(&cluster)
                .await
                .ok()
        };
        let names = tokio::time::timeout(Duration::from_secs(1), names).await;
        names.ok().flatten().unwrap_or_default()
    })
}

/// Prints an error and its causes, in red on a terminal. A cause whose text the message
/// already holds is not repeated.
fn fail(error: &anyhow::Error, colour: bool) -> ExitCode {
    let mut text = String::from("error: ");
    for (i, cause) in error.chain().enumerate() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if i > 0 {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    if colour {
        eprintln!("\x1b[31m{text}\x1b[0m");
    } else {
        eprintln!("{text}");
    }
    ExitCode::FAILURE
}

/// True when output should be coloured: asked for, or on a terminal without NO_COLOR.
fn colour(choice: ColorChoice, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

async fn run(cli: Cli, matches: &ArgMatches) -> Result<ExitCode> {
    match cli.command {
        Command::Init(args) => {
            let flags_given = matches
                .subcommand_matches("init")
                .is_some_and(choices_given);
            run_init(&cli.cluster, *args, flags_given).await
        }
        Command::Validate(args) => {
            let report = validate::check_paths(&args.files, args.recursive)?;
            out(&report.render())?;
            Ok(if report.has_errors() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Status(args) => {
            let colour = colour(cli.color, std::io::stdout().is_terminal());
            run_status(&cli.cluster, &args, colour).await
        }
        Command::Install(args) => {
            for file in install::missing() {
                eprintln!("note: manifests/{file} was not built into this plugin");
            }
            let overrides = install::Overrides {
                namespace: cli.cluster.namespace.clone(),
                images: args.images.clone(),
            };
            let documents = install::customise(install::documents()?, &overrides)?;
            if args.dry_run {
                out(&install::to_yaml(&documents)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let cluster = Cluster::connect(&cli.cluster).await?;
            for document in &documents {
                let applied = install::apply_one(&cluster, document, args.force_conflicts);
                out(&format!("{} serverside-applied\n", applied.await?))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion(args) => {
            out(&complete::script(args.shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            out(&format!("kubectl-vault {}\n", kubectl_vault::VERSION))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// True when `init` was given any choice on the command line (then it does not prompt).
fn choices_given(matches: &ArgMatches) -> bool {
    matches
        .ids()
        .filter(|id| !NOT_CHOICES.contains(&id.as_str()))
        .any(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
}

async fn run_init(
    cluster_args: &ClusterArgs,
    mut args: InitArgs,
    flags_given: bool,
) -> Result<ExitCode> {
    if !flags_given && std::io::stdin().is_terminal() {
        args = init::ask(args)?;
    }
    let external_config = match &args.external_config {
        Some(path) => Some(init::read_external_config(path)?),
        None => None,
    };

    if !args.apply {
        let namespace = cluster_args.namespace.as_deref();
        let output = init::build(&args, namespace, external_config)?;
        print_warnings(&output.warnings);
        out(&manifests(&output.objects, args.output)?)?;
        return Ok(ExitCode::SUCCESS);
    }

    let cluster = Cluster::connect(cluster_args).await?;
    let output = init::build(&args, Some(&cluster.namespace), external_config)?;
    print_warnings(&output.warnings);
    for object in &output.objects {
        let applied = install::apply_one(&cluster, object, false).await?;
        out(&format!("{applied} serverside-applied\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to standard output; false when its reader has gone (`| head`). That is no
/// error: the command carries on, printing nothing more (an install stopped half-way would
/// be worse), rather than panicking as `print!` does.
fn out(text: &str) -> std::io::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

fn print_warnings(warnings: &[vault_api::Warning]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// The objects as YAML documents, or JSON (a `List` when there are several).
fn manifests(objects: &[Value], format: ManifestFormat) -> Result<String> {
    match (format, objects) {
        (ManifestFormat::Json, [one]) => Ok(serde_json::to_string_pretty(one)? + "\n"),
        (ManifestFormat::Json, many) => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": many});
            Ok(serde_json::to_string_pretty(&list)? + "\n")
        }
        (ManifestFormat::Yaml, objects) => {
            let documents: Result<Vec<String>, _> =
                objects.iter().map(serde_saphyr::to_string).collect();
            Ok(documents.context("writing YAML")?.join("---\n"))
        }
    }
}

async fn run_status(
    cluster_args: &ClusterArgs,
    args: &StatusArgs,
    colour: bool,
) -> Result<ExitCode> {
    let cluster = Cluster::connect(cluster_args).await?;
    let query = Query {
        name: args.name.clone(),
        all_namespaces: args.all_namespaces,
        pod_timeout: Duration::from_secs(args.pod_timeout),
    };
    loop {
        let report = fetch(&cluster, &query).await?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let text = render(&report, args.output, now, colour)?;
        if !args.watch {
            out(&text)?;
            return Ok(ExitCode::SUCCESS);
        }
        let frame = match args.output {
            // Redraw in place on a terminal, else append snapshots.
            StatusFormat::Table if std::io::stdout().is_terminal() => {
                format!("\x1b[2J\x1b[H{text}")
            }
            StatusFormat::Yaml => format!("---\n{text}"),
            _ => format!("{text}\n"),
        };
        // Nobody reads any more (`--watch | head`): the watch is over.
        if !out(&frame)? {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
