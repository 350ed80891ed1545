//! AWS: SigV4 request signing, the function's credentials, AWS's OTLP endpoints (limits,
//! refusals, CloudWatch Logs' headers) and the secrets resolver
//! (`docs/adr/0012-sigv4-and-secrets.md`).
//!
//! | file | role |
//! |---|---|
//! | `sigv4.rs` | the signer, pure |
//! | `credentials.rs` | the environment's keys or the container credentials endpoint (SnapStart) |
//! | `config.rs` | `CONTRAIL_EXPORTER_OTLP_[{SIGNAL}_]AUTH` and `SIGV4_*`, the log group and stream, endpoint limits, `AWS_ENDPOINT_URL*` |
//! | `refusal.rs` | what an AWS endpoint's 4xx means and what to do about it |
//! | `client.rs` | one signed JSON 1.1 call |
//! | `secrets/` | header values from Secrets Manager and SSM Parameter Store |

pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod refusal;
pub(crate) mod secrets;
pub(crate) mod sigv4;
