//! The init and SnapStart restore phases: one span each (`aws.lambda.init`,
//! `aws.lambda.restore`) from their `*Start`, `*RuntimeDone` and `*Report` records, which one is
//! the environment's cold start, and their duration metrics.

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::intake::telemetry::event::{
    InitReport, InitRuntimeDone, InitStart, PhaseSpan, RestoreReport, RestoreRuntimeDone,
    RestoreStart,
};
use crate::mapping::metrics::MetricId;
use crate::mapping::otlp::{fnv1a, kv_bool, kv_str, ms_to_ns};
use crate::mapping::{Mapper, SpanCtx, resource};

use super::cold_start;
use super::spans::{child_span, span_status};

/// Whether the environment's init and restore durations were recorded: each comes from its
/// own `*Report` or from `platform.report` (`initDurationMs`, `restoreDurationMs`), whichever
/// arrives first, once.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PhaseDurations {
    init: bool,
    restore: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PhaseKind {
    Init,
    Restore,
}

/// An init or a SnapStart restore phase.
#[derive(Debug)]
pub(super) struct Phase {
    pub(super) ctx: SpanCtx,
    pub(super) start_ns: Option<u64>,
    pub(super) initialization_type: Option<String>,
    pub(super) phase: Option<String>,
    /// An init that describes the creation of a SnapStart snapshot, not this environment.
    pub(super) snapshot: bool,
    pub(super) runtime_done: Option<PhaseEnd>,
    pub(super) emitted: bool,
}

