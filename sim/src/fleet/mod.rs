//! Many execution environments of one function under load, as Lambda scales it: a load profile
//! ([`load`]), the routing of each request to an idle environment, a new one or a throttle
//! (`pool`), reserved, account and provisioned concurrency, idle environments frozen and shut
//! down after an idle timeout, and what each environment and request measured ([`report`]).
//! The environments themselves are those of [`crate::run`] (`lifecycle::fleet` drives them).
//!
//! What is modelled and what is not is in the README's "Scaling" section.

pub mod load;
pub(crate) mod pool;
pub mod report;

use std::time::Duration;

pub use load::Load;
pub use pool::{ACCOUNT_LIMIT, RESERVED_LIMIT};
pub use report::{EnvironmentReport, FleetReport, RequestRecord};

use crate::config::RunConfig;

/// Lambda's default concurrency quota of an account in a region.
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1_000;

/// How long an idle on-demand environment is kept before it is shut down, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The placeholders of environment variable values replaced by loopback ports of each
/// environment's own: `{port}`, `{port1}` … `{port9}`, each a different port.
pub const PORT_PLACEHOLDERS: [&str; 10] = [
    "{port}", "{port1}", "{port2}", "{port3}", "{port4}", "{port5}", "{port6}", "{port7}",
    "{port8}", "{port9}",
];

/// What each environment needs of its own for Contrail: its two OTLP receivers on ports of
/// their own (Lambda gives each environment its own loopback; here they share this machine's).
/// What `contrail-sim scale` gives every environment when no `--environment-env` is given.
pub fn contrail_receiver_ports() -> Vec<(String, String)> {
    [
        ("CONTRAIL_RECEIVER_ENDPOINT", "127.0.0.1:{port}"),
        ("CONTRAIL_RECEIVER_GRPC_ENDPOINT", "127.0.0.1:{port1}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A fleet run: the function (its `invocations`, `schedule` and `idle_gap` are not used: the
/// load decides) and how it scales.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The function and every environment's settings. Its `init_type` must be on-demand:
    /// provisioned environments are `provisioned_concurrency`.
    pub function: RunConfig,
    /// When requests arrive.
    pub load: Load,
    /// The function's reserved concurrency, if it has one.
    pub reserved_concurrency: Option<u32>,
    /// The account's concurrency (the limit of a function without a reserved concurrency).
    pub account_concurrency: u32,
    /// Environments initialized before the load starts, as `provisioned-concurrency`.
    pub provisioned_concurrency: u32,
    /// An idle on-demand environment is shut down after this long.
    pub idle_timeout: Duration,
    /// Variables each environment gets on top of the function's, with the
    /// [`PORT_PLACEHOLDERS`] replaced by loopback ports of that environment's own (every
    /// environment's processes share this host's loopback, where Lambda gives each its own
    /// network).
    pub environment_env: Vec<(String, String)>,
    /// At most this many environments at once, below this machine's own limit (room for
    /// other work, or a small limit to try); `None`: the machine's limit.
    pub max_environments: Option<u32>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            function: RunConfig::default(),
            load: Load::Replay(vec![Duration::ZERO]),
            reserved_concurrency: None,
            account_concurrency: DEFAULT_ACCOUNT_CONCURRENCY,
            provisioned_concurrency: 0,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            environment_env: Vec::new(),
            max_environments: None,
        }
    }
}

/// The most environments this machine runs at once at `memory_mb`: their memory limits within
/// three quarters of its memory, and their CPU shares within twice its CPUs (so the share each
/// gets holds while at most half of them run at once), and at most 100.
pub fn machine_limit(memory_mb: u32, cpus: u32, memory_total_mb: u64) -> u32 {
    let by_memory = memory_total_mb * 3 / 4 / u64::from(memory_mb.max(1));
    let by_cpu = u64::from(cpus) * 2 * 1_769 / u64::from(memory_mb.max(1));
    by_memory.min(by_cpu).clamp(1, 100) as u32
}

/// This machine's CPUs and memory (MB), for [`machine_limit`].
pub fn this_machine() -> (u32, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(1_024, |kb| kb / 1024);
    (cpus, memory_mb)
}

/// `vars` with each of the [`PORT_PLACEHOLDERS`] they use replaced by a port `port` gives
/// (called once per placeholder used).
pub(crate) fn expand<E>(
    vars: &[(String, String)],
    mut port: impl FnMut() -> Result<u16, E>,
) -> Result<Vec<(String, String)>, E> {
    let mut out: Vec<(String, String)> = vars.to_vec();
    for placeholder in PORT_PLACEHOLDERS {
        if out.iter().any(|(_, v)| v.contains(placeholder)) {
            let p = port()?.to_string();
            for (_, v) in &mut out {
                *v = v.replace(placeholder, &p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_limit_keeps_memory_and_cpu_shares_within_the_machine() {
        // 2 CPUs, 24 GB: the CPU shares bind (2 × 2 × 1769 / 128 = 55).
        assert_eq!(machine_limit(128, 2, 24_000), 55);
        assert_eq!(machine_limit(1_769, 2, 24_000), 4);
        // 4 GB of memory: the limits bind (3000 / 512 = 5).
        assert_eq!(machine_limit(512, 16, 4_000), 5);
        assert_eq!(machine_limit(128, 64, 1_000_000), 100);
        assert_eq!(machine_limit(10_240, 1, 1_000), 1);
    }

    #[test]
    fn each_placeholder_gets_a_port_of_its_own_in_every_value() {
        let vars = vec![
            ("A".to_owned(), "127.0.0.1:{port}".to_owned()),
            ("B".to_owned(), "x".to_owned()),
            ("C".to_owned(), "{port2}/{port}".to_owned()),
        ];
        let mut next = 4100;
        let out = expand(&vars, || -> Result<u16, ()> {
            next += 1;
            Ok(next)
        })
        .unwrap();
        assert_eq!(
            out,
            [
                ("A".into(), "127.0.0.1:4101".into()),
                ("B".into(), "x".into()),
                ("C".into(), "4102/4101".into())
            ]
        );
        assert_eq!(expand(&vars, || Err("no port")), Err("no port"));
    }
}
