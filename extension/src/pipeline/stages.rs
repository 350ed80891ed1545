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

use crate::config::Settings;
use crate::diag::Stats;
use crate::export::FlushOutcome;
use crate::export::delivery::Delivery;
use crate::intake::environment::Sampler;
use crate::intake::receiver;
use crate::intake::telemetry::event::{Event, TelemetryRecord};
use crate::lambda_api::{InvokeEvent, Registration};
use crate::mapping::resource::{resource_str, set_resource_attribute};
use crate::mapping::{InvokeInfo, Mapper};
use crate::pipeline::worker::Stages;
use crate::pipeline::{OtlpPayload, Signals};

/// The production stages: the mapper and delivery, owned by the worker.
pub(crate) struct Pipeline {
    mapper: Mapper,
    delivery: Delivery,
    /// Merged into what the function's own SDK sends to the local receiver.
    resource: Resource,
    /// `/proc` readings of the environment's processes per invocation.
    sampler: Option<Sampler>,
}

impl Pipeline {
    /// Build the stages. No I/O: the exporter connects (and sets up TLS) on its first flush.
    pub(crate) fn new(
        settings: &Settings,
        registration: &Registration,
        stats: Arc<Stats>,
    ) -> Pipeline {
        let mut resource = settings.resource.clone();
        if let Some(account) = &registration.account_id
            && resource_str(&resource, "cloud.account.id").is_none()
        {
            set_resource_attribute(&mut resource, "cloud.account.id", account);
        }
        let mapper = Mapper::new(settings.mapping.clone(), resource.clone(), stats.clone());
        let mut delivery = Delivery::new(settings.export.clone(), settings.flush.interval, stats);
        delivery.set_resource(resource.clone());
        // On Managed Instances no INVOKE comes, so it never reads anything.
        let sampler = Some(Sampler::new(settings.environment.clone()));
        Pipeline {
            mapper,
            delivery,
            resource,
            sampler,
        }
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Stages for Pipeline {
    fn invoke(&mut self, event: &InvokeEvent) {
        if let Some(sampler) = self.sampler.as_mut() {
            let now_ns = now_unix_nano();
            let (previous, init) = sampler.begin(&event.request_id, Instant::now(), now_ns);
            if let Some(usage) = previous {
                self.mapper.on_usage(usage, now_ns);
            }
            if let Some(init) = init {
                self.mapper.on_init_usage(init);
            }
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

    fn telemetry(&mut self, records: Vec<TelemetryRecord>) {
        // A SnapStart restore: credentials and secrets held since the snapshot may be stale.
        if records
            .iter()
            .any(|r| matches!(r.event, Event::RestoreStart(_)))
        {
            self.delivery.restored();
        }
        // The invocation's runtimeDone: its readings end now, before its span is made.
        if let Some(sampler) = self.sampler.as_mut()
            && let Some(open) = sampler.open_request()
            && records
                .iter()
                .any(|r| matches!(&r.event, Event::RuntimeDone(d) if d.request_id == open))
        {
            let now_ns = now_unix_nano();
            if let Some(usage) = sampler.end(now_ns) {
                self.mapper.on_usage(usage, now_ns);
            }
        }
        let mut out = Signals::default();
        self.mapper.on_records(records, &mut out);
        if !out.is_empty() {
            self.delivery.push(out);
        }
    }

    fn otlp(&mut self, payload: OtlpPayload) {
        self.delivery
            .push(receiver::merge_resource(payload, &self.resource));
    }

    async fn flush(&mut self, deadline: Instant, last: bool) -> FlushOutcome {
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
        if last {
            self.delivery.finish(deadline).await
        } else {
            self.delivery.flush(deadline).await
        }
    }

    fn buffer_fill(&self) -> f64 {
        self.delivery.buffer_fill()
    }

    fn idle(&mut self) {
        let now_ns = now_unix_nano();
        if let Some(usage) = self.sampler.as_mut().and_then(|s| s.end(now_ns)) {
            self.mapper.on_usage(usage, now_ns);
        }
    }

    fn sample_due(&self) -> Option<Instant> {
        self.sampler.as_ref()?.sample_due()
    }

    fn sample(&mut self) {
        if let Some(sampler) = self.sampler.as_mut() {
            sampler.sample(Instant::now(), now_unix_nano());
        }
    }
}

impl Pipeline {
    /// The secrets resolver's task, to spawn beside the worker (once, when secrets are used).
    pub(crate) fn take_resolver(&mut self) -> Option<crate::export::delivery::Resolver> {
        self.delivery.take_resolver()
    }
}
