//! The forward from a loopback port on the host into the cluster's network namespace.
//!
//! The listening socket is opened in the host's namespace first; then the process enters the
//! cluster's namespace, so every connection it makes goes to the API server there. A socket
//! stays in the namespace it was made in.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use crate::{Error, net};

/// Listens on a free loopback port, writes the port to `port_file`, and forwards every
/// connection to `target` inside `netns`, until killed.
pub fn run(netns: &str, target: SocketAddr, port_file: &Path) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Command {
        command: "forward".into(),
        reason: e.to_string(),
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Command {
            command: "forward".into(),
            reason: e.to_string(),
        })?
        .port();
    listener.set_nonblocking(true).map_err(|e| Error::Command {
        command: "forward".into(),
        reason: e.to_string(),
    })?;

    let ns_path = Path::new("/run/netns").join(netns);
    let ns = std::fs::File::open(&ns_path).map_err(|e| Error::io("opening", &ns_path, e))?;
    net::enter(&ns)?;

    // The runtime's threads are made after entering, so they are in the namespace too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::Command {
            command: "forward".into(),
            reason: e.to_string(),
        })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Command {
            command: "forward".into(),
            reason: e.to_string(),
        })?;
        std::fs::write(port_file, port.to_string())
            .map_err(|e| Error::io("writing", port_file, e))?;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}
