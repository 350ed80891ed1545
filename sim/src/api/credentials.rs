//! The container credentials endpoint a SnapStart environment gets instead of key variables
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`): `GET` with the
//! token as `Authorization` answers the execution role's temporary credentials, valid for six
//! hours from the request, as the AWS SDKs and Lambda's own endpoint shape them.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Resp, error, header, json_response};
use crate::config::InitType;
use crate::state::EnvState;

/// How long handed-out credentials are valid.
const VALID_FOR: Duration = Duration::from_secs(6 * 3600);

pub(super) fn serve(environment: &EnvState, req: &Request<Incoming>) -> Resp {
    let info = &environment.info;
    if info.init_type != InitType::SnapStart {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the container credentials endpoint serves SnapStart environments only",
        );
    }
    if header(req, "authorization").as_deref() != Some(info.credentials_token.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the Authorization header is not AWS_CONTAINER_AUTHORIZATION_TOKEN",
        );
    }
    let expiration = (OffsetDateTime::now_utc() + VALID_FOR)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let c = &info.credentials;
    json_response(
        StatusCode::OK,
        &json!({
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key,
            "Token": c.session_token,
            "Expiration": expiration,
        }),
    )
}
