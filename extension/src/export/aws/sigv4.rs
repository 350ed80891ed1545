//! AWS Signature Version 4 for a request's headers (`docs/adr/0012-sigv4-and-secrets.md`).
//!
//! Pure: the caller supplies the time, the credentials and the SHA-256 of the exact bytes it
//! sends (after gzip). What AWS's SigV4 documentation asks for, in order:
//!
//! 1. the canonical request: method, the URI path encoded twice (for every service but S3),
//!    the query sorted by encoded name then value, every signed header as
//!    `lowercase-name:trimmed value` (inner runs of spaces collapsed, repeated headers joined
//!    with `,`), sorted, the signed header names, and the payload hash;
//! 2. the string to sign: `AWS4-HMAC-SHA256`, the `X-Amz-Date`, the credential scope
//!    `YYYYMMDD/region/service/aws4_request` and the hex SHA-256 of the canonical request;
//! 3. the signature: HMAC-SHA256 of the string to sign with the key derived from
//!    `"AWS4" + secret` through the date, region, service and `aws4_request`.
//!
//! The derived key depends only on the secret, the day, the region and the service: [`Signer`]
//! keeps the last one, so a request costs two SHA-256 and one HMAC beyond the body's hash.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};

use crate::intake::telemetry::time::civil_from_days;

/// The algorithm name of SigV4 with HMAC-SHA256.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The hex SHA-256 of no bytes: the payload hash of a request without a body.
#[cfg(test)]
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// AWS credentials: an access key, its secret and, for temporary credentials, the session
/// token. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `X-Amz-Date`: `YYYYMMDD'T'HHMMSS'Z'`, UTC, whole seconds.
pub(crate) fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        push_hex(&mut s, b, b"0123456789abcdef");
    }
    s
}

/// The two hex digits of `b`, from `digits` (lower or upper case): a table, not `write!`.
fn push_hex(out: &mut String, b: u8, digits: &[u8; 16]) {
    out.push(char::from(digits[usize::from(b >> 4)]));
    out.push(char::from(digits[usize::from(b & 0x0f)]));
}

/// Hex SHA-256 of `parts`, hashed one after another (the chunks of a body, never joined).
pub fn sha256_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    sha256_hex_of(&mut parts.into_iter())
}

