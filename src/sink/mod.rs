//! Sinks (being written).
