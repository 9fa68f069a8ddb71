//! The local cluster.
