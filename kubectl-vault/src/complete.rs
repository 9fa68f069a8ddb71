//! Shell completion: scripts for `kubectl-vault` itself (`completion bash|zsh|fish`), and
//! the `__complete` protocol that kubectl speaks to plugins for `kubectl vault <TAB>`.
//!
//! kubectl runs `kubectl_complete-vault ARGS...` (found on PATH) with the words after
//! `kubectl vault`, the last one being the word under the cursor, and expects Cobra's answer:
//! one candidate a line (`value<TAB>description`), then `:DIRECTIVE`.

use clap::{Arg, ArgAction, Command, CommandFactory, ValueHint};
use clap_complete::Shell;

use crate::cli::{Cli, ClusterArgs};

/// The plugin's binary, as kubectl finds it on PATH.
pub const BIN_NAME: &str = "kubectl-vault";

/// Cobra's directive: complete nothing more than the candidates (no file names).
pub const NO_FILE_COMPLETION: u32 = 4;
/// Cobra's directive: let the shell complete file names.
pub const DEFAULT: u32 = 0;

/// The completion script of `kubectl-vault` for `shell`.
pub fn script(shell: Shell) -> String {
    // clap_complete's bash script mixes up the function names of a binary with a `-` in its
    // name, so bash's is written for `kubectl_vault` and then bound to `kubectl-vault`.
    let bin_name = match shell {
        Shell::Bash => "kubectl_vault",
        _ => BIN_NAME,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), bin_name, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => script.replace(" kubectl_vault\n", &format!(" {BIN_NAME}\n")),
        _ => script,
    }
}

/// What to offer for the word under the cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Candidates, each with an optional description.
    pub candidates: Vec<(String, Option<String>)>,
    /// Cobra's directive.
    pub directive: u32,
    /// The word is a Vault's name: the names in the cluster that start with this prefix
    /// should be added, which needs the cluster (see [`Completion::cluster`]).
    pub vault_names: Option<String>,
    /// `--kubeconfig`, `--context` and `-n` as typed so far, to ask the cluster with.
    pub cluster: ClusterArgs,
}

/// Whether `word` asks for completion (`__complete`), and with descriptions or without
/// (`__completeNoDesc`), as Cobra's protocol names them.
pub fn protocol(word: &str) -> Option<bool> {
    match word {
        "__complete" => Some(true),
        "__completeNoDesc" => Some(false),
        _ => None,
    }
}

impl Completion {
    /// The answer in Cobra's `__complete` format, with or without descriptions.
    pub fn render(&self, descriptions: bool) -> String {
        let mut out = String::new();
        for (value, help) in &self.candidates {
            out.push_str(value);
            if let Some(help) = help.as_ref().filter(|_| descriptions) {
                out.push('\t');
                out.push_str(help);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// Completes the last of `words` (the words after `kubectl vault`) against `root`.
pub fn complete(mut root: Command, words: &[String]) -> Completion {
    // Building propagates the global flags to every subcommand.
    root.build();
    let (current, before) = match words.split_last() {
        Some((current, before)) => (current.as_str(), before),
        None => ("", &[][..]),
    };

    let mut command = &root;
    let mut pending: Option<&Arg> = None;
    let mut positionals = 0;
    let mut cluster = ClusterArgs::default();
    for word in before {
        // The word is the value of the flag before it.
        if let Some(arg) = pending.take() {
            remember(&mut cluster, arg, word);
            continue;
        }
        if word.starts_with('-') && word.len() > 1 {
            let arg = flag(command, word);
            if let (Some(arg), Some((_, value))) = (arg, word.split_once('=')) {
                remember(&mut cluster, arg, value);
            }
            pending = arg.filter(|a| takes_value(a) && !word.contains('='));
        } else if let Some(sub) = command.find_subcommand(word) {
            command = sub;
            positionals = 0;
        } else {
            positionals += 1;
        }
    }

    let answer = |completion: Completion| Completion {
        cluster: cluster.clone(),
        ..completion
    };
    if let Some(arg) = pending {
        return answer(values(arg, current, ""));
    }
    if let Some((name, value)) = current.split_once('=')
        && name.starts_with("--")
        && let Some(arg) = flag(command, name)
    {
        return answer(values(arg, value, &format!("{name}=")));
    }
    if current.starts_with('-') {
        return answer(flags(command, current));
    }

    let mut candidates: Vec<(String, Option<String>)> = Vec::new();
    if positionals == 0 {
        candidates.extend(
            command
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name().starts_with(current))
                .map(|s| (s.get_name().to_string(), about(s))),
        );
    }
    let positional = command
        .get_positionals()
        .filter(|a| !a.is_hide_set())
        .nth(positionals);
    if let Some(arg) = positional {
        let mut values = values(arg, current, "");
        values.candidates.splice(0..0, candidates);
        if command.get_name() == "status" && arg.get_id() == "name" {
            values.vault_names = Some(current.to_string());
        }
        return answer(values);
    }
    answer(Completion {
        candidates,
        directive: NO_FILE_COMPLETION,
        ..Completion::default()
    })
}

/// Keeps the value of a flag that says how to reach the cluster.
fn remember(cluster: &mut ClusterArgs, arg: &Arg, value: &str) {
    match arg.get_id().as_str() {
        "kubeconfig" => cluster.kubeconfig = Some(value.into()),
        "context" => cluster.context = Some(value.to_string()),
        "namespace" => cluster.namespace = Some(value.to_string()),
        _ => {}
    }
}

/// The flag a word names (`--name`, `--name=value`, `-n`), among the command's.
fn flag<'a>(command: &'a Command, word: &str) -> Option<&'a Arg> {
    let name = word.split_once('=').map_or(word, |(name, _)| name);
    command
        .get_arguments()
        .find(|arg| match name.strip_prefix("--") {
            Some(long) => arg.get_long() == Some(long),
            None => {
                let short = name.strip_prefix('-').and_then(|s| s.chars().next());
                short.is_some() && arg.get_short() == short
            }
        })
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

/// The flags of a command that start with `prefix`.
fn flags(command: &Command, prefix: &str) -> Completion {
    let candidates = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
        .filter_map(|a| {
            let name = format!("--{}", a.get_long()?);
            name.starts_with(prefix)
                .then(|| (name, a.get_help().map(|h| h.to_string())))
        })
        .collect();
    Completion {
        candidates,
        directive: NO_FILE_COMPLETION,
        ..Completion::default()
    }
}

/// The values an argument takes that start with `prefix`, written after `lead`; file names
/// are left to the shell.
fn values(arg: &Arg, prefix: &str, lead: &str) -> Completion {
    let paths = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    );
    let candidates = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set() && v.get_name().starts_with(prefix))
        .map(|v| {
            let help = v.get_help().map(|h| h.to_string());
            (format!("{lead}{}", v.get_name()), help)
        })
        .collect();
    Completion {
        candidates,
        directive: if paths { DEFAULT } else { NO_FILE_COMPLETION },
        ..Completion::default()
    }
}

