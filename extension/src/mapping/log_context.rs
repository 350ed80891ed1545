//! Log lines and their trace context: each `function` or `extension` line gets the trace and
//! span ids of its invocation (or of init), and is held while that context is not known yet.

use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::intake::telemetry::event::LogLine;
use crate::mapping::logs::parse_log;
use crate::mapping::otlp::kv_str;
use crate::mapping::{Mapper, SpanCtx};

impl Mapper {
    pub(super) fn on_log(&mut self, line: LogLine, t: u64, extension: bool) {
        let parsed = parse_log(line, t, self.current.as_deref());
        let mut record = parsed.record;
        if extension {
            record.attributes.push(self.extension_source.clone());
        }
        // Borrowed: most lines name no invocation and take the current one.
        let id = parsed.request_id.as_deref().or(self.current.as_deref());
        let Some(id) = id else {
            // No invocation yet: a line of init (or of a restore).
            let ctx = self.restore.as_ref().or(self.init.as_ref()).map(|p| p.ctx);
            match ctx {
                Some(ctx) => {
                    set_log_ctx(&mut record, &ctx);
                    self.staged_logs.push(record);
                }
                None if self.invocations_seen == 0
                    && self.held_init_logs.len() < self.config.max_held_logs =>
                {
                    self.held_init_logs.push(record);
                }
                None => self.staged_logs.push(record),
            }
            return;
        };
        record.attributes.push(kv_str("faas.invocation_id", id));
        let max_held = self.config.max_held_logs;
        if let Some(inv) = self.pending.get_mut(id) {
            match inv.ctx {
                Some(ctx) => set_log_ctx(&mut record, &ctx),
                None if inv.held.len() < max_held => {
                    inv.held.push(record);
                    return;
                }
                // Too many held: emitted without trace context rather than lost.
                None => {}
            }
        } else if let Some(ctx) = self.recent_ctx(id) {
            set_log_ctx(&mut record, &ctx);
        }
        self.staged_logs.push(record);
    }

    pub(super) fn release_init_logs(&mut self) {
        if self.held_init_logs.is_empty() {
            return;
        }
        let ctx = self.restore.as_ref().or(self.init.as_ref()).map(|p| p.ctx);
        for mut log in std::mem::take(&mut self.held_init_logs) {
            if let Some(ctx) = &ctx {
                set_log_ctx(&mut log, ctx);
            }
            self.staged_logs.push(log);
        }
    }

    /// Release every held log record: invocations whose context has not come get it fixed now.
    pub(super) fn release_held(&mut self) {
        let waiting: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, inv)| !inv.held.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            let t = self.last_ns;
            self.resolve_now(&id, t);
        }
        self.release_init_logs();
    }
}

pub(super) fn set_log_ctx(log: &mut LogRecord, ctx: &SpanCtx) {
    log.trace_id = ctx.trace_id.to_vec();
    log.span_id = ctx.span_id.to_vec();
}
