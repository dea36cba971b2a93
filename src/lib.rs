//! confluence-audit-forwarder: gets Confluence audit events into a SIEM — complete,
//! on time and never twice.
//!
//! # Layout
//!
//! Data flows one way, and each module owns one step of it:
//!
//! - [`source`]: one task per Confluence instance. Fetches a time window from one of the audit
//!   APIs (legacy `/rest/api/audit`, Cloud `/wiki/rest/api/audit`, DC `/rest/auditing/1.0/events`),
//!   pages through it, honours rate limits and faults, deduplicates the overlap by content hash
//!   (count-aware), and hands finished windows to [`state`], one slice at a time and in order
//!   (the next slice is fetched and normalized while one commits). Owns the cursor logic.
//! - [`normalize`]: turns one raw record (any of the four shapes) into ECS document bytes and
//!   its deterministic `event.id`. Pure functions, no I/O.
//! - [`state`]: the durable store (one redb file). In one transaction it enqueues a window's
//!   documents for every sink and advances the source's cursor, so a crash anywhere re-reads a
//!   window rather than losing or half-writing it. Also holds per-sink queues and dead letters.
//!   Transactions reach the disk in order, grouped: fsync'd at most every 200 ms and whenever a
//!   caller goes idle or stops.
//! - [`sink`]: one worker per sink drains its own queue in batches, delivers, retries (a short
//!   pause after a batch that made progress, a growing backoff only when nothing got through:
//!   `sink::retry_delay`), deletes what was delivered and dead-letters what never can be. A
//!   dead sink only grows its own queue. One folder per sink kind.
//! - [`simulate`]: a faithful Confluence audit API simulator (all three REST APIs, faults
//!   included) used by `demo`, tests and benchmarks.
//! - [`config`]: the TOML configuration, environment overrides, secrets and validation.
//! - [`daemon`]: wires sources, state and sink workers together for `run` and `once`.
//! - [`lifecycle`]: the run/drain/stop mode every task watches, and the signals that change it.
//! - [`metrics`] and [`server`]: Prometheus metrics, `/healthz` and `/readyz`.
//! - [`clock`]: time in one place — `now_ms`, the one `Retry-After` parser and its cap, and
//!   how far a server's `Date` is believed.
//! - [`logsafe`]: server-supplied text made safe to log, report and serve (control characters
//!   escaped, length bounded, every credential the forwarder sends redacted).
//! - [`demo`]: simulator → daemon → stdout and a file, in one command.
//! - [`cli`]: the command line (`run`, `once`, `check-config`, `normalize`, `simulate`, `demo`,
//!   `dlq`, `setup`).
//!
//! The invariant everything else serves: a record is either still to be fetched (the cursor
//! is behind it) or queued durably for every sink; a queued entry leaves a sink's queue only
//! once that sink has it (or its dead-letter queue does). `event.id` lets every sink
//! deduplicate the re-deliveries a crash can cause.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod lifecycle;
pub mod logsafe;
pub mod metrics;
pub mod normalize;
pub mod server;
pub mod simulate;
pub mod sink;
pub mod source;
pub mod state;