fn about(command: &Command) -> Option<String> {
    command.get_about().map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete_words(words: &[&str]) -> Completion {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        complete(Cli::command(), &words)
    }

    fn names(completion: &Completion) -> Vec<&str> {
        completion
            .candidates
            .iter()
            .map(|(v, _)| v.as_str())
            .collect()
    }

    #[test]
    fn subcommands() {
        let c = complete_words(&[""]);
        assert_eq!(
            names(&c),
            [
                "init",
                "validate",
                "status",
                "install",
                "completion",
                "version",
                "help"
            ]
        );
        assert_eq!(c.directive, NO_FILE_COMPLETION);
        assert_eq!(names(&complete_words(&["st"])), ["status"]);
    }

    #[test]
    fn flags_and_their_values() {
        let c = complete_words(&["init", "--unse"]);
        assert_eq!(names(&c), ["--unseal"]);
        let c = complete_words(&["init", "--unseal", "a"]);
        assert_eq!(names(&c), ["aws", "azure", "alibaba"]);
        let c = complete_words(&["-n", "ns", "status", "-o", ""]);
        assert_eq!(names(&c), ["table", "json", "yaml"]);
        let c = complete_words(&["status", "--output=j"]);
        assert_eq!(names(&c), ["--output=json"]);
        let c = complete_words(&["completion", ""]);
        assert!(names(&c).contains(&"zsh"));
    }

    #[test]
    fn names_of_vaults_come_from_the_cluster_named_so_far() {
        let c = complete_words(&["--context", "prod", "status", "-n=vault", "va"]);
        assert_eq!(c.vault_names.as_deref(), Some("va"));
        assert_eq!(c.cluster.context.as_deref(), Some("prod"));
        assert_eq!(c.cluster.namespace.as_deref(), Some("vault"));
        assert_eq!(complete_words(&["init", ""]).vault_names, None);
    }

    #[test]
    fn file_arguments_leave_completion_to_the_shell() {
        let c = complete_words(&["validate", "-f", ""]);
        assert_eq!(c.directive, DEFAULT);
        assert!(c.candidates.is_empty());
    }

    #[test]
    fn cobra_format() {
        let c = Completion {
            candidates: vec![("a".into(), Some("first".into())), ("b".into(), None)],
            directive: 4,
            ..Completion::default()
        };
        assert_eq!(c.render(true), "a\tfirst\nb\n:4\n");
        assert_eq!(c.render(false), "a\nb\n:4\n");
    }
}
