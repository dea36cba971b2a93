//! The command line: parse arguments, set up logging, run one subcommand, turn its result
//! into an exit code and a clear message. The only place `anyhow` is used for errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat};
use crate::daemon::Daemon;
use crate::lifecycle::Exit;
use crate::logsafe::RedactingWriter;
use crate::normalize::{self, Api, NormalizeOptions};

#[derive(Parser)]
#[command(
    name = "confluence-audit-forwarder",
    version,
    about = "Forward Confluence audit events (Soteri Security findings included) to a SIEM, as ECS, exactly once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll every source, deliver to every sink, until SIGTERM.
    Run {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// How long sinks may drain on shutdown.
        #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
        drain_timeout: Duration,
    },
    /// One full poll cycle of every source, drain every sink, exit (cron, tests).
    Once {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// How long sinks may take to drain before `once` gives up (events stay queued).
        #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
        drain_timeout: Duration,
        /// How long the sources may poll: then `once` stops polling, drains, and exits 1
        /// naming each source that did not finish (what was queued stays queued).
        #[arg(long, default_value = "10m", value_parser = config::parse_duration)]
        timeout: Duration,
    },
    /// Validate a configuration file; on error name the file, key and problem.
    CheckConfig {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Read records on stdin (NDJSON or whole API pages), write ECS NDJSON on stdout, one
    /// record at a time.
    Normalize {
        #[arg(long)]
        api: Api,
        /// `data_stream.namespace`.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Keep the raw record in `event.original`.
        #[arg(long)]
        include_original: bool,
        /// Forward matched sensitive text unmasked.
        #[arg(long)]
        forward_secrets_plaintext: bool,
        /// The longest record read (a line, or one element of a page); a longer one is
        /// skipped and reported. Default: 64 MiB, as `source.max_response_bytes`.
        #[arg(long, default_value_t = config::DEFAULT_MAX_RESPONSE_BYTES as usize)]
        max_record_bytes: usize,
    },
    /// Serve the Confluence audit API simulator standalone.
    Simulate(crate::simulate::SimulateOptions),
    /// Simulator in-process → daemon → stdout and a file, then a summary (no Confluence needed).
    Demo(crate::demo::DemoOptions),
    /// Prepare a destination: index template, ILM policy, dashboards.
    #[command(subcommand)]
    Setup(crate::sink::elasticsearch::setup::SetupCommand),
    /// Inspect or replay a sink's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print dead letters as NDJSON ({seq, id, reason, failed_at, doc}).
    List {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Only this sink (default: all).
        #[arg(long)]
        sink: Option<String>,
    },
    /// Move dead letters back into the sink's queue, to be delivered again by the daemon.
    Replay {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        sink: String,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            println!(
                "{}: OK ({} source(s), {} sink(s))",
                config.display(),
                cfg.source.len(),
                cfg.sink.len()
            );
            for (i, source) in cfg.source.iter().enumerate() {
                if source.tls.insecure_skip_verify {
                    println!(
                        "warning: {}: source[{i}].tls.insecure_skip_verify = true: the certificate of {} is not checked (labs only; use tls.ca_file)",
                        config.display(),
                        source.url
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            drain_timeout,
        } => {
            let mut cfg = load_with_logging(&config)?;
            let rt = runtime()?;
            // SIGHUP: drain, re-read the file, start again; a broken file keeps the old one.
            while rt.block_on(async { Daemon::open(cfg.clone())?.run(drain_timeout).await })?
                == Exit::Reload
            {
                match Config::load(&config) {
                    Ok(new) => {
                        tracing::info!(config = %config.display(), "configuration reloaded");
                        cfg = new;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload failed; keeping the running configuration")
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Once {
            config,
            drain_timeout,
            timeout,
        } => {
            let cfg = load_with_logging(&config)?;
            let report = runtime()?
                .block_on(async { Daemon::open(cfg)?.once(timeout, drain_timeout).await })?;
            eprintln!(
                "once: {} records read, {} new events queued, {} dead letters",
                report.records_read, report.events_queued, report.dead_letters
            );
            let mut failed = false;
            for e in report.source_errors.iter().chain(&report.undelivered) {
                eprintln!("error: {e}");
                failed = true;
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Normalize {
            api,
            namespace,
            include_original,
            forward_secrets_plaintext,
            max_record_bytes,
        } => {
            let opts = NormalizeOptions {
                namespace,
                include_original,
                forward_secrets_plaintext,
                ..Default::default()
            };
            normalize_stdin(api, &opts, max_record_bytes)
        }
        Command::Dlq { action } => dlq(action),
        Command::Setup(cmd) => {
            init_logging(LogFormat::Text, "info");
            runtime()?.block_on(cmd.run())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(opts) => {
            init_logging(LogFormat::Text, "info");
            runtime()?.block_on(crate::simulate::serve_forever(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(opts) => {
            init_logging(LogFormat::Text, "warn");
            runtime()?.block_on(crate::demo::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_with_logging(path: &Path) -> anyhow::Result<Config> {
    let cfg = Config::load(path)?;
    init_logging(cfg.log.format, &cfg.log.level);
    Ok(cfg)
}

/// tracing to stderr (stdout belongs to the stdout sink and `normalize`); `RUST_LOG` wins
/// over the configured level. Colour only when stderr is a terminal (a journal or a file
/// gets plain text), and every line passes [`RedactingWriter`]: no credential the forwarder
/// sends is ever written, whatever a log statement was given.
pub fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| RedactingWriter(std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    limit_malloc_arenas();
    // The work is I/O and one state store: a few threads do it, and every extra thread
    // costs memory (a malloc arena, a stack).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// glibc gives every thread that allocates its own arena (64 MiB of address space each,
/// and resident memory that is rarely returned). Two arenas are plenty for this process and
/// halve its peak RSS.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// `normalize`: stdin → stdout through [`normalize::stream`]; exit 1 if any record failed.
fn normalize_stdin(
    api: Api,
    opts: &NormalizeOptions,
    max_record_bytes: usize,
) -> anyhow::Result<ExitCode> {
    let limits = normalize::stream::StreamLimits {
        max_record_bytes,
        ..Default::default()
    };
    let created = crate::source::paging::iso(crate::source::now_ms());
    let summary = normalize::stream::run(
        api,
        opts,
        &limits,
        &created,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        &mut |e| eprintln!("error: {e}"),
    )?;
    Ok(if summary.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn dlq(action: DlqAction) -> anyhow::Result<ExitCode> {
    match action {
        DlqAction::List { config, sink } => {
            let cfg = Config::load(&config)?;
            let store = open_store(&cfg)?;
            let sinks = match sink {
                Some(s) => vec![s],
                None => store.known_sinks()?,
            };
            let mut out = std::io::stdout().lock();
            for s in sinks {
                for letter in store.dead_letters(&s)? {
                    let mut v = serde_json::to_value(&letter)?;
                    v["sink"] = serde_json::Value::String(s.clone());
                    writeln!(out, "{v}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay { config, sink } => {
            let cfg = Config::load(&config)?;
            if !cfg.sink.iter().any(|s| s.name == sink) {
                anyhow::bail!("{}: no sink named {sink:?}", config.display());
            }
            let store = open_store(&cfg)?;
            let n = store.replay_dead_letters(&sink)?;
            eprintln!(
                "replayed {n} dead letter(s) into the queue of sink {sink:?}; the daemon delivers them"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_store(cfg: &Config) -> anyhow::Result<crate::state::Store> {
    let names: Vec<String> = cfg.sink.iter().map(|s| s.name.clone()).collect();
    crate::state::Store::open(&cfg.state.dir, &names).with_context(|| {
        format!(
            "opening state in {} (is the daemon running? it holds the store open)",
            cfg.state.dir.display()
        )
    })
}
