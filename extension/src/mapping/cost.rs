//! Estimated cost: what an invocation, the INIT phase and a SnapStart restore cost at Lambda's
//! list prices (`mapping/prices.rs`, or the `CONTRAIL_PRICE_*` variables), computed from what
//! `platform.report`, `platform.initReport` and `platform.restoreReport` say. Pure arithmetic.
//!
//! - An invocation: `billedDurationMs` ÷ 1000 × memory (MB ÷ 1024, GB) × $ per GB-second, plus
//!   the request charge. Since 1 August 2025 Lambda bills the INIT phase of on-demand
//!   functions too, inside the billed duration of the environment's first invocation: that
//!   invocation's cost already holds it.
//! - The INIT phase alone: `initReport.durationMs`, rounded up to the millisecond as Lambda
//!   rounds, × memory × $ per GB-second: how much of the first invocation's cost was the cold
//!   start (a part of it, not to be added). Only for on-demand inits: provisioned concurrency
//!   is billed by the hour, and a SnapStart snapshot's init when the version is published.
//! - A SnapStart restore: memory (GB) × $ per GB restored, plus `billedRestoreDurationMs` (the
//!   runtime hooks' time, where the report gives it) × memory × $ per GB-second.
//!
//! Not estimated: the SnapStart cache charge ($ per GB-second for as long as a published
//! version exists, whatever runs), provisioned concurrency, ephemeral storage above 512 MB,
//! data transfer, the free tier, Savings Plans and discounts. Duration prices are the first tier.
//!
//! The architecture is the one Contrail was built for: a layer carries one binary per
//! architecture, and the function runs on the same one.

use crate::config::env::{ConfigError, Env, non_empty};
use crate::config::{REGION_VAR, memory_size_mb};

use super::prices::{RegionPrices, region_prices};

pub(crate) const GB_SECOND_VAR: &str = "CONTRAIL_PRICE_GB_SECOND";
pub(crate) const PER_MILLION_REQUESTS_VAR: &str = "CONTRAIL_PRICE_PER_MILLION_REQUESTS";
pub(crate) const SNAPSTART_RESTORE_GB_VAR: &str = "CONTRAIL_PRICE_SNAPSTART_RESTORE_GB";

/// The largest price a variable may give: far above any Lambda price, so that a value in the
/// wrong unit (cents, per hour) is refused rather than believed.
const MAX_PRICE: f64 = 1_000.0;

/// The CPU architecture the function runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// The architecture this binary was built for.
    pub(crate) const fn of_build() -> Architecture {
        if cfg!(target_arch = "aarch64") {
            Architecture::Arm64
        } else {
            Architecture::X86_64
        }
    }
}

/// The prices an estimate uses, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prices {
    /// Duration, $ per GB-second.
    pub(crate) gb_second: f64,
    /// $ per request.
    pub(crate) per_request: f64,
    /// SnapStart restore, $ per GB restored; `None`: restores are not priced.
    pub(crate) restore_gb: Option<f64>,
}

impl Prices {
    /// The documented prices of a region for an architecture.
    pub(crate) fn documented(p: &RegionPrices, arch: Architecture) -> Prices {
        Prices {
            gb_second: match arch {
                Architecture::X86_64 => p.x86_64_gb_second,
                Architecture::Arm64 => p.arm64_gb_second,
            },
            per_request: p.per_million_requests / 1e6,
            restore_gb: Some(p.snapstart_restore_gb),
        }
    }
}

/// Whether and at which prices costs are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CostConfig {
    /// `None`: no cost is estimated (no documented price for the region and none given, or a
    /// price variable was not valid).
    pub(crate) prices: Option<Prices>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, for what is priced before a report gives the memory
    /// (`None` when unset or not a whole number of megabytes, which the resource reports).
    pub(crate) memory_mb: Option<f64>,
}

fn price(env: &dyn Env, var: &str) -> Result<Option<f64>, ConfigError> {
    let Some(v) = non_empty(env, var) else {
        return Ok(None);
    };
    match v.parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=MAX_PRICE).contains(&p) => Ok(Some(p)),
        _ => Err(ConfigError::new(
            var,
            v,
            format!("expected a price in US dollars from 0 to {MAX_PRICE}; cost estimates are off"),
        )),
    }
}

