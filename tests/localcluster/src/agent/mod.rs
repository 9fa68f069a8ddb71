//! The node agent: it plays the kubelet for the local cluster's nodes and runs each pod's
//! containers as local processes.

pub mod container;
pub mod shim;
