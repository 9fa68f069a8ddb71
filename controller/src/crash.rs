//! Crash points for fault-injection tests.
//!
//! Setting `VAULT_CONTROLLER_CRASH_AT` to one or more comma-separated point names makes the
//! process abort, without unwinding or cleaning up, when it reaches that point: the way a
//! `kill -9` or a node failure would stop it. Unset, every point is a no-op.

use std::sync::OnceLock;

/// The environment variable that names the crash points.
pub const ENV: &str = "VAULT_CONTROLLER_CRASH_AT";

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
}

impl CrashPoint {
    /// Every crash point, in the order the flow reaches them.
    pub const ALL: [CrashPoint; 4] = [
        Self::BeforeInit,
        Self::AfterInitResponse,
        Self::BetweenKeyWrites,
        Self::AfterRootToken,
    ];

    /// The name used in [`ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeInit => "before-init",
            Self::AfterInitResponse => "after-init-response",
            Self::BetweenKeyWrites => "between-key-writes",
            Self::AfterRootToken => "after-root-token",
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
        // stderr, not tracing: the subscriber may buffer, and the test reads this line.
        eprintln!("crash point {} reached: aborting", point.name());
        std::process::abort();
    }
}
