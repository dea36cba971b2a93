//! `demo`: the whole pipeline in one command, with no Confluence — the bundled simulator
//! in-process, the real daemon, stdout and file sinks, and a summary of what went through.
//!
//! It runs the same code as production (configuration file, state store, sources, sink
//! workers); only the Confluence it talks to is simulated.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::simulate::{ArrivalMix, SimConfig, Simulator};

/// `demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Keep going: new events keep arriving and are forwarded until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Events of history the simulated Confluence starts with.
    #[arg(long, default_value_t = 3000)]
    pub events: usize,
    /// Where the file sink writes (`events.ndjson`) and the state store lives.
    #[arg(long, default_value = "demo-output")]
    pub out: PathBuf,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let sim = Simulator::new(SimConfig::default());
    let now = sim.now_ms();
    sim.seed_history(opts.events, now - 2 * 3600 * 1000, now - 5000);
    // A few organization audit log events too (logins, exports, views, API-token use).
    sim.org()
        .seed(ORG_EVENTS, now - 2 * 3600 * 1000, now - 5000);
    let server = sim
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .context("starting the simulator")?;

    // A fresh state each time, so every run forwards the whole history again.
    let state = opts.out.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let events_file = opts.out.join("events.ndjson");
    let _ = std::fs::remove_file(&events_file);
    let _ = std::fs::remove_file(crate::state::claim_path(&events_file));
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let config_path = opts.out.join("demo-config.toml");
    std::fs::write(
        &config_path,
        demo_config(&server.url(), &state, &events_file, opts.follow),
    )
    .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path)?;

    eprintln!(
        "demo: simulated Confluence Data Center at {} with {} audit records; forwarding as ECS to stdout and {}",
        server.url(),
        sim.len(),
        events_file.display()
    );
    if opts.follow {
        let _arrivals = sim.start_arrivals(
            20.0,
            ArrivalMix {
                twins: 0.02,
                late: 0.05,
                late_max_ms: 3000,
                bursts: 0.02,
            },
        );
        eprintln!("demo: following new events; Ctrl-C to stop");
        Daemon::open(config)?.run(Duration::from_secs(10)).await?;
    } else {
        let report = Daemon::open(config)?
            .once(Duration::from_secs(600), Duration::from_secs(30))
            .await?;
        if let Some(e) = report
            .source_errors
            .iter()
            .chain(&report.undelivered)
            .next()
        {
            anyhow::bail!("demo failed: {e}");
        }
    }
    summarize(&events_file, started.elapsed())
}

/// Organization audit log events the demo's simulated organization starts with.
const ORG_EVENTS: usize = 40;

fn demo_config(url: &str, state: &Path, events_file: &Path, follow: bool) -> String {
    format!(
        r#"# Written by `demo`: the configuration it runs with.
[[source]]
name = "demo-dc"
url = "{url}"
api = "auditing"
poll_interval = "{poll}"
lag = "1s"
overlap = "1m"
start_at = "beginning"
page_size = 500

[[source]]
name = "demo-org"
url = "{url}"
api = "organization"
org_id = "demo-org"
poll_interval = "{poll}"
start_at = "beginning"
[source.auth]
type = "bearer"
token = "demo-organization-api-key"

[state]
dir = "{state}"

[[sink]]
name = "stdout"
type = "stdout"

[[sink]]
name = "file"
type = "file"
path = "{file}"

[server]
listen = ""
"#,
        poll = if follow { "1s" } else { "30s" },
        state = state.display(),
        file = events_file.display(),
    )
}

/// Count what reached the file: by provider, kind and action.
fn summarize(events_file: &Path, elapsed: Duration) -> anyhow::Result<()> {
    let f = std::fs::File::open(events_file)
        .with_context(|| format!("reading {}", events_file.display()))?;
    let mut total = 0usize;
    let mut alerts = 0usize;
    let mut soteri = BTreeMap::<String, usize>::new();
    let mut other = BTreeMap::<String, usize>::new();
    let mut org = BTreeMap::<String, usize>::new();
    for line in std::io::BufReader::new(f).lines() {
        let doc: serde_json::Value = serde_json::from_str(&line?)?;
        total += 1;
        let action = doc["event"]["action"].as_str().unwrap_or("-").to_owned();
        if doc["event"]["kind"] == "alert" {
            alerts += 1;
        }
        if doc["event"]["dataset"] == crate::normalize::organization::DATASET {
            *org.entry(action).or_default() += 1;
        } else if doc["event"]["provider"] == "soteri-security-for-confluence" {
            *soteri.entry(action).or_default() += 1;
        } else {
            *other.entry(action).or_default() += 1;
        }
    }
    eprintln!(
        "\ndemo: {total} events forwarded in {:.1}s ({alerts} Soteri findings as alerts), written to {}",
        elapsed.as_secs_f64(),
        events_file.display()
    );
    eprintln!(
        "  Soteri Security for Confluence: {} events of {} kinds",
        soteri.values().sum::<usize>(),
        soteri.len()
    );
    for (action, n) in &soteri {
        eprintln!("    {n:>6}  {action}");
    }
    eprintln!(
        "  Confluence: {} events of {} kinds",
        other.values().sum::<usize>(),
        other.len()
    );
    print_top(other);
    eprintln!(
        "  Atlassian organization audit log: {} events of {} kinds",
        org.values().sum::<usize>(),
        org.len()
    );
    print_top(org);
    Ok(())
}

/// The eight most frequent actions.
fn print_top(counts: BTreeMap<String, usize>) {
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (action, n) in top.iter().take(8) {
        eprintln!("    {n:>6}  {action}");
    }
}
