//! Crash points for fault-injection tests.
//!
//! Setting `VAULT_CONTROLLER_CRASH_AT` to one or more comma-separated point names makes the
//! process abort, without unwinding or cleaning up, when it reaches that point: the way a
//! `kill -9` or a node failure would stop it. Unset, every point is a no-op.
//!
//! With `VAULT_CONTROLLER_CRASH_RECORD` naming a file, each point stops the process once:
//! its name is appended to the file before the abort, and a point named there is passed.
//! A controller in a pod, restarted by the kubelet with the same environment, then goes
//! on to the next point instead of stopping at the same one forever.

use std::io::Write;
use std::sync::OnceLock;

/// The environment variable that names the crash points.
pub const ENV: &str = "VAULT_CONTROLLER_CRASH_AT";

/// The environment variable that names the file of points already reached.
pub const RECORD_ENV: &str = "VAULT_CONTROLLER_CRASH_RECORD";

/// The steps of initialisation at which a test may stop the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The init-intent marker is written, `sys/init` is not yet called.
    BeforeInit,
    /// Vault has answered `sys/init`; no key is stored yet.
    AfterInitResponse,
    /// The first key share is stored, the others are not.
    BetweenKeyWrites,
    /// Every key share and the root token are stored; the initialisation is not yet
    /// marked complete.
    AfterRootToken,
    /// A sealed pod has taken one key share of those it needs.
    BetweenUnsealKeys,
}

impl CrashPoint {
    /// Every crash point, in the order the flow reaches them.
    pub const ALL: [CrashPoint; 5] = [
        Self::BeforeInit,
        Self::AfterInitResponse,
        Self::BetweenKeyWrites,
        Self::AfterRootToken,
        Self::BetweenUnsealKeys,
    ];

    /// The name used in [`ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeInit => "before-init",
            Self::AfterInitResponse => "after-init-response",
            Self::BetweenKeyWrites => "between-key-writes",
            Self::AfterRootToken => "after-root-token",
            Self::BetweenUnsealKeys => "between-unseal-keys",
        }
    }
}

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .collect()
    })
}

/// Aborts the process when `point` is named in [`ENV`].
pub fn reached(point: CrashPoint) {
    if armed().iter().any(|name| name == point.name()) {
        if let Some(record) = std::env::var_os(RECORD_ENV) {
            let reached = std::fs::read_to_string(&record).unwrap_or_default();
            if reached.lines().any(|line| line == point.name()) {
                return;
            }
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&record)
                .and_then(|mut file| {
                    writeln!(file, "{}", point.name())?;
                    file.sync_all()
                });
            if let Err(error) = written {
                // Crashing anyway would loop for ever; a test sees the missing crash.
                eprintln!("crash point {}: recording it failed: {error}", point.name());
                return;
            }
        }
        // stderr, not tracing: the subscriber may buffer, and the test reads this line.
        eprintln!("crash point {} reached: aborting", point.name());
        std::process::abort();
    }
}
