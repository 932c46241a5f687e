//! The one integration-test binary. Each module is a group of tests; `support`
//! holds the shared helpers and in-process servers.

mod support;
mod embed;
mod store;
mod index;
mod publish;
mod config;
mod crash;
mod faults;
mod local_embed;
mod openwebui;
mod daemon;
mod ops;
mod hostile;
