//! A real Kubernetes control plane run as local processes, for tests and demos on machines
//! with no container runtime.
//!
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler run in a network
//! namespace of the cluster's own, on a bridge that carries the pod network: Kubernetes
//! refuses loopback addresses in EndpointSlices, so pods and the API server's advertised
//! address cannot live on the host's loopback. A forward from a loopback port on the host
//! gives kubectl and the tests the API server. Nothing the cluster runs can reach any
//! address outside loopback and the namespaces it made.
//!
//! Use [`LocalCluster::start`] from tests, or the `localcluster` binary from a shell.

pub mod agent;
mod cluster;
mod components;
mod error;
pub mod forward;
mod layout;
pub mod net;
pub mod pki;
mod process;

pub use cluster::{
    Figures, LocalCluster, UpOptions, client_for, down, install_crypto_provider, status,
    test_namespace,
};
pub use error::Error;
pub use layout::Layout;

/// The environment variable that names a running cluster for tests to use instead of
/// starting their own (`make test` starts one per run).
pub const CLUSTER_ENV: &str = "LOCALCLUSTER_NAME";

/// The gateway of the pod network: the bridge's address, where the API server serves.
pub const GATEWAY: &str = "10.244.0.1";
/// The pod network.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The Service network; never routed.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The first address of the Service network, the `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
