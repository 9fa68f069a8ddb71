//! Renders a [`StatusReport`] as a table, JSON or YAML. Pure: the time and whether to colour
//! are arguments, so the output is tested against golden files.

use k8s_openapi::jiff::Timestamp;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Padding, Style};
use vault_api::status::RaftRole;

use super::{PodReport, StatusReport, VaultReport};
use crate::cli::StatusFormat;

/// A certificate closer to expiry than this is shown as a warning.
const EXPIRY_WARNING_SECONDS: i64 = 7 * 24 * 3600;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// JSON serialisation failed.
    #[error("writing the status as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML serialisation failed.
    #[error("writing the status as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Writes the report in `format`; `now` dates certificate expiry and `colour` adds ANSI
/// colours to the table.
pub fn render(
    report: &StatusReport,
    format: StatusFormat,
    now: Timestamp,
    colour: bool,
) -> Result<String, RenderError> {
    match format {
        StatusFormat::Table => Ok(table(report, now, colour)),
        StatusFormat::Json => Ok(serde_json::to_string_pretty(report)? + "\n"),
        StatusFormat::Yaml => Ok(serde_saphyr::to_string(report)?),
    }
}

/// A summary line, the conditions that do not hold, and a table of pods, per Vault.
pub fn table(report: &StatusReport, now: Timestamp, colour: bool) -> String {
    if report.vaults.is_empty() {
        return match &report.namespace {
            Some(namespace) => format!("No Vault resources found in {namespace} namespace.\n"),
            None => "No Vault resources found.\n".to_string(),
        };
    }
    let paint = Painter(colour);
    let sections: Vec<String> = report
        .vaults
        .iter()
        .map(|vault| vault_section(vault, now, paint))
        .collect();
    sections.join("\n")
}

fn vault_section(vault: &VaultReport, now: Timestamp, paint: Painter) -> String {
    let mut out = summary_line(vault, paint);
    out.push('\n');
    for condition in vault.conditions.iter().filter(|c| c.status != "True") {
        let why = condition
            .message
            .as_deref()
            .or(condition.error.as_deref())
            .unwrap_or("");
        let reason = condition.reason.as_deref().unwrap_or(&condition.status);
        out.push_str(&format!("  {} {reason}: {why}\n", condition.type_));
    }

    if vault.pods.is_empty() {
        out.push_str("  no pods\n");
    } else {
        out.push_str(&pod_table(&vault.pods, now, paint));
        out.push('\n');
    }

    for pod in &vault.pods {
        if let Some(why) = &pod.unreachable {
            let line = format!("{}: unreachable: {why}", pod.vault.name);
            out.push_str(&format!("  {}\n", paint.red(&line)));
        }
    }
    for problem in &vault.problems {
        out.push_str(&format!("  {}\n", paint.yellow(problem)));
    }
    out
}

/// `vault/NAME in NAMESPACE: size 3, ready 3/3, sealed 0, leader ..., version ...,
/// key store ..., Ready=True ...`.
fn summary_line(vault: &VaultReport, paint: Painter) -> String {
    let ready = format!("ready {}/{}", vault.ready_pods, vault.size);
    let ready = if vault.ready_pods < vault.size {
        paint.yellow(&ready)
    } else {
        paint.green(&ready)
    };
    let sealed = format!("sealed {}", vault.sealed_pods);
    let sealed = if vault.sealed_pods > 0 {
        paint.red(&sealed)
    } else {
        sealed
    };
    let mut parts = vec![
        format!("size {}", vault.size),
        ready,
        sealed,
        format!("leader {}", vault.leader.as_deref().unwrap_or("none")),
        format!("version {}", vault.version.as_deref().unwrap_or("unknown")),
        format!("key store {}", vault.key_store),
    ];
    let conditions: Vec<String> = vault
        .conditions
        .iter()
        .map(|c| {
            let text = format!("{}={}", c.type_, c.status);
            if c.status == "True" {
                text
            } else {
                paint.yellow(&text)
            }
        })
        .collect();
    if conditions.is_empty() {
        parts.push("no conditions yet".to_string());
    } else {
        parts.push(conditions.join(" "));
    }
    let title = paint.bold(&format!("vault/{} in {}", vault.name, vault.namespace));
    format!("{title}: {}", parts.join(", "))
}

fn pod_table(pods: &[PodReport], now: Timestamp, paint: Painter) -> String {
    let mut builder = Builder::default();
    builder.push_record([
        "POD",
        "NODE",
        "ZONE",
        "READY",
        "INITIALISED",
        "SEALED",
        "ROLE",
        "VOTER",
        "VERSION",
        "RESTARTS",
        "CERTIFICATE EXPIRY",
    ]);
    for pod in pods {
        builder.push_record(pod_row(pod, now, paint));
    }
    let mut table = builder.build();
    // kubectl's look: no borders, columns three spaces apart, no trailing blanks.
    table
        .with(Style::blank())
        .with(Padding::new(0, 2, 0, 0))
        .modify(Columns::last(), Padding::zero());
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n")
}

fn pod_row(pod: &PodReport, now: Timestamp, paint: Painter) -> Vec<String> {
    let vault = &pod.vault;
    let unreachable = pod.unreachable.is_some();
    let unknown = |text: String| if unreachable { "?".to_string() } else { text };

    let ready = if pod.ready {
        "yes".to_string()
    } else {
        paint.yellow("no")
    };
    let sealed = match vault.sealed {
        Some(true) => paint.red("yes"),
        Some(false) => paint.green("no"),
        None => "?".to_string(),
    };
    let role = match (unreachable, vault.raft_role) {
        (true, _) => paint.red("unreachable"),
        (false, Some(RaftRole::Leader)) => paint.green("leader"),
        (false, Some(RaftRole::Follower)) => "follower".to_string(),
        (false, Some(RaftRole::Standby)) => "standby".to_string(),
        (false, Some(RaftRole::Unknown)) => "unknown".to_string(),
        (false, None) => "-".to_string(),
    };
    vec![
        vault.name.clone(),
        pod.node.clone().unwrap_or_else(|| "-".to_string()),
        pod.zone.clone().unwrap_or_else(|| "-".to_string()),
        ready,
        unknown(yes_no(vault.initialized)),
        unknown(sealed),
        role,
        yes_no(vault.voter),
        vault.version.clone().unwrap_or_else(|| "-".to_string()),
        pod.restarts.to_string(),
        expiry(pod, now, paint),
    ]
}

fn yes_no(value: Option<bool>) -> String {
    match value {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
    .to_string()
}

/// `2027-01-31 (in 59d)`, yellow within a week of expiry, red once expired.
fn expiry(pod: &PodReport, now: Timestamp, paint: Painter) -> String {
    let Some(expiry) = &pod.certificate_expiry else {
        return "-".to_string();
    };
    let left = expiry.0.as_second() - now.as_second();
    let date = expiry.0.strftime("%Y-%m-%d").to_string();
    if left <= 0 {
        paint.red(&format!("{date} (expired)"))
    } else if left < EXPIRY_WARNING_SECONDS {
        paint.yellow(&format!("{date} (in {})", short_duration(left)))
    } else {
        format!("{date} (in {})", short_duration(left))
    }
}

/// Days, else hours, else minutes.
fn short_duration(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s => format!("{}m", (s / 60).max(1)),
    }
}

/// Adds ANSI colours when on.
#[derive(Clone, Copy)]
struct Painter(bool);

impl Painter {
    fn paint(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}
