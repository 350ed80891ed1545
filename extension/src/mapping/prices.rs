//! AWS Lambda's documented list prices: the one table that Contrail's cost estimates
//! (`mapping/cost.rs`) and `contrail-sim tune` (`sim/src/tune.rs`, which includes this file by
//! path) both read, so that the two never disagree.
//!
//! Source: the AWS Lambda pricing page (<https://aws.amazon.com/lambda/pricing/>), checked on
//! 2026-12-02. Duration prices are the **first tier** of each architecture (x86_64: the first
//! 6 billion GB-seconds a month; arm64: the first 7.5 billion); the cheaper tiers past them, the
//! free tier, Savings Plans and any negotiated discount are not known here and not applied.
//! Lambda's prices are the same in US East (N. Virginia), US East (Ohio) and Europe (Ireland)
//! (the pricing page names Ohio's first tier; AWS's "Cost considerations for global
//! deployments" says US and Ireland are identical); other regions are not listed because their
//! prices were not checked: there the `CONTRAIL_PRICE_*` variables give them.
//!
//! Pure data, no dependencies: it is compiled into both crates.

/// List prices of one region, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RegionPrices {
    /// The region's code (`AWS_REGION`).
    pub(crate) region: &'static str,
    /// x86_64 duration, $ per GB-second (first tier).
    pub(crate) x86_64_gb_second: f64,
    /// arm64 duration, $ per GB-second (first tier).
    pub(crate) arm64_gb_second: f64,
    /// $ per million requests (both architectures).
    pub(crate) per_million_requests: f64,
    /// SnapStart restore, $ per GB of memory restored. (The SnapStart cache, $0.0000015046 per
    /// GB-second in these regions, accrues per published version for as long as it exists,
    /// whatever runs: no environment can tell its share, so it is not in the table.)
    pub(crate) snapstart_restore_gb: f64,
}

/// US East (N. Virginia): the prices the others are checked against.
pub(crate) const US_EAST_1: RegionPrices = RegionPrices {
    region: "us-east-1",
    x86_64_gb_second: 0.000_016_666_7,
    arm64_gb_second: 0.000_013_333_4,
    per_million_requests: 0.20,
    snapstart_restore_gb: 0.000_139_799_8,
};

/// Every region whose prices were checked.
pub(crate) const LAMBDA_PRICES: &[RegionPrices] = &[
    US_EAST_1,
    RegionPrices {
        region: "us-east-2",
        ..US_EAST_1
    },
    RegionPrices {
        region: "eu-west-1",
        ..US_EAST_1
    },
];

/// The documented prices of `region`, if it is in the table.
pub(crate) fn region_prices(region: &str) -> Option<&'static RegionPrices> {
    LAMBDA_PRICES.iter().find(|p| p.region == region)
}
