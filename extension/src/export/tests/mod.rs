//! Delivery against real backends on loopback: a scripted one, one on https, and servers that
//! check the request line.

mod aws;
mod backend;
mod breaker;
mod misbehaviour;
mod origin_form;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;

use crate::diag::Stats;
use crate::export::config::ExportConfig;
use crate::export::delivery::Delivery;
use crate::lifecycle::policy::{DEFAULT_BUDGET, DEFAULT_INTERVAL};

/// A delivery configured by `vars` (as the environment would), and its counters.
fn delivery(vars: &[(&str, &str)]) -> (Delivery, Arc<Stats>) {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = ExportConfig::from_env(&env).unwrap();
    let stats = Arc::new(Stats::default());
    (
        Delivery::new(config, DEFAULT_INTERVAL, DEFAULT_BUDGET, stats.clone()),
        stats,
    )
}
