//! Placeholder replaced by the event model.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord;
