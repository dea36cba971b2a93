//! Daemon wiring (being written).