/// [`sha256_hex`] on a trait object: one copy of the hashing code for every kind of iterator.
#[inline(never)]
fn sha256_hex_of(parts: &mut dyn Iterator<Item = &[u8]>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    hex(ctx.finish().as_ref())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` when
/// `keep_slash`), uppercase hex.
fn uri_encode(s: &str, keep_slash: bool, out: &mut String) {
    for &b in s.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            push_hex(out, b, b"0123456789ABCDEF");
        }
    }
}

/// The path with `.` and `..` segments and empty segments removed (RFC 3986 §5.2.4, as AWS's
/// normalisation does it), keeping a trailing slash.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI of a request path as sent: normalised when `normalize`, then encoded
/// twice over (the wire path is itself encoded once), as every service but S3 expects.
pub(crate) fn canonical_uri(path: &str, normalize: bool) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let path = if normalize {
        normalize_path(path)
    } else {
        path.to_owned()
    };
    let mut out = String::with_capacity(path.len() + 8);
    uri_encode(&path, true, &mut out);
    out
}

/// Decode `%XX` sequences of a query component (bytes that do not form one stay as they are).
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The canonical query string: each name and value decoded, encoded again the AWS way, pairs
/// sorted by name then value, joined with `&`.
pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut name = String::new();
            uri_encode(&percent_decode_lossy(k), false, &mut name);
            let mut value = String::new();
            uri_encode(&percent_decode_lossy(v), false, &mut value);
            (name, value)
        })
        .collect();
    insertion_sort(&mut pairs);
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A stable sort for the few headers and query pairs of one request: the library's sort would
/// add tens of kilobytes of code per element type to the binary for lists of a dozen items.
fn insertion_sort<T: PartialOrd>(v: &mut [T]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] > v[j] {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// A header value as SigV4 signs it: trimmed, inner runs of spaces and tabs made one space.
fn trim_value(value: &str, out: &mut String) {
    let mut space = false;
    for c in value.trim_matches(|c| c == ' ' || c == '\t').chars() {
        if c == ' ' || c == '\t' {
            space = true;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
}

/// What one request signs: the request line, the headers to sign (any case, in the order
/// sent; repeated names allowed) and the payload hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) method: &'a str,
    /// The path as sent on the wire (already percent-encoded once).
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) payload_sha256: &'a str,
    /// Remove `.`/`..`/empty path segments first (every service but S3).
    pub(crate) normalize: bool,
}

/// The canonical request and the `SignedHeaders` list.
pub(crate) fn canonical_request(parts: &Parts<'_>) -> (String, String) {
    let mut names: Vec<(String, usize)> = parts
        .headers
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.to_ascii_lowercase(), i))
        .collect();
    // Stable: repeated names keep the order they were sent in.
    insertion_sort(&mut names);
    let mut canonical_headers = String::new();
    let mut signed = String::new();
    let mut last: Option<&str> = None;
    for (name, i) in &names {
        if last == Some(name.as_str()) {
            canonical_headers.push(',');
        } else {
            if last.is_some() {
                canonical_headers.push('\n');
                signed.push(';');
            }
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            signed.push_str(name);
        }
        trim_value(parts.headers[*i].1, &mut canonical_headers);
        last = Some(name.as_str());
    }
    canonical_headers.push('\n');
    let request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        canonical_uri(parts.path, parts.normalize),
        canonical_query(parts.query),
        canonical_headers,
        signed,
        parts.payload_sha256
    );
    (request, signed)
}

/// The credential scope: `YYYYMMDD/region/service/aws4_request`.
pub(crate) fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!(
        "{}/{region}/{service}/aws4_request",
        &amz_date[..8.min(amz_date.len())]
    )
}

/// The string to sign of a canonical request.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex([canonical_request.as_bytes()])
    )
}

/// HMAC-SHA256 of `data` with `key`: one copy of ring's keying and signing for the whole
/// derivation chain, which the compiler would otherwise unroll, inlining each step.
#[inline(never)]
fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The signing key of a secret, day (`YYYYMMDD`), region and service.
pub(crate) fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> hmac::Key {
    let mut tag = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, service, "aws4_request"] {
        tag = hmac_sha256(tag.as_ref(), part.as_bytes());
    }
    hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
}

/// Hex HMAC-SHA256 of the string to sign.
pub(crate) fn signature(key: &hmac::Key, string_to_sign: &str) -> String {
    hex(hmac::sign(key, string_to_sign.as_bytes()).as_ref())
}

/// The `Authorization` header value.
pub(crate) fn authorization(access_key_id: &str, scope: &str, signed: &str, sig: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
}

/// Signs requests for one region and service, keeping the last derived key.
#[derive(Debug, Clone)]
pub struct Signer {
    pub(crate) region: String,
    pub(crate) service: String,
    /// (access key id, secret, day) → key, for the last request signed.
    cached: Option<(String, String, String, KeyHandle)>,
}

/// `hmac::Key` has no `Debug` that hides it; this one shows nothing.
#[derive(Clone)]
struct KeyHandle(hmac::Key);

impl std::fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<signing key>")
    }
}

/// The headers a signed request adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub(crate) amz_date: String,
    pub(crate) security_token: Option<String>,
    pub(crate) authorization: String,
}

impl Signer {
    /// A signer for `service` in `region`.
    pub fn new(region: impl Into<String>, service: impl Into<String>) -> Signer {
        Signer {
            region: region.into(),
            service: service.into(),
            cached: None,
        }
    }

    /// Sign a request at `now`: `headers` are those sent besides `X-Amz-Date`,
    /// `X-Amz-Security-Token` and `Authorization`, which this adds (the token is signed).
    pub fn sign(
        &mut self,
        credentials: &Credentials,
        now: SystemTime,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        payload_sha256: &str,
    ) -> Signed {
        let amz_date = amz_date(now);
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 2);
        all.extend_from_slice(headers);
        all.push(("x-amz-date", &amz_date));
        if let Some(token) = &credentials.session_token {
            all.push(("x-amz-security-token", token));
        }
        let (canonical, signed) = canonical_request(&Parts {
            method,
            path,
            query,
            headers: &all,
            payload_sha256,
            normalize: true,
        });
        let scope = scope(&amz_date, &self.region, &self.service);
        let sts = string_to_sign(&amz_date, &scope, &canonical);
        let day = &amz_date[..8];
        let key = match &self.cached {
            Some((id, secret, d, key))
                if id == &credentials.access_key_id
                    && secret == &credentials.secret_access_key
                    && d == day =>
            {
                key.0.clone()
            }
            _ => {
                let key = signing_key(
                    &credentials.secret_access_key,
                    day,
                    &self.region,
                    &self.service,
                );
                self.cached = Some((
                    credentials.access_key_id.clone(),
                    credentials.secret_access_key.clone(),
                    day.to_owned(),
                    KeyHandle(key.clone()),
                ));
                key
            }
        };
        let sig = signature(&key, &sts);
        Signed {
            authorization: authorization(&credentials.access_key_id, &scope, &signed, &sig),
            security_token: credentials.session_token.clone(),
            amz_date,
        }
    }
}

#[cfg(test)]
mod tests;