impl Phase {
    /// What a `*RuntimeDone` or `*Report` says of the phase's type and phase, where its start
    /// did not.
    fn note_type_and_phase(&mut self, initialization_type: Option<String>, phase: Option<String>) {
        self.snapshot |= initialization_type.as_deref() == Some("snap-start");
        if self.initialization_type.is_none() {
            self.initialization_type = initialization_type;
        }
        if self.phase.is_none() {
            self.phase = phase;
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct PhaseEnd {
    pub(super) time_ns: u64,
    pub(super) status: Option<String>,
    pub(super) error_type: Option<String>,
    pub(super) spans: Vec<PhaseSpan>,
}

impl Mapper {
    /// Initialization ran ahead of any request (provisioned concurrency, Managed Instances):
    /// the first invocation is not a cold start. A SnapStart restore always is.
    pub(super) fn prewarmed(&self) -> bool {
        self.restore.is_none()
            && matches!(
                self.initialization_type.as_deref(),
                Some("provisioned-concurrency" | "lambda-managed-instances")
            )
    }

    /// The span the first invocation links to as its cold start.
    pub(super) fn cold_link(&self) -> Option<SpanCtx> {
        if let Some(restore) = &self.restore {
            return Some(restore.ctx);
        }
        self.init.as_ref().filter(|p| !p.snapshot).map(|p| p.ctx)
    }

    fn phase_mut(&mut self, kind: PhaseKind, t: u64) -> &mut Phase {
        let ctx = SpanCtx {
            trace_id: self.ids.trace_id((t / 1_000_000_000) as u32),
            span_id: self.ids.span_id(),
        };
        let slot = match kind {
            PhaseKind::Init => &mut self.init,
            PhaseKind::Restore => &mut self.restore,
        };
        slot.get_or_insert_with(|| Phase {
            ctx,
            start_ns: None,
            initialization_type: None,
            phase: None,
            snapshot: false,
            runtime_done: None,
            emitted: false,
        })
    }

    pub(super) fn on_init_start(&mut self, start: InitStart, t: u64) {
        // A second init (the first failed and Lambda re-ran it): the earlier one is done, and
        // this one has its own duration.
        if self.init.as_ref().is_some_and(|p| p.start_ns.is_some()) {
            self.emit_phase(PhaseKind::Init, None, t);
            self.init = None;
            self.durations.init = false;
        }
        if let Some(instance) = start.instance_id.as_deref() {
            resource::set_resource_attribute(&mut self.resource, "faas.instance", instance);
        }
        if resource::resource_str(&self.resource, "faas.name").is_none() {
            if let Some(name) = &start.function_name {
                self.function_name = name.clone();
            }
        }
        let snapshot = start.initialization_type.as_deref() == Some("snap-start");
        if !snapshot && start.initialization_type.is_some() {
            self.initialization_type
                .clone_from(&start.initialization_type);
        }
        if !snapshot {
            self.utilization.started(t);
        }
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.start_ns = Some(t);
        phase.snapshot = snapshot;
        phase.phase = start.phase;
        phase.initialization_type = start.initialization_type;
        self.release_init_logs();
    }

    pub(super) fn on_init_runtime_done(&mut self, done: InitRuntimeDone, t: u64) {
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.note_type_and_phase(done.initialization_type, done.phase);
        phase.runtime_done = Some(PhaseEnd {
            time_ns: t,
            status: done.status,
            error_type: done.error_type,
            spans: done.spans,
        });
    }

    pub(super) fn on_init_report(&mut self, report: InitReport, t: u64) {
        let phase = self.phase_mut(PhaseKind::Init, t);
        phase.note_type_and_phase(report.initialization_type, report.phase);
        if !phase.snapshot {
            self.record_phase_duration(PhaseKind::Init, report.duration_ms, t);
        }
        let end = PhaseEnd {
            time_ns: t,
            status: report.status,
            error_type: report.error_type,
            spans: report.spans,
        };
        self.emit_phase(PhaseKind::Init, Some((end, report.duration_ms)), t);
    }

    pub(super) fn on_restore_start(&mut self, start: RestoreStart, t: u64) {
        self.ids.mix(t);
        if let Some(instance) = start.instance_id.as_deref() {
            self.ids.mix(fnv1a(instance.as_bytes()));
            resource::set_resource_attribute(&mut self.resource, "faas.instance", instance);
        }
        self.utilization.started(t);
        let phase = self.phase_mut(PhaseKind::Restore, t);
        phase.start_ns = Some(t);
        phase.initialization_type = Some("snap-start".to_owned());
        self.release_init_logs();
    }

    pub(super) fn on_restore_runtime_done(&mut self, done: RestoreRuntimeDone, t: u64) {
        let phase = self.phase_mut(PhaseKind::Restore, t);
        phase.runtime_done = Some(PhaseEnd {
            time_ns: t,
            status: done.status,
            error_type: done.error_type,
            spans: done.spans,
        });
    }

    pub(super) fn on_restore_report(&mut self, report: RestoreReport, t: u64) {
        self.phase_mut(PhaseKind::Restore, t);
        self.record_phase_duration(PhaseKind::Restore, report.duration_ms, t);
        let end = PhaseEnd {
            time_ns: t,
            status: report.status,
            error_type: report.error_type,
            spans: report.spans,
        };
        self.emit_phase(PhaseKind::Restore, Some((end, report.duration_ms)), t);
    }

    /// The init or restore duration, from its own report or from `platform.report`, unless
    /// it was already recorded.
    pub(super) fn record_phase_duration(&mut self, kind: PhaseKind, ms: Option<f64>, t: u64) {
        let (recorded, metric) = match kind {
            PhaseKind::Init => (&mut self.durations.init, MetricId::InitDuration),
            PhaseKind::Restore => (&mut self.durations.restore, MetricId::RestoreDuration),
        };
        if let (false, Some(ms)) = (*recorded, ms) {
            *recorded = true;
            self.metrics.record(metric, ms / 1000.0, t);
            if kind == PhaseKind::Init {
                self.account_init(ms, t);
            }
        }
    }

    /// Emit the init or restore span (once). `report` is the `*Report` end and its
    /// `durationMs`, if it had one; without a report the span is cut short at `end_ns` and
    /// marked incomplete.
    pub(super) fn emit_phase(
        &mut self,
        kind: PhaseKind,
        report: Option<(PhaseEnd, Option<f64>)>,
        end_ns: u64,
    ) {
        let prewarmed = self.prewarmed();
        let slot = match kind {
            PhaseKind::Init => &mut self.init,
            PhaseKind::Restore => &mut self.restore,
        };
        let Some(phase) = slot.as_mut() else {
            return;
        };
        if phase.emitted {
            return;
        }
        phase.emitted = true;
        let incomplete = report.is_none();
        let (end_info, duration_ms) = match report {
            Some((end, d)) => (Some(end), d),
            None => (phase.runtime_done.clone(), None),
        };
        let start = phase
            .start_ns
            .or_else(|| duration_ms.map(|d| end_ns.saturating_sub(ms_to_ns(d))))
            .unwrap_or(end_ns);
        let end = match duration_ms {
            Some(d) => start.saturating_add(ms_to_ns(d)),
            None => end_info.as_ref().map_or(end_ns, |e| e.time_ns).max(start),
        };
        if !incomplete && !phase.snapshot {
            self.utilization.ready(end);
        }
        let mut attributes = Vec::with_capacity(6);
        attributes.push(kv_bool(
            "faas.coldstart",
            kind == PhaseKind::Restore || (!phase.snapshot && !prewarmed),
        ));
        if let Some(t) = &phase.initialization_type {
            attributes.push(kv_str("aws.lambda.initialization_type", t.clone()));
        }
        if let Some(p) = &phase.phase {
            attributes.push(kv_str("aws.lambda.phase", p.clone()));
        }
        if phase.snapshot {
            attributes.push(kv_bool("aws.lambda.snapstart.snapshot", true));
        }
        // A restored environment's snapshot init ran elsewhere: these readings are not its.
        if let (PhaseKind::Init, false, Some(usage)) = (kind, phase.snapshot, &self.init_usage) {
            super::usage::init_attributes(usage, &mut attributes);
        }
        // The report's status wins; the runtime's is the fallback.
        let runtime_end = phase.runtime_done.as_ref();
        let status_text = end_info
            .as_ref()
            .and_then(|e| e.status.clone())
            .or_else(|| runtime_end.and_then(|e| e.status.clone()));
        let error_type = end_info
            .as_ref()
            .and_then(|e| e.error_type.clone())
            .or_else(|| runtime_end.and_then(|e| e.error_type.clone()));
        let status = span_status(
            status_text.as_deref(),
            error_type.as_deref(),
            &mut attributes,
        );
        if incomplete {
            attributes.push(kv_bool("aws.lambda.incomplete", true));
        }
        let init_failed = kind == PhaseKind::Init
            && !phase.snapshot
            && status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32);
        let ctx = phase.ctx;
        let mut children: Vec<Span> = Vec::new();
        if kind == PhaseKind::Init && !phase.snapshot {
            children = cold_start::phase_spans(
                &ctx,
                phase.start_ns,
                runtime_end.map(|e| e.time_ns),
                (!incomplete).then_some(end),
            );
        }
        let report_spans = if incomplete { None } else { end_info.as_ref() };
        for e in [runtime_end, report_spans].into_iter().flatten() {
            for s in &e.spans {
                let duplicate = children.iter().any(|c| {
                    c.start_time_unix_nano == s.start_unix_nano
                        && c.name.strip_prefix("aws.lambda.") == Some(s.name.as_str())
                });
                if !duplicate {
                    children.push(child_span(&ctx, s));
                }
            }
        }
        let name = match kind {
            PhaseKind::Init => "aws.lambda.init",
            PhaseKind::Restore => "aws.lambda.restore",
        };
        self.staged_spans.push(Span {
            trace_id: ctx.trace_id.to_vec(),
            span_id: ctx.span_id.to_vec(),
            name: name.to_owned(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status,
            ..Default::default()
        });
        self.staged_spans.extend(children);
        if init_failed {
            self.metrics.record(MetricId::InitFailures, 1.0, end);
        }
        if kind == PhaseKind::Init {
            self.emit_own_init();
        }
    }
}
