//! The execution environment as a whole: what its invocations, its INIT phase and its restore
//! cost (`cost.rs`), how busy it is (`utilization.rs`), and Contrail's own share of its cold
//! start (`cold_start.rs`). The mapper's calls into those pure modules; every figure is recorded
//! from records that arrive anyway or at a flush that happens anyway.

use crate::intake::telemetry::event::ReportMetrics;
use crate::mapping::Mapper;
use crate::mapping::metrics::MetricId;
use crate::mapping::otlp::ms_to_ns;

use super::cold_start::{OwnInit, own_span};
use super::cost::{self, Prices};

impl Mapper {
    /// Contrail's own start-up, told by the lifecycle once its first `next` has returned. Its
    /// span joins the init span, now if that was emitted already.
    pub(crate) fn on_own_init(&mut self, own: OwnInit) {
        if self.own_init.is_some() {
            return;
        }
        self.own_init = Some((own, false));
        if self.init.as_ref().is_some_and(|p| p.emitted) {
            self.emit_own_init();
        }
    }

    /// Contrail's span under the init span, once, when both are known. Not under a snapshot's
    /// init: a restored environment's Contrail started before the snapshot was taken.
    pub(super) fn emit_own_init(&mut self) {
        let Some(init) = self.init.as_ref().filter(|p| !p.snapshot) else {
            return;
        };
        if let Some((own, emitted @ false)) = self.own_init.as_mut() {
            *emitted = true;
            self.staged_spans.push(own_span(&init.ctx, *own));
        }
    }

    /// A `platform.report`: the invocation's busy time, its idle gap, its cost, and the
    /// restore's cost once (the first report after a restore holds its billed hooks).
    pub(super) fn account_invocation(&mut self, start_ns: Option<u64>, m: &ReportMetrics, t: u64) {
        if let Some(ms) = m.duration_ms {
            let duration = ms_to_ns(ms);
            let start = start_ns.unwrap_or_else(|| t.saturating_sub(duration));
            if let Some(gap) = self.utilization.invocation(start, duration) {
                self.metrics.record(MetricId::IdleGap, gap as f64 / 1e9, t);
            }
        }
        let Some(prices) = self.config.cost.prices else {
            return;
        };
        let memory = m
            .memory_size_mb
            .map(|mb| mb as f64)
            .or(self.config.cost.memory_mb);
        let Some(memory) = memory else {
            return;
        };
        if let Some(billed) = m.billed_duration_ms {
            let usd = cost::invocation_cost(&prices, billed, memory);
            self.metrics.record(MetricId::InvocationCost, usd, t);
        }
        self.cost_restore(&prices, memory, m.billed_restore_duration_ms, t);
    }

    /// The restore's cost, once per restored environment.
    fn cost_restore(&mut self, prices: &Prices, memory: f64, billed_ms: Option<f64>, t: u64) {
        if self.restore.is_none() || self.restore_costed {
            return;
        }
        self.restore_costed = true;
        if let Some(usd) = cost::restore_cost(prices, memory, billed_ms) {
            self.metrics.record(MetricId::RestoreCost, usd, t);
        }
    }

    /// The INIT phase's duration was recorded: its cost, if it is billed as on-demand.
    pub(super) fn account_init(&mut self, ms: f64, t: u64) {
        let on_demand = self.restore.is_none()
            && matches!(
                self.initialization_type.as_deref(),
                None | Some("on-demand")
            );
        if let (true, Some(prices), Some(memory)) = (
            on_demand,
            self.config.cost.prices,
            self.config.cost.memory_mb,
        ) {
            self.metrics
                .record(MetricId::InitCost, cost::init_cost(&prices, ms, memory), t);
        }
    }

    /// At a flush after something happened, and at SHUTDOWN (`always`): the environment's
    /// utilization so far.
    pub(super) fn record_utilization(&mut self, now_ns: u64, always: bool) {
        if !self.utilization.take_changed() && !always {
            return;
        }
        let Some(s) = self.utilization.at(now_ns) else {
            return;
        };
        self.metrics
            .record(MetricId::Utilization, s.utilization, now_ns);
        self.metrics
            .record(MetricId::Lifetime, s.lifetime_s, now_ns);
        self.metrics.record(MetricId::BusyTime, s.busy_s, now_ns);
        self.metrics.record(
            MetricId::EnvironmentInvocations,
            s.invocations as f64,
            now_ns,
        );
    }

    /// At SHUTDOWN: an init never used, and a restore no report came after (priced without
    /// its hooks).
    pub(super) fn on_shutdown_costs(&mut self, end_ns: u64) {
        if self.utilization.unused() {
            self.metrics.record(MetricId::UnusedInit, 1.0, end_ns);
        }
        if let (Some(prices), Some(memory)) = (self.config.cost.prices, self.config.cost.memory_mb)
        {
            self.cost_restore(&prices, memory, None, end_ns);
        }
    }
}
