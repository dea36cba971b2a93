//! The command line: parse arguments, set up logging, run one subcommand, turn its result
//! into an exit code and a clear message. The only place `anyhow` is used for errors.
//! `status` and `replay` live in `cli/operate.rs`.

mod operate;

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
use crate::state::NewState;

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
        /// Start over deliberately with a state store that is missing, emptied or replaced,
        /// although a sink's destination holds earlier deliveries (they are kept; new ones are
        /// appended). Without it the daemon refuses to start (exit code 3).
        #[arg(long)]
        accept_new_state: bool,
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
        /// Start over deliberately with a state store that is missing, emptied or replaced,
        /// although a sink's destination holds earlier deliveries (they are kept; new ones are
        /// appended). Without it the daemon refuses to start (exit code 3).
        #[arg(long)]
        accept_new_state: bool,
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
        /// Threads that normalize records (the output is the same whatever the number).
        /// Default: the CPUs available, at most 4; 1: the reading thread does it all.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: Option<u16>,
    },
    /// Serve the Confluence audit API simulator standalone.
    Simulate(crate::simulate::SimulateOptions),
    /// Simulator in-process → daemon → stdout and a file, then a summary (no Confluence needed).
    Demo(crate::demo::DemoOptions),
    /// Prepare a destination: index template, ILM/ISM policy, dashboards.
    #[command(subcommand)]
    Setup(SetupCommand),
    /// Where every source and sink stands: asked of the running daemon (control socket in
    /// state.dir), or read from the state store when it is stopped. Exit 1 when a row fails.
    Status {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The report as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Re-read a time range from Confluence and queue it again for the chosen sinks (all by
    /// default); the cursor and the dedupe counts stay as they are. Replayed documents keep
    /// their event.id and carry confluence.audit.replayed: true.
    Replay {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        source: String,
        /// Start of the range: RFC 3339, or "-24h" for 24 hours ago.
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// End of the range (inclusive), at or before the source's cursor.
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// A sink to queue for (repeat for several; default: every sink).
        #[arg(long = "sink")]
        sinks: Vec<String>,
    },
    /// Inspect or replay a sink's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

/// `setup …`: one subcommand per destination that needs setting up.
#[derive(Subcommand)]
enum SetupCommand {
    /// Install the index template, ILM policy and (with kibana_url) the Kibana dashboards for
    /// an Elasticsearch sink.
    Elasticsearch {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The sink to set up (default: the only elasticsearch sink).
        #[arg(long)]
        sink: Option<String>,
    },
    /// Install the index template and ISM policy (when the cluster has the ISM plugin) for an
    /// OpenSearch sink.
    Opensearch {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The sink to set up (default: the only opensearch sink).
        #[arg(long)]
        sink: Option<String>,
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

/// Exit code: the daemon refused to start because the state store is new to a destination
/// that holds earlier deliveries (see `--accept-new-state`).
pub const EXIT_STATE_REFUSED: u8 = 3;
/// Exit code: the state store file cannot be read (corrupt, not a store).
pub const EXIT_STATE_UNREADABLE: u8 = 4;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code_for(&e)
        }
    }
}

/// Operators (and service managers) tell a state store problem from other failures by the
/// exit code: both need a person, so a restart loop does not help.
fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    use crate::state::StateError;
    match e.chain().find_map(|c| c.downcast_ref::<StateError>()) {
        Some(StateError::Refused(_)) => ExitCode::from(EXIT_STATE_REFUSED),
        Some(StateError::Unreadable { .. }) => ExitCode::from(EXIT_STATE_UNREADABLE),
        _ => ExitCode::FAILURE,
    }
}

