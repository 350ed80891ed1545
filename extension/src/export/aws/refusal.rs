//! What a refusal from one of AWS's OTLP endpoints means, pure, and what the user should do.
//!
//! | answer | [`Refusal`] | drop reason |
//! |---|---|---|
//! | 400 naming the "Trace Segment Destination" (X-Ray) | [`Refusal::TransactionSearchOff`] | `transaction_search_disabled` |
//! | 403 "… is not authorized to perform: ACTION …" | [`Refusal::AccessDenied`] | `access_denied` |
//! | 400 "… does not exist" (CloudWatch Logs) | [`Refusal::LogGroupMissing`] | `log_group_missing` |
//! | 403 naming the security token or the signature | [`Refusal::CredentialsRefused`] | the credentials are fetched again and the request retried once; then `access_denied` |
//!
//! The body may be a protobuf `google.rpc.Status`, JSON or text: [`crate::export::body::error_message`]
//! reads its message first.

use crate::diag::DropReason;

/// A refusal with a known cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    TransactionSearchOff,
    AccessDenied { action: Option<String> },
    LogGroupMissing,
    CredentialsRefused,
}

/// The cause of a 4xx from an endpoint signed for `service`, when it is one of the table's.
pub(crate) fn classify(status: u16, message: &str) -> Option<Refusal> {
    let lower = message.to_ascii_lowercase();
    match status {
        400 if lower.contains("trace segment destination") => Some(Refusal::TransactionSearchOff),
        400 | 404 if lower.contains("does not exist") => Some(Refusal::LogGroupMissing),
        401 | 403 if lower.contains("not authorized to perform") => {
            let action = message
                .split("not authorized to perform: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(|a| a.trim_end_matches(['.', ',']).to_owned());
            Some(Refusal::AccessDenied { action })
        }
        401 | 403
            if lower.contains("security token")
                || lower.contains("signature")
                || lower.contains("expired")
                || lower.contains("missing authentication token") =>
        {
            Some(Refusal::CredentialsRefused)
        }
        _ => None,
    }
}

impl Refusal {
    /// The drop reason of the data it refused.
    pub(crate) fn reason(&self) -> DropReason {
        match self {
            Refusal::TransactionSearchOff => DropReason::TransactionSearchDisabled,
            Refusal::AccessDenied { .. } | Refusal::CredentialsRefused => DropReason::AccessDenied,
            Refusal::LogGroupMissing => DropReason::LogGroupMissing,
        }
    }

    /// The cause and the fix, in one sentence each. `log_target` is `(group, stream)` of a logs
    /// request.
    pub(crate) fn advice(&self, service: &str, log_target: Option<(&str, &str)>) -> String {
        match self {
            Refusal::TransactionSearchOff => "X-Ray's OTLP endpoint takes spans only when CloudWatch Transaction Search is enabled in this account and region; enable it (CloudWatch console → Application Signals → Transaction Search, or `aws xray update-trace-segment-destination --destination CloudWatchLogs` after the logs resource policy it needs; the SAM template's EnableTransactionSearch parameter does both)".to_owned(),
            Refusal::AccessDenied { action } => {
                let needed = match service {
                    "xray" => "xray:PutTraceSegments, xray:PutSpans and xray:PutSpansForIndexing",
                    "logs" => "logs:PutLogEvents on the log group",
                    "monitoring" => "cloudwatch:PutMetricData",
                    _ => "the action the message names",
                };
                match action {
                    Some(a) => format!("the execution role may not call {a}; allow {needed} in its policy"),
                    None => format!("the execution role is not allowed to export here; allow {needed} in its policy"),
                }
            }
            Refusal::LogGroupMissing => {
                let (group, stream) = log_target.unwrap_or(("?", "?"));
                format!("CloudWatch Logs writes only to an existing log group and stream: create log group {group} and its stream {stream} (`aws logs create-log-group --log-group-name {group}`, `aws logs create-log-stream --log-group-name {group} --log-stream-name {stream}`), or point CONTRAIL_CLOUDWATCH_LOG_GROUP and CONTRAIL_CLOUDWATCH_LOG_STREAM at ones that exist")
            }
            Refusal::CredentialsRefused => "the endpoint refused the function's credentials even after they were fetched again; check the clock and that the region and service of the signature match the endpoint (CONTRAIL_EXPORTER_OTLP_[SIGNAL_]SIGV4_REGION / _SIGV4_SERVICE)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_refusals_are_recognised_from_their_messages() {
        let cases = [
            (
                400,
                "The OTLP API is supported with CloudWatch Logs as a Trace Segment Destination. Please enable the CloudWatch Logs destination for your traces using the UpdateTraceSegmentDestination API",
                Some(Refusal::TransactionSearchOff),
            ),
            (
                403,
                "User: arn:aws:sts::123456789012:assumed-role/fn-role/fn is not authorized to perform: xray:PutTraceSegments because no identity-based policy allows the xray:PutTraceSegments action",
                Some(Refusal::AccessDenied {
                    action: Some("xray:PutTraceSegments".into()),
                }),
            ),
            (
                400,
                "The specified log group does not exist.",
                Some(Refusal::LogGroupMissing),
            ),
            (
                403,
                "The security token included in the request is invalid.",
                Some(Refusal::CredentialsRefused),
            ),
            (
                403,
                "Signature expired: 20131008T001036Z is now earlier than 20131008T001112Z",
                Some(Refusal::CredentialsRefused),
            ),
            (400, "bad span", None),
            (403, "forbidden", None),
        ];
        for (status, message, expected) in cases {
            assert_eq!(classify(status, message), expected, "{message}");
        }
    }

    #[test]
    fn the_advice_names_the_fix() {
        let denied = Refusal::AccessDenied {
            action: Some("xray:PutTraceSegments".into()),
        };
        assert!(denied.advice("xray", None).contains("xray:PutSpans"));
        assert_eq!(denied.reason(), DropReason::AccessDenied);
        let missing = Refusal::LogGroupMissing.advice("logs", Some(("/aws/lambda/f", "contrail")));
        assert!(
            missing.contains(
                "create-log-stream --log-group-name /aws/lambda/f --log-stream-name contrail"
            ),
            "{missing}"
        );
        assert!(
            Refusal::TransactionSearchOff
                .advice("xray", None)
                .contains("Transaction Search")
        );
    }
}
