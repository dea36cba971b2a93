//! Confluence audit API simulator (being written).
