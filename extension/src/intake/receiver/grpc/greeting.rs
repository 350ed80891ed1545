//! The first bytes of a connection to the gRPC port, and what a client that does not speak
//! HTTP/2 with prior knowledge is told. Pure: no I/O.

/// What every HTTP/2 connection with prior knowledge starts with (RFC 9113, 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes say the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Greeting {
    /// The HTTP/2 preface, or as much of it as has arrived.
    Http2,
    /// A TLS record (a ClientHello): the client wants `https`.
    Tls,
    /// Anything else: HTTP/1.1 (an OTLP/HTTP exporter pointed at this port) or noise.
    Other,
}

/// Classify the first bytes of a connection (at least one).
pub(super) fn classify(first: &[u8]) -> Greeting {
    let n = first.len().min(PREFACE.len());
    if first[..n] == PREFACE[..n] {
        Greeting::Http2
    } else if first.first() == Some(&0x16) && first.get(1).is_none_or(|&major| major == 0x03) {
        // A TLS handshake record: content type 22, then the record version 3.x.
        Greeting::Tls
    } else {
        Greeting::Other
    }
}

/// A fatal TLS `handshake_failure` alert, in the clear as TLS allows before a handshake: the
/// client's TLS library reports the handshake failed instead of a garbled answer.
pub(super) const TLS_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// The answer to an HTTP/1.x request: `505 HTTP Version Not Supported`, which no OTLP/HTTP
/// exporter retries, with a reason it logs.
pub(super) fn http1_refusal(http_port: Option<u16>) -> Vec<u8> {
    let to = match http_port {
        Some(port) => format!("port {port}"),
        None => "the OTLP/HTTP receiver (CONTRAIL_RECEIVER_ENDPOINT)".to_owned(),
    };
    let body = format!(
        "This port is Contrail's OTLP/gRPC receiver: HTTP/2 with prior knowledge only. Send OTLP/HTTP to {to}.\n"
    );
    format!(
        "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_or_a_part_of_it_is_http2() {
        assert_eq!(classify(PREFACE), Greeting::Http2);
        assert_eq!(classify(b"PRI * HT"), Greeting::Http2);
        let mut with_settings = PREFACE.to_vec();
        with_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(classify(&with_settings), Greeting::Http2);
    }

    #[test]
    fn a_client_hello_is_tls_and_http1_is_other() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), Greeting::Tls);
        assert_eq!(classify(&[0x16]), Greeting::Tls);
        assert_eq!(
            classify(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n"),
            Greeting::Other
        );
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Greeting::Other);
        assert_eq!(classify(&[0x16, 0x01]), Greeting::Other);
    }

    #[test]
    fn the_http1_answer_is_a_complete_505_naming_the_http_port() {
        let answer = String::from_utf8(http1_refusal(Some(4318))).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("Send OTLP/HTTP to port 4318."), "{body}");
        let off = String::from_utf8(http1_refusal(None)).unwrap();
        assert!(off.contains("CONTRAIL_RECEIVER_ENDPOINT"), "{off}");
    }
}