impl CostConfig {
    /// Read the price variables for `arch`. Never fatal: an estimate is not worth failing the
    /// function's init for. The second value lists what to warn about: a variable that is not
    /// valid turns every estimate off (a price that was meant to override must not be replaced
    /// by the default in silence), and so does a region without documented prices where the
    /// variables do not give them.
    pub(crate) fn from_env(env: &dyn Env, arch: Architecture) -> (CostConfig, Vec<ConfigError>) {
        let memory_mb = memory_size_mb(env).and_then(Result::ok).map(|mb| mb as f64);
        let mut warnings = Vec::new();
        let mut read = |var| price(env, var).map_err(|e| warnings.push(e)).ok().flatten();
        let gb_second = read(GB_SECOND_VAR);
        let per_million = read(PER_MILLION_REQUESTS_VAR);
        let restore = read(SNAPSTART_RESTORE_GB_VAR);
        if !warnings.is_empty() {
            return (
                CostConfig {
                    prices: None,
                    memory_mb,
                },
                warnings,
            );
        }
        let region = non_empty(env, REGION_VAR);
        let documented = region
            .as_deref()
            .and_then(region_prices)
            .map(|p| Prices::documented(p, arch));
        let prices = match (documented, gb_second, per_million) {
            (Some(d), g, r) => Some(Prices {
                gb_second: g.unwrap_or(d.gb_second),
                per_request: r.map_or(d.per_request, |r| r / 1e6),
                restore_gb: restore.or(d.restore_gb),
            }),
            (None, Some(g), Some(r)) => Some(Prices {
                gb_second: g,
                per_request: r / 1e6,
                restore_gb: restore,
            }),
            // Not on Lambda (which always sets the region): nothing to estimate.
            (None, _, _) if region.is_none() => None,
            (None, _, _) => {
                warnings.push(ConfigError::new(
                    REGION_VAR,
                    region.unwrap_or_default(),
                    format!(
                        "Contrail has no documented Lambda prices for this region; set {GB_SECOND_VAR} and {PER_MILLION_REQUESTS_VAR} for cost estimates (they are off)"
                    ),
                ));
                None
            }
        };
        (CostConfig { prices, memory_mb }, warnings)
    }
}

/// Megabytes of configured memory in gigabytes, as Lambda bills them (1,024 MB a GB).
fn gb(memory_mb: f64) -> f64 {
    memory_mb / 1024.0
}

/// One invocation: its billed duration at its memory, plus the request charge.
pub(crate) fn invocation_cost(p: &Prices, billed_ms: f64, memory_mb: f64) -> f64 {
    billed_ms / 1000.0 * gb(memory_mb) * p.gb_second + p.per_request
}

/// The INIT phase alone: its duration rounded up to the millisecond, at the memory.
pub(crate) fn init_cost(p: &Prices, init_ms: f64, memory_mb: f64) -> f64 {
    init_ms.ceil() / 1000.0 * gb(memory_mb) * p.gb_second
}

