//! The container shim: see [`super::container`] for the contract.

use std::convert::Infallible;

use super::container::ContainerSpec;
use crate::Error;

/// Sets up the calling process as the container described by `spec` and `exec`s its
/// program. Returns only on failure.
pub fn exec(spec: &ContainerSpec) -> Result<Infallible, Error> {
    // TODO(container shim): namespaces, private root, mounts and exec are being written.
    let _ = spec;
    Err(Error::Command {
        command: "run-container".into(),
        reason: "not built yet".into(),
    })
}
