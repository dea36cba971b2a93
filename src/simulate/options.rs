//! The `simulate` subcommand: a simulated Confluence to point a forwarder (or curl) at, with
//! history, a steady arrival of new events and optional faults, until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ArrivalMix, Faults, SimAuth, SimConfig, Simulator};

/// `simulate` subcommand options.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Seeds the generated data (same seed, same history).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Records to pre-seed, spread over the last `--history-span`.
    #[arg(long, default_value_t = 5000)]
    pub history: usize,
    #[arg(long, default_value = "24h", value_parser = crate::config::parse_duration)]
    pub history_span: Duration,
    /// New events per second (0: none).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Fraction of arrivals that are two byte-identical records in one millisecond.
    #[arg(long, default_value_t = 0.0)]
    pub twins: f64,
    /// Fraction of arrivals committed late (stamped up to `--late-max` in the past).
    #[arg(long, default_value_t = 0.0)]
    pub late: f64,
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub late_max: Duration,
    /// Fraction of arrivals that are five different records in one millisecond.
    #[arg(long, default_value_t = 0.0)]
    pub bursts: f64,
    /// The server's silent cap on page size.
    #[arg(long, default_value_t = 1000)]
    pub page_cap: usize,
    /// Simulated clock minus real time, ms (records and the `Date` header follow it).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub skew_ms: i64,
    /// Fraction of requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Fraction of requests answered 503 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub fault_503: f64,
    /// Fraction of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,
    /// Fraction of requests answered with a truncated body or a connection cut mid-body.
    #[arg(long, default_value_t = 0.0)]
    pub fault_truncate: f64,
    /// Fraction of requests answered after `--slow-by`.
    #[arg(long, default_value_t = 0.0)]
    pub fault_slow: f64,
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_duration)]
    pub slow_by: Duration,
    /// `Retry-After` of 429 and 503 answers, seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Require HTTP Basic auth with this user:password.
    #[arg(long, conflicts_with = "bearer_token")]
    pub basic_auth: Option<String>,
    /// Require `Authorization: Bearer TOKEN` (a DC personal access token).
    #[arg(long)]
    pub bearer_token: Option<String>,
}

impl SimulateOptions {
    fn config(&self) -> anyhow::Result<SimConfig> {
        let auth = match (&self.basic_auth, &self.bearer_token) {
            (Some(up), _) => {
                let (u, p) = up
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("--basic-auth wants user:password"))?;
                SimAuth::Basic {
                    username: u.into(),
                    password: p.into(),
                }
            }
            (None, Some(token)) => SimAuth::Bearer(token.clone()),
            (None, None) => SimAuth::None,
        };
        Ok(SimConfig {
            seed: self.seed,
            page_cap: self.page_cap.max(1),
            auth,
            skew_ms: self.skew_ms,
            ..SimConfig::default()
        })
    }

    fn faults(&self) -> Faults {
        Faults {
            rate_limit: self.fault_429,
            unavailable: self.fault_503,
            server_error: self.fault_500,
            truncate: self.fault_truncate,
            slow: self.fault_slow,
            slow_by: self.slow_by,
            retry_after_secs: self.retry_after,
            ..Faults::default()
        }
    }
}

/// Serve until Ctrl-C / SIGTERM.
pub async fn serve_forever(opts: SimulateOptions) -> anyhow::Result<()> {
    let sim = Simulator::new(opts.config()?);
    let now = sim.now_ms();
    sim.seed_history(
        opts.history,
        now - opts.history_span.as_millis() as i64,
        now,
    );
    let org_span = now - opts.history_span.as_millis() as i64;
    sim.org().seed(opts.history / 10, org_span, now);
    sim.set_faults(opts.faults());
    let server = sim.serve(opts.listen).await?;
    let _arrivals = (opts.rate > 0.0).then(|| {
        sim.start_arrivals(
            opts.rate,
            ArrivalMix {
                twins: opts.twins,
                late: opts.late,
                late_max_ms: opts.late_max.as_millis() as i64,
                bursts: opts.bursts,
            },
        )
    });
    tracing::info!(
        url = %server.url(),
        records = sim.len(),
        "simulator serving /rest/api/audit, /wiki/rest/api/audit, /rest/auditing/1.0/events, /admin/v1/orgs/{{orgId}}/events-stream"
    );
    crate::lifecycle::wait_for_stop().await;
    Ok(())
}