fn new_state(accept: bool) -> NewState {
    if accept {
        NewState::Accept
    } else {
        NewState::Refuse
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
                if source.api == crate::normalize::Api::File {
                    let user = crate::config::running_user();
                    println!(
                        "source[{i}] {:?}: the directories of {:?} are readable by {user}, the user check-config ran as (run it as the service's user)",
                        source.name, source.paths
                    );
                }
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
            accept_new_state,
        } => {
            let cfg = load_with_logging(&config)?;
            run_until_stopped(cfg, drain_timeout, new_state(accept_new_state))
        }
        Command::Once {
            config,
            drain_timeout,
            timeout,
            accept_new_state,
        } => {
            let cfg = load_with_logging(&config)?;
            let new_state = new_state(accept_new_state);
            let report = runtime()?.block_on(async {
                Daemon::open_with(cfg, new_state)?
                    .once(timeout, drain_timeout)
                    .await
            })?;
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
            threads,
        } => {
            let opts = NormalizeOptions {
                namespace,
                include_original,
                forward_secrets_plaintext,
                ..Default::default()
            };
            let workers = threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
                usize::from,
            );
            normalize_stdin(api, &opts, max_record_bytes, workers)
        }
        Command::Dlq { action } => dlq(action),
        Command::Status { config, json } => operate::status(&config, json),
        Command::Replay {
            config,
            source,
            from,
            to,
            sinks,
        } => operate::replay(operate::ReplayArgs {
            config: &config,
            source: &source,
            from: &from,
            to: &to,
            sinks: &sinks,
        }),
        Command::Setup(cmd) => {
            init_logging(LogFormat::Text, "info");
            runtime()?.block_on(setup(cmd))?;
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

/// `run`: start, and on each SIGHUP (whose file the running daemon checked) drain and
/// start again with the new file. A file that fails after all, or a new configuration that
/// cannot start, keeps (or goes back to) the previous one: a reload never ends the daemon.
fn run_until_stopped(
    mut cfg: Config,
    drain_timeout: Duration,
    mut new_state: NewState,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let mut previous: Option<Config> = None;
    // Reload failures found between two daemons, counted by the next one's metrics.
    let mut failed_reloads = 0;
    loop {
        let ran = rt.block_on(async {
            let daemon = Daemon::open_with(cfg.clone(), new_state)?;
            daemon.metrics.config_reload_failures.inc_by(failed_reloads);
            daemon.run(drain_timeout).await
        });
        // `--accept-new-state` accepted the store found at start, not whatever a reload may
        // find (a store deleted meanwhile is refused).
        new_state = NewState::Refuse;
        failed_reloads = 0;
        match ran {
            Ok(Exit::Stop) => return Ok(ExitCode::SUCCESS),
            Ok(Exit::Reload) => match Config::load(&cfg.path) {
                Ok(new) => {
                    tracing::info!(config = %cfg.path.display(), "configuration reloaded");
                    previous = Some(std::mem::replace(&mut cfg, new));
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; keeping the running configuration");
                    failed_reloads = 1;
                    previous = None;
                }
            },
            Err(e) => match previous.take() {
                Some(old) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "the reloaded configuration did not start; going back to the previous one"
                    );
                    failed_reloads = 1;
                    cfg = old;
                }
                None => return Err(e),
            },
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
    workers: usize,
) -> anyhow::Result<ExitCode> {
    let limits = normalize::stream::StreamLimits {
        max_record_bytes,
        workers,
        input_ready: Some(normalize::stream::stdin_ready),
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

/// `setup elasticsearch|opensearch`: the sink's own client, then the template, policy and
/// (Elasticsearch with kibana_url) the dashboards.
async fn setup(cmd: SetupCommand) -> anyhow::Result<()> {
    use crate::sink::SinkKind;
    use crate::sink::elasticsearch::{ElasticsearchConfig, setup};
    let (kind, config, sink) = match cmd {
        SetupCommand::Elasticsearch { config, sink } => ("elasticsearch", config, sink),
        SetupCommand::Opensearch { config, sink } => ("opensearch", config, sink),
    };
    let cfg = Config::load(&config)?;
    let candidates: Vec<(&str, ElasticsearchConfig)> = cfg
        .sink
        .iter()
        .filter_map(|s| match &s.kind {
            SinkKind::Elasticsearch(es) if kind == "elasticsearch" => {
                Some((s.name.as_str(), (**es).clone()))
            }
            SinkKind::Opensearch(os) if kind == "opensearch" => {
                Some((s.name.as_str(), os.for_opensearch()))
            }
            _ => None,
        })
        .filter(|(n, _)| sink.as_deref().is_none_or(|want| want == *n))
        .collect();
    let (name, es) = match candidates.as_slice() {
        [one] => one,
        [] => anyhow::bail!(
            "{}: no {kind} sink{}",
            config.display(),
            sink.map(|s| format!(" named {s:?}")).unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "{}: several {kind} sinks; choose one with --sink",
            config.display()
        ),
    };
    es.validate()
        .map_err(|(k, p)| anyhow::anyhow!("sink {name:?}: {k}: {p}"))?;
    let (client, _) = setup::build_client(es).map_err(|e| anyhow::anyhow!("sink {name:?}: {e}"))?;
    let kibana = setup::KibanaTarget::from_config(es)?;
    if kibana.is_none() && kind == "elasticsearch" {
        eprintln!("sink {name:?}: no kibana_url; skipping the dashboards");
    }
    for line in setup::install(&client, es, kibana.as_ref()).await? {
        println!("sink {name:?}: {line}");
    }
    Ok(())
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

/// The existing store (`dlq` never creates one: a new store would later be taken for a
/// replaced one).
fn open_store(cfg: &Config) -> anyhow::Result<crate::state::Store> {
    let path = cfg.state.dir.join(crate::state::STORE_FILE);
    if crate::state::inspect(&path)? != crate::state::Found::Present {
        anyhow::bail!(
            "{}: no state store here (missing or empty); nothing to show or replay",
            path.display()
        );
    }
    let names: Vec<String> = cfg.sink.iter().map(|s| s.name.clone()).collect();
    crate::state::Store::open(&cfg.state.dir, &names).with_context(|| {
        format!(
            "opening state in {} (is the daemon running? it holds the store open)",
            cfg.state.dir.display()
        )
    })
}
