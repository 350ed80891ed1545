//! `contrail-sim tune`: the function at several memory sizes under Lambda's CPU model, each
//! size run with its extensions and (for their share) without, one after the other; then the
//! table of [`contrail_sim::tune`].

use contrail_sim::report::Machine;
use contrail_sim::sink::{self, SinkConfig};
use contrail_sim::tune::{self, Prices, SizeResult, TuneContext};
use contrail_sim::{RunConfig, RunReport};

use super::env::EnvArgs;
use super::run::endpoint_set;

#[derive(clap::Args, Debug)]
pub(crate) struct TuneArgs {
    /// The memory sizes to try, in MB.
    #[arg(
        long,
        value_name = "MB,...",
        value_delimiter = ',',
        default_value = "128,256,512,1024,1769,3008"
    )]
    memory_mb: Vec<u32>,
    /// Invocations per size and run (the first is the cold start; at least 2).
    #[arg(long, default_value_t = 10)]
    invocations: u32,
    /// Do not run each size without the extensions (their share is then not shown).
    #[arg(long)]
    no_baseline: bool,
    /// Price of a GB-second on x86_64, in $.
    #[arg(long, value_name = "USD", default_value_t = Prices::default().x86_64_gb_s)]
    price_x86_64_gb_s: f64,
    /// Price of a GB-second on arm64, in $.
    #[arg(long, value_name = "USD", default_value_t = Prices::default().arm64_gb_s)]
    price_arm64_gb_s: f64,
    /// Price of a million requests, in $.
    #[arg(long, value_name = "USD", default_value_t = Prices::default().per_million_requests)]
    price_per_million_requests: f64,
    #[command(flatten)]
    env: EnvArgs,
}

impl TuneArgs {
    fn prices(&self) -> anyhow::Result<Prices> {
        let prices = Prices {
            x86_64_gb_s: self.price_x86_64_gb_s,
            arm64_gb_s: self.price_arm64_gb_s,
            per_million_requests: self.price_per_million_requests,
        };
        for (name, v) in [
            ("--price-x86-64-gb-s", prices.x86_64_gb_s),
            ("--price-arm64-gb-s", prices.arm64_gb_s),
            ("--price-per-million-requests", prices.per_million_requests),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                anyhow::bail!("{name} must be a price of at least 0");
            }
        }
        Ok(prices)
    }
}

async fn one_run(config: &RunConfig, what: &str) -> anyhow::Result<RunReport> {
    eprintln!("contrail-sim tune: {what}");
    contrail_sim::run(config.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

pub(crate) async fn run(args: TuneArgs) -> anyhow::Result<()> {
    if args.invocations < 2 {
        anyhow::bail!("--invocations must be at least 2: the first one is the cold start");
    }
    if args.memory_mb.is_empty() {
        anyhow::bail!("--memory-mb needs at least one size");
    }
    let prices = args.prices()?;
    let mut base = args.env.config(args.memory_mb[0], args.invocations)?;
    base.echo_output = false;
    let sink = if endpoint_set(&base.env) {
        None
    } else {
        let handle = sink::start(SinkConfig::default())
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the OTLP sink: {e}"))?;
        base.env
            .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), handle.endpoint()));
        Some(handle)
    };
    let has_extensions = base.extensions_dir.is_some() || !base.extensions.is_empty();
    let baseline = has_extensions && !args.no_baseline;
    let interrupted = super::interruption()?;
    let measured = async {
        let mut results: Vec<SizeResult> = Vec::new();
        let mut resources = String::new();
        for &memory_mb in &args.memory_mb {
            let sized = RunConfig {
                memory_mb,
                ..base.clone()
            };
            let with = one_run(&sized, &format!("{memory_mb} MB with the extensions")).await?;
            let without = if baseline {
                let bare = RunConfig {
                    extensions_dir: None,
                    extensions: Vec::new(),
                    ..sized.clone()
                };
                Some(one_run(&bare, &format!("{memory_mb} MB without them")).await?)
            } else {
                None
            };
            if resources.is_empty() {
                resources = with.resources.summary.clone();
            }
            results.push(
                tune::size_result(memory_mb, &with, without.as_ref(), &prices)
                    .map_err(|e| anyhow::anyhow!(e))?,
            );
        }
        Ok::<_, anyhow::Error>((results, resources))
    };
    let outcome = tokio::select! {
        r = measured => r,
        () = interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(s) = sink {
        s.shutdown().await;
    }
    let (results, resources) = outcome?;
    let context = TuneContext {
        invocations: args.invocations,
        baseline,
        resources: format!("{resources} (at the first size; the share scales with memory)"),
        machine: {
            let m = Machine::this();
            format!("{} CPUs, {}", m.cpus, m.model)
        },
        prices,
    };
    print!("{}", tune::render(&results, &context));
    Ok(())
}
