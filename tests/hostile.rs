//! The hostile-server suite: one test per way a Confluence (or a proxy in front of it) can
//! misbehave, each asserting what a user observes — every event delivered exactly once by
//! content, the error counted under its kind, `/readyz` unready while it must be, the process
//! ending in bounded time, memory under the stated bound.
//!
//! [`server::HostileServer`] sits in front of the faithful simulator and breaks one rule at a
//! time. Tests are split by where the defence lives: `pages` (what a page says: windows,
//! paging, records), `transport` (how it arrives: headers, bodies, redirects, TLS, logs).

mod common;
#[path = "hostile/pages.rs"]
mod pages;
#[allow(dead_code)] // each behaviour a test needs, not every test needs each
#[path = "hostile/server.rs"]
mod server;
#[path = "hostile/transport.rs"]
mod transport;
