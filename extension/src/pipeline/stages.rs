//! The production stages the worker drives: the mapper, then delivery.
//!
//! Each unit of intake goes through here on its way from the queue to the export buffer: the
//! Telemetry API's records through the mapper, the function SDK's OTLP through the resource
//! merge; at each flush the mapper's metrics (and, at shutdown, whatever it still holds) join
//! the buffer before delivery exports it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

use crate::config::{Platform, Settings};
use crate::diag;
use crate::diag::{DropReason, Stats};
use crate::export::FlushOutcome;
use crate::export::cut::Cut;
use crate::export::delivery::Delivery;
use crate::intake::environment::Sampler;
use crate::intake::receiver;
use crate::intake::telemetry::event::{Event, TelemetryRecord};
use crate::lambda_api::{InvokeEvent, Registration};
use crate::mapping::resource::{resource_str, set_resource_attribute};
use crate::mapping::{InvokeInfo, Mapper, OwnInit};
use crate::pipeline::worker::Stages;
use crate::pipeline::{OtlpPayload, Signals};

/// The production stages: the mapper and delivery, owned by the worker.
pub(crate) struct Pipeline {
    mapper: Mapper,
    delivery: Delivery,
    /// Merged into what the function's own SDK sends to the local receiver.
    resource: Resource,
    stats: Arc<Stats>,
    /// `/proc` readings of the environment's processes per invocation.
    sampler: Sampler,
}

impl Pipeline {
    /// Build the stages. No I/O: the exporter connects (and sets up TLS) on its first flush.
    pub(crate) fn new(
        settings: &Settings,
        registration: &Registration,
        platform: Platform,
        stats: Arc<Stats>,
    ) -> Pipeline {
        let mut resource = settings.resource.clone();
        if let Some(account) = &registration.account_id
            && resource_str(&resource, "cloud.account.id").is_none()
        {
            set_resource_attribute(&mut resource, "cloud.account.id", account);
        }
        let mut mapper = Mapper::new(settings.mapping.clone(), resource.clone(), stats.clone());
        if platform == Platform::Classic {
            mapper.expect_invokes();
        }
        let mut delivery = Delivery::new(
            settings.export.clone(),
            settings.flush.interval,
            settings.flush.budget,
            stats.clone(),
        );
        delivery.set_resource(resource.clone());
        // On Managed Instances no INVOKE comes, so it never reads anything.
        let sampler = Sampler::new(settings.environment.clone());
        Pipeline {
            mapper,
            delivery,
            resource,
            stats,
            sampler,
        }
    }
}

impl Pipeline {
    /// Once `platform.initStart` names the environment (`faas.instance`), the function SDK's
    /// data and Contrail's own metrics carry it too: every record can be told apart by
    /// environment, as the platform's records are.
    fn follow_instance(&mut self) {
        let Some(instance) = resource_str(self.mapper.resource(), "faas.instance") else {
            return;
        };
        if resource_str(&self.resource, "faas.instance") != Some(instance) {
            let instance = instance.to_owned();
            set_resource_attribute(&mut self.resource, "faas.instance", &instance);
            self.delivery.set_resource(self.resource.clone());
        }
    }
}

pub(crate) fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Stages for Pipeline {
    fn invoke(&mut self, event: &InvokeEvent) {
        let now_ns = now_unix_nano();
        let (previous, init) = self
            .sampler
            .begin(&event.request_id, Instant::now(), now_ns);
        if let Some(usage) = previous {
            self.mapper.on_usage(usage, now_ns);
        }
        if let Some(init) = init {
            self.mapper.on_init_usage(init);
        }
        if self.mapper.runtime_done_seen(&event.request_id) {
            // Its runtimeDone was mapped before this event was handled (a busy thread): the
            // invocation is over, nothing of it is left to read, and its span goes without
            // readings rather than with those of the time after it.
            let _ = self.sampler.end(now_ns);
        }
        self.mapper.on_invoke(
            InvokeInfo {
                request_id: event.request_id.clone(),
                deadline_ms: event.deadline_ms,
                invoked_function_arn: event.invoked_function_arn.clone(),
                xray_header: event.xray_header.clone(),
            },
            now_unix_nano(),
        );
        self.delivery.prefetch();
    }

    fn own_init(&mut self, own: OwnInit) {
        self.mapper.on_own_init(own);
    }

    fn telemetry(&mut self, records: Vec<TelemetryRecord>) {
        // A SnapStart restore: credentials and secrets held since the snapshot may be stale.
        if records
            .iter()
            .any(|r| matches!(r.event, Event::RestoreStart(_)))
        {
            self.delivery.restored();
        }
        // The invocation's runtimeDone: its readings end now, before its span is made.
        if let Some(open) = self.sampler.open_request()
            && records
                .iter()
                .any(|r| matches!(&r.event, Event::RuntimeDone(d) if d.request_id == open))
        {
            self.idle();
        }
        let mut out = Signals::default();
        self.mapper.on_records(records, &mut out);
        self.follow_instance();
        if !out.is_empty() {
            self.delivery.push(out);
        }
    }

    /// The function SDK's data joins the buffer only if it fits beside what is there: over the
    /// bound the buffer drops its oldest data, and a flood of SDK requests must not push out
    /// the Telemetry API records buffered before it (ADR 0015). What does not fit is dropped
    /// and counted as `buffer_full`, as the buffer would have counted what it pushed out.
    fn otlp(&mut self, payload: OtlpPayload) {
        let signals = receiver::merge_resource(payload, &self.resource);
        if let Some(records) = self.delivery.push_if_room(signals) {
            static FULL: diag::Once = diag::Once::new();
            self.stats.dropped(DropReason::BufferFull, records);
            FULL.warn(format_args!(
                "receiver: the export buffer has no room for a request of the function's SDK; its records are dropped (counted as buffer_full), what is buffered is kept"
            ));
        }
    }

    async fn flush(&mut self, deadline: Instant, last: bool, cut: Option<Cut>) -> FlushOutcome {
        if last {
            self.idle();
        }
        let mut out = Signals::default();
        if last {
            self.mapper.finish(now_unix_nano(), &mut out);
        } else {
            self.mapper.collect_metrics(now_unix_nano(), &mut out);
        }
        if !out.is_empty() {
            self.delivery.push(out);
        }
        match cut {
            _ if last => self.delivery.finish(deadline).await,
            Some(cut) => self.delivery.flush_while_running(deadline, &cut).await,
            None => self.delivery.flush(deadline).await,
        }
    }

    fn buffer_fill(&self) -> f64 {
        self.delivery.buffer_fill()
    }

    fn backend_held(&self) -> bool {
        self.delivery.backend_held()
    }

    fn idle(&mut self) {
        let now_ns = now_unix_nano();
        if let Some(usage) = self.sampler.end(now_ns) {
            self.mapper.on_usage(usage, now_ns);
        }
    }

    fn sample_due(&self) -> Option<Instant> {
        self.sampler.sample_due()
    }

    fn sample(&mut self) {
        self.sampler.sample(Instant::now(), now_unix_nano());
    }
}

impl Pipeline {
    /// The secrets resolver's task, to spawn beside the worker (once, when secrets are used).
    pub(crate) fn take_resolver(&mut self) -> Option<crate::export::delivery::Resolver> {
        self.delivery.take_resolver()
    }
}
