//! The one integration-test binary. Each module is a group of tests; `support`
//! holds the shared helpers and in-process servers.

mod access;
mod config;
mod crash;
mod daemon;
mod embed;
mod external;
mod faults;
mod formats;
mod hostile;
mod index;
mod local_embed;
mod openwebui;
mod ops;
mod publish;
mod qdrant_server;
mod store;
mod support;
mod tree;
