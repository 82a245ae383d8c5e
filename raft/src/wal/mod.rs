//! The Raft write-ahead log (DESIGN.md §6). Built by issue 3.
