//! The pure Raft state machine (DESIGN.md §7). Built by issue 4.
