//! The keel server: executors pinned to cores in three roles (log, apply, client), wired to the
//! engine (MVCC, watch, lease), the Raft core and the WAL. See ARCHITECTURE.md and DESIGN.md §2–§4.
//!
//! Files: [`config`] (flags), [`node`] (wiring executors and channels), [`raftnode`] (the log
//! core), [`apply`] (the apply core), [`client`] (client cores), [`msg`] (inter-core messages),
//! [`convert`] (wire ↔ engine types), [`signals`], [`stages`] (opt-in write-path timing).
pub mod apply;
pub mod client;
pub mod config;
pub mod convert;
pub mod hop;
pub mod members;
pub mod msg;
pub mod node;
pub mod raftnode;
pub mod signals;
pub mod stages;