/// A SnapStart restore: the memory restored, plus the billed restore duration if reported.
/// `None` when restores are not priced.
pub(crate) fn restore_cost(
    p: &Prices,
    memory_mb: f64,
    billed_restore_ms: Option<f64>,
) -> Option<f64> {
    let restore = p.restore_gb?;
    let hooks = billed_restore_ms.map_or(0.0, |ms| ms / 1000.0 * gb(memory_mb) * p.gb_second);
    Some(gb(memory_mb) * restore + hooks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_priced_before_a_report_is_the_function_s_configured_memory() {
        let env = [("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")];
        let (config, _) = CostConfig::from_env(&env, Architecture::X86_64);
        assert_eq!(config.memory_mb, Some(1769.0));
        for bad in ["lots", "0", "-128"] {
            let env = [("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", bad)];
            assert_eq!(
                CostConfig::from_env(&env, Architecture::X86_64).0.memory_mb,
                None
            );
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15_f64.max(b.abs() * 1e-9)
    }

    fn us_east_1_x86() -> Prices {
        CostConfig::from_env(&[(REGION_VAR, "us-east-1")], Architecture::X86_64)
            .0
            .prices
            .unwrap()
    }

    #[test]
    fn an_invocation_costs_its_billed_gb_seconds_and_the_request() {
        let p = us_east_1_x86();
        // 512 MB = 0.5 GB; billed 120 ms = 0.12 s: 0.06 GB-s × $0.0000166667 = $0.000001000002,
        // plus $0.20 / 1,000,000 = $0.0000002: $0.000001200002.
        assert!(close(invocation_cost(&p, 120.0, 512.0), 0.000_001_200_002));
        // 1,769 MB for 1,000 ms: 1.7275390625 GB-s × $0.0000166667 = $0.0000287923...
        let by_hand = 1769.0 / 1024.0 * 0.000_016_666_7 + 0.000_000_2;
        assert!(close(invocation_cost(&p, 1000.0, 1769.0), by_hand));
    }

    #[test]
    fn arm64_has_its_own_duration_price_and_the_same_request_price() {
        let (c, w) = CostConfig::from_env(&[(REGION_VAR, "eu-west-1")], Architecture::Arm64);
        assert!(w.is_empty());
        let p = c.prices.unwrap();
        // 0.06 GB-s × $0.0000133334 = $0.000000800004, + $0.0000002.
        assert!(close(invocation_cost(&p, 120.0, 512.0), 0.000_001_000_004));
    }

    #[test]
    fn init_is_rounded_up_to_the_millisecond() {
        let p = us_east_1_x86();
        // 250.2 ms → 251 ms at 1,024 MB: 0.251 GB-s × $0.0000166667 = $0.0000041833417.
        assert!(close(init_cost(&p, 250.2, 1024.0), 0.000_004_183_341_7));
        assert!(close(init_cost(&p, 0.0, 1024.0), 0.0));
    }

    #[test]
    fn a_restore_costs_the_memory_restored_and_its_billed_hooks() {
        let p = us_east_1_x86();
        // 2,048 MB restored: 2 GB × $0.0001397998 = $0.0002795996.
        assert!(close(
            restore_cost(&p, 2048.0, None).unwrap(),
            0.000_279_599_6
        ));
        // With 31 ms of runtime hooks billed: + 0.062 GB-s × $0.0000166667 = $0.0000010333354.
        assert!(close(
            restore_cost(&p, 2048.0, Some(31.0)).unwrap(),
            0.000_279_599_6 + 0.000_001_033_335_4
        ));
        let unpriced = Prices {
            restore_gb: None,
            ..p
        };
        assert_eq!(restore_cost(&unpriced, 2048.0, None), None);
    }

    #[test]
    fn variables_override_the_documented_prices() {
        let env = [
            (REGION_VAR, "us-east-1"),
            (GB_SECOND_VAR, "0.00001"),
            (PER_MILLION_REQUESTS_VAR, "0.25"),
            (SNAPSTART_RESTORE_GB_VAR, "0.0002"),
        ];
        let (c, w) = CostConfig::from_env(&env, Architecture::X86_64);
        assert!(w.is_empty());
        let p = c.prices.unwrap();
        assert_eq!(p.gb_second, 0.00001);
        assert!(close(p.per_request, 0.000_000_25));
        assert_eq!(p.restore_gb, Some(0.0002));
    }

    #[test]
    fn a_region_without_documented_prices_needs_both_variables() {
        let (c, w) = CostConfig::from_env(&[(REGION_VAR, "ap-east-1")], Architecture::X86_64);
        assert_eq!(c.prices, None);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].var, REGION_VAR);
        assert!(w[0].reason.contains(GB_SECOND_VAR), "{}", w[0]);
        let (c, w) = CostConfig::from_env(&[], Architecture::X86_64);
        assert_eq!((c.prices, w.len()), (None, 0), "no region: not on Lambda");
        let env = [
            (REGION_VAR, "ap-east-1"),
            (GB_SECOND_VAR, "0.0000229"),
            (PER_MILLION_REQUESTS_VAR, "0.28"),
        ];
        let (c, w) = CostConfig::from_env(&env, Architecture::X86_64);
        assert!(w.is_empty());
        let p = c.prices.unwrap();
        assert_eq!((p.gb_second, p.restore_gb), (0.0000229, None));
    }

    #[test]
    fn a_bad_price_turns_estimates_off_with_a_warning_per_variable() {
        for bad in ["-0.1", "free", "NaN", "inf", "1e9"] {
            let env = [(REGION_VAR, "us-east-1"), (GB_SECOND_VAR, bad)];
            let (c, w) = CostConfig::from_env(&env, Architecture::X86_64);
            assert_eq!(c.prices, None, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
            assert!(
                w[0].to_string().starts_with("CONTRAIL_PRICE_GB_SECOND="),
                "{}",
                w[0]
            );
            assert!(w[0].reason.contains("cost estimates are off"));
        }
        let env = [
            (REGION_VAR, "us-east-1"),
            (PER_MILLION_REQUESTS_VAR, "lots"),
            (SNAPSTART_RESTORE_GB_VAR, "-1"),
        ];
        let (c, w) = CostConfig::from_env(&env, Architecture::X86_64);
        assert_eq!((c.prices, w.len()), (None, 2));
    }
}
