//! The X-Ray trace header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`)
//! and the span and trace ids Contrail makes.

/// The parts of an X-Ray header Contrail uses. Any part that is missing or malformed is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct XrayHeader {
    /// `Root`, as an OpenTelemetry trace id (the epoch and the unique part, joined).
    pub(crate) trace_id: Option<[u8; 16]>,
    /// `Parent`: the id of the X-Ray segment the function runs under.
    pub(crate) parent_id: Option<[u8; 8]>,
    /// `Sampled=1` / `Sampled=0`; `None` when absent or `?`.
    pub(crate) sampled: Option<bool>,
}

impl XrayHeader {
    /// Parse a header value. Never fails: unknown keys are ignored, malformed parts left out.
    pub(crate) fn parse(value: &str) -> XrayHeader {
        let mut header = XrayHeader::default();
        for part in value.split(';') {
            let Some((key, val)) = part.split_once('=') else {
                continue;
            };
            let val = val.trim();
            match key.trim() {
                "Root" => header.trace_id = parse_root(val),
                "Parent" => header.parent_id = parse_hex::<8>(val).filter(|id| *id != [0; 8]),
                "Sampled" => {
                    header.sampled = match val {
                        "1" => Some(true),
                        "0" => Some(false),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        header
    }

    #[cfg(any(test, feature = "fuzzing"))]
    /// The header form of these parts (only those present).
    pub(crate) fn to_header_value(self) -> String {
        let mut parts = Vec::with_capacity(3);
        if let Some(trace_id) = self.trace_id {
            parts.push(format!("Root={}", format_root(&trace_id)));
        }
        if let Some(parent) = self.parent_id {
            parts.push(format!("Parent={}", hex(&parent)));
        }
        if let Some(sampled) = self.sampled {
            parts.push(format!("Sampled={}", u8::from(sampled)));
        }
        parts.join(";")
    }
}

/// `1-5759e988-bd862e3fe1be46a994272793` → the 16 bytes `5759e988bd862e3fe1be46a994272793`.
fn parse_root(root: &str) -> Option<[u8; 16]> {
    let rest = root.strip_prefix("1-")?;
    let (epoch, unique) = rest.split_once('-')?;
    if epoch.len() != 8 || unique.len() != 24 {
        return None;
    }
    let epoch = parse_hex::<4>(epoch)?;
    let unique = parse_hex::<12>(unique)?;
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&epoch);
    id[4..].copy_from_slice(&unique);
    (id != [0; 16]).then_some(id)
}

#[cfg(any(test, feature = "fuzzing"))]
/// The X-Ray `Root` form of an OpenTelemetry trace id.
pub(crate) fn format_root(trace_id: &[u8; 16]) -> String {
    let h = hex(trace_id);
    let (epoch, unique) = h.split_at(8);
    format!("1-{epoch}-{unique}")
}

/// Exactly `2 * N` hex digits (either case) → `N` bytes.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = hex_val(*pair.first()?)?;
        let lo = hex_val(*pair.get(1)?)?;
        *out.get_mut(i)? = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(any(test, feature = "fuzzing"))]
/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A small, fast generator for span and trace ids (wyrand). Not cryptographic: ids only need to
/// be unique, not secret.
#[derive(Debug, Clone)]
pub(crate) struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub(crate) fn new(seed: u64) -> IdGenerator {
        IdGenerator { state: seed }
    }

    /// Seeded from the clock and the process id.
    pub(crate) fn from_entropy() -> IdGenerator {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let pid = u64::from(std::process::id());
        IdGenerator::new(nanos ^ pid.rotate_left(32))
    }

    /// Fold `value` into the state. Every environment restored from one SnapStart snapshot
    /// starts from the snapshot's state; mixing in what differs per environment (the restore
    /// time, the instance id) keeps their ids apart.
    pub(crate) fn mix(&mut self, value: u64) {
        self.state ^= value.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.next_u64();
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A non-zero span id.
    pub(crate) fn span_id(&mut self) -> [u8; 8] {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    /// A non-zero trace id whose first 4 bytes are `unix_secs`, so it is also a valid X-Ray id.
    pub(crate) fn trace_id(&mut self, unix_secs: u32) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&unix_secs.to_be_bytes());
        id[4..12].copy_from_slice(&self.span_id());
        id[12..].copy_from_slice(&self.next_u64().to_be_bytes()[..4]);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_header() {
        let h = XrayHeader::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        );
        assert_eq!(
            h.trace_id.map(|t| hex(&t)).as_deref(),
            Some("5759e988bd862e3fe1be46a994272793")
        );
        assert_eq!(
            h.parent_id.map(|p| hex(&p)).as_deref(),
            Some("53995c3f42cd8ad8")
        );
        assert_eq!(h.sampled, Some(true));
    }

    #[test]
    fn tolerates_order_spaces_unknown_keys_and_missing_parts() {
        let h = XrayHeader::parse(
            " Sampled=0 ; Lineage=a87bd80c:1|68fd508a:5 ;Root=1-5759E988-BD862E3FE1BE46A994272793",
        );
        assert!(h.trace_id.is_some());
        assert_eq!(h.parent_id, None);
        assert_eq!(h.sampled, Some(false));
        let h = XrayHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?");
        assert_eq!(h.sampled, None);
    }

    #[test]
    fn rejects_malformed_parts() {
        for bad in [
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a9942727933",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=1-5759e988bd862e3fe1be46a994272793",
            "Root=1-00000000-000000000000000000000000",
            "Root=1-5759e98g-bd862e3fe1be46a994272793",
            "Root=",
            "Root",
            "",
        ] {
            assert_eq!(XrayHeader::parse(bad).trace_id, None, "{bad}");
        }
        for bad in [
            "Parent=0000000000000000",
            "Parent=53995c3f42cd8ad",
            "Parent=53995c3f42cd8ad8a",
            "Parent=zz995c3f42cd8ad8",
        ] {
            assert_eq!(XrayHeader::parse(bad).parent_id, None, "{bad}");
        }
    }

    /// Property: any input parses without panicking; any well-formed header round-trips.
    #[test]
    fn property_never_panics_and_round_trips() {
        let mut ids = IdGenerator::new(7);
        let alphabet: Vec<char> =
            "Root=1-Parent;Sampled0123456789abcdefABCDEFxyz-=; \u{e9}\u{1F600}"
                .chars()
                .collect();
        for i in 0..20_000u32 {
            // Random strings over an alphabet rich in the header's own characters.
            let len = (ids.span_id()[0] % 80) as usize;
            let s: String = (0..len)
                .map(|_| {
                    let r = u64::from_be_bytes(ids.span_id());
                    alphabet[(r % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = XrayHeader::parse(&s);

            // Well-formed headers built from random ids.
            let header = XrayHeader {
                trace_id: Some(ids.trace_id(i)),
                parent_id: Some(ids.span_id()),
                sampled: Some(i % 2 == 0),
            };
            let text = header.to_header_value();
            assert_eq!(XrayHeader::parse(&text), header, "{text}");

            // Every truncation and every single-byte mutation of a valid header is survivable.
            if i % 500 == 0 {
                for end in 0..=text.len() {
                    let _ = XrayHeader::parse(&text[..end]);
                }
                let mut bytes = text.clone().into_bytes();
                for at in 0..bytes.len() {
                    let orig = bytes[at];
                    bytes[at] = b'#';
                    let _ = XrayHeader::parse(std::str::from_utf8(&bytes).unwrap_or(""));
                    bytes[at] = orig;
                }
            }
        }
    }

    #[test]
    fn generated_ids_are_non_zero_and_distinct() {
        let mut ids = IdGenerator::new(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.span_id();
            assert_ne!(id, [0; 8]);
            assert!(seen.insert(id));
        }
        let t = ids.trace_id(0x5759_e988);
        assert_eq!(&t[..4], &[0x57, 0x59, 0xe9, 0x88]);
        let root = format_root(&t);
        assert_eq!(XrayHeader::parse(&format!("Root={root}")).trace_id, Some(t));
    }
}
