//! confluence-audit-forwarder: gets Confluence audit events into a SIEM — complete,
//! on time and never twice.
//!
//! # Layout
//!
//! Data flows one way, and each module owns one step of it:
//!
//! - [`source`]: one task per Confluence instance. Fetches a time window from one of the audit
//!   APIs (legacy `/rest/api/audit`, Cloud `/wiki/rest/api/audit`, DC `/rest/auditing/1.0/events`)
//!   and hands it to [`state`] one slice at a time, in order. Inside: `cursor` (where a source
//!   stands and which window it reads next, each rule with its invariant), `pipeline` (the
//!   read → prepare → commit stages; empty stretches are crossed with growing slices, the
//!   next slice is fetched and normalized while one commits), `paging` (every record of a
//!   slice from each API, a crowded millisecond in parts), `page_check` (every page checked
//!   against its request: out-of-window records, repeated cursors or pages, runaway reads
//!   fail the slice), `page_parse` and `page_scan` (a response read into records, split
//!   byte-wise when one record in it is broken), `window` (slice widths and the count-aware
//!   dedupe), `prepare` (dedupe, drop self-generated events on request, normalize,
//!   `pipeline_error` documents), `retention` and `client` (HTTP, retries, clock), `replay`
//!   (a range read again through the same read and prepare stages, queued for chosen sinks
//!   only: cursor and dedupe counts untouched).
//!   `file_tail` is the `api = "file"` source: it tails the DC audit log files by glob, per
//!   file a checkpoint (device + inode + first-bytes fingerprint, offset after the last complete
//!   line) committed with the documents in one transaction (`Store::commit_file_slice`).
//!   `organization` is the Atlassian organization audit log (`api = "organization"`):
//!   cursor/`processedAt` paging of `events-stream`, id dedupe, request pacing, and its
//!   replay of a `processedAt` range.
//! - [`normalize`]: turns one raw record (any of the four shapes) into ECS document bytes and
//!   its deterministic `event.id` (`normalize/organization/`: organization audit log events).
//!   Pure functions, no I/O — except `normalize::stream`, the `normalize` command's loop over
//!   any reader and writer in constant memory (NDJSON on worker threads, written in order).
//! - [`state`]: the durable store (one redb file). In one transaction it enqueues a window's
//!   documents for every sink and advances the source's cursor, so a crash anywhere re-reads a
//!   window rather than losing or half-writing it (`state/organization.rs`: an organization
//!   source's cursor, last `processedAt` and recent ids, committed the same way). Also holds
//!   per-sink queues and dead letters.
//!   The store has an identity, and each file sink's output carries a claim naming the store
//!   that writes it (`state/identity.rs`, `state/claim.rs`): a missing, emptied or replaced
//!   store is refused before it delivers anything twice, a corrupted one is a clear error.
//!   Transactions reach the disk in order, grouped: fsync'd at most every 200 ms and whenever a
//!   caller goes idle or stops.
//! - [`sink`]: one worker per sink drains its own queue in batches, delivers, retries (a short
//!   pause after a batch that made progress, a growing backoff only when nothing got through:
//!   `sink::retry_delay`), deletes what was delivered and dead-letters what never can be. A
//!   dead sink only grows its own queue. One folder per sink kind; the registry (`SinkKind`,
//!   one exhaustive `match`, and each kind's one `build`) is in `sink/mod.rs`.
//! - [`simulate`]: a faithful Confluence audit API simulator (all three REST APIs, faults
//!   included; `simulate/organization/` the organization `events-stream`) used by `demo`,
//!   tests and benchmarks.
//! - [`config`]: the TOML configuration, environment overrides, secrets and validation —
//!   `config/load.rs` reads (syntax, unknown keys via `config/keys.rs`, scrubbed errors),
//!   `config/secret.rs` is the one `Secret` type, `config/writers.rs` refuses two writers of
//!   one file. Loading builds every source client and sink as the daemon would (`check-config`).
//! - [`daemon`]: wires sources, state and sink workers together for `run` and `once`.
//! - [`lifecycle`]: the run/drain/stop mode every task watches, and the signals that change it.
//! - [`metrics`] and [`server`]: Prometheus metrics, `/healthz` and `/readyz`;
//!   [`readiness_metrics`] exports `/readyz`'s verdicts for the alert rules in
//!   `deploy/prometheus/alerts.yml` (tested by `tests/prometheus.rs`).
//! - [`control`]: the control socket in `state.dir` (0600, same user only) through which
//!   `status` and `replay` reach a running daemon; `protocol`, `server` (in the daemon),
//!   `client` (in the commands).
//! - [`status`]: the `status` report — the store's facts, plus the daemon's memory when it
//!   runs (`today`: counts since midnight) — and its text rendering (`render`).
//! - [`clock`]: time in one place — `now_ms`, the one `Retry-After` parser and its cap, and
//!   how far a server's `Date` is believed.
//! - [`logsafe`]: server-supplied text made safe to log, report and serve (control characters
//!   escaped, length bounded, every credential the forwarder sends redacted).
//! - [`demo`]: simulator → daemon → stdout and a file, in one command.
//! - [`cli`]: the command line (`run`, `once`, `check-config`, `normalize`, `simulate`, `demo`,
//!   `dlq`, `setup`; `status` and `replay` in `cli/operate.rs`).
//!
//! The invariant everything else serves: a record is either still to be fetched (the cursor
//! is behind it) or queued durably for every sink; a queued entry leaves a sink's queue only
//! once that sink has it (or its dead-letter queue does). `event.id` lets every sink
//! deduplicate the re-deliveries a crash can cause.

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod lifecycle;
pub mod logsafe;
pub mod metrics;
pub mod normalize;
pub mod readiness_metrics;
pub mod server;
pub mod simulate;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
