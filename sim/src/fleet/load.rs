//! When requests arrive: the load profiles of a fleet run.
//!
//! Open loop (`rate`, `ramp`, `replay`): requests arrive at fixed times whatever the function
//! does, as from a queue or a web front end. Closed loop (`spike`): a number of clients, each
//! sending its next request when the answer to the previous one came, so the number of
//! requests in flight is the number of clients: the concurrency Lambda counts.

use std::time::Duration;

/// How long a closed-loop client waits after a throttled request before it tries again.
pub const THROTTLE_BACKOFF: Duration = Duration::from_millis(100);

/// The most requests an open-loop profile may describe.
pub const MAX_ARRIVALS: usize = 100_000;

/// The most clients a closed-loop profile may have (each is a task sending requests).
pub const MAX_CLIENTS: u32 = 10_000;

/// A load profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// `rate=R,for=D`: R requests a second, evenly spaced, for D.
    Rate {
        /// Requests per second.
        per_second: f64,
        /// How long.
        duration: Duration,
    },
    /// `ramp=A-B,for=D`: a rate rising (or falling) linearly from A to B requests a second.
    Ramp {
        /// Requests per second at the start.
        from: f64,
        /// Requests per second at the end.
        to: f64,
        /// How long.
        duration: Duration,
    },
    /// `spike=B-P,at=T,hold=H,for=D`: B clients for D, and P - B more from T to T + H.
    Spike {
        /// Clients for the whole run.
        base: u32,
        /// Clients during the spike, the base ones included.
        peak: u32,
        /// When the spike starts.
        at: Duration,
        /// How long it lasts.
        hold: Duration,
        /// How long the whole run lasts.
        duration: Duration,
    },
    /// `replay=FILE`: requests at these offsets from the start (the file: one number of
    /// milliseconds per line).
    Replay(Vec<Duration>),
}

/// One closed-loop client: it sends requests from `start` until `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// When it sends its first request.
    pub start: Duration,
    /// After this, it sends nothing more.
    pub end: Duration,
}

impl Load {
    /// Parses a profile (`rate=20,for=5s`, `ramp=1-50,for=10s`, `spike=2-30,at=2s,hold=3s,for=8s`,
    /// `replay=FILE`). Durations are seconds, or carry `ms` or `s`.
    pub fn parse(spec: &str) -> Result<Load, String> {
        let spec = spec.trim();
        let (kind, rest) = spec.split_once('=').ok_or_else(|| {
            format!("load {spec:?}: expected rate=…, ramp=…, spike=… or replay=…")
        })?;
        if kind == "replay" {
            let text = std::fs::read_to_string(rest)
                .map_err(|e| format!("load replay file {rest}: {e}"))?;
            return Load::replay(&text).map_err(|e| format!("load replay file {rest}: {e}"));
        }
        let mut parts = rest.split(',');
        let value = parts.next().unwrap_or_default();
        let mut options = Vec::new();
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("load {spec:?}: {part:?} is not NAME=VALUE"))?;
            options.push((k.trim(), v.trim()));
        }
        let option = |name: &str| -> Result<Duration, String> {
            let v = options
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("load {spec:?}: {name}= is missing"))?;
            duration(v).ok_or_else(|| format!("load {spec:?}: {name}={v} is not a duration"))
        };
        for (k, _) in &options {
            let known: &[&str] = match kind {
                "spike" => &["at", "hold", "for"],
                _ => &["for"],
            };
            if !known.contains(k) {
                return Err(format!("load {spec:?}: unknown option {k}="));
            }
        }
        let load = match kind {
            "rate" => Load::Rate {
                per_second: rate(value).ok_or_else(|| {
                    format!("load {spec:?}: {value:?} is not a rate (requests a second)")
                })?,
                duration: option("for")?,
            },
            "ramp" => {
                let (a, b) = value
                    .split_once('-')
                    .and_then(|(a, b)| Some((rate(a)?, rate(b)?)))
                    .ok_or_else(|| format!("load {spec:?}: expected ramp=FROM-TO"))?;
                Load::Ramp {
                    from: a,
                    to: b,
                    duration: option("for")?,
                }
            }
            "spike" => {
                let (base, peak) = value
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                    .ok_or_else(|| format!("load {spec:?}: expected spike=BASE-PEAK (clients)"))?;
                Load::Spike {
                    base,
                    peak,
                    at: option("at")?,
                    hold: option("hold")?,
                    duration: option("for")?,
                }
            }
            _ => return Err(format!("load {spec:?}: unknown profile {kind:?}")),
        };
        load.check()?;
        Ok(load)
    }

    /// A replay file's arrival times: one number of milliseconds per line; blank lines and
    /// lines starting with `#` are skipped; the times need not be sorted.
    pub fn replay(text: &str) -> Result<Load, String> {
        let mut times = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let ms: f64 = line
                .parse()
                .ok()
                .filter(|v: &f64| (0.0..=86_400_000.0).contains(v))
                .ok_or_else(|| {
                    format!(
                        "line {}: {line:?} is not a number of ms within a day",
                        n + 1
                    )
                })?;
            times.push(Duration::from_secs_f64(ms / 1000.0));
        }
        times.sort();
        let load = Load::Replay(times);
        load.check()?;
        Ok(load)
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Load::Spike {
                base,
                peak,
                at,
                hold,
                duration,
            } => {
                if peak < base || *peak == 0 {
                    return Err(format!(
                        "a spike needs PEAK >= BASE and PEAK > 0 (got {base}-{peak})"
                    ));
                }
                if *peak > MAX_CLIENTS {
                    return Err(format!("a spike of {peak} clients: at most {MAX_CLIENTS}"));
                }
                if *at + *hold > *duration {
                    return Err("the spike must end before the run does (at + hold <= for)".into());
                }
                Ok(())
            }
            Load::Replay(t) if t.is_empty() => Err("no arrival times".into()),
            _ => {
                let n = self.arrivals().len();
                if n == 0 {
                    Err("the profile describes no request".into())
                } else if n > MAX_ARRIVALS {
                    Err(format!(
                        "the profile describes {n} requests, more than {MAX_ARRIVALS}"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The arrival times of an open-loop profile (empty for a spike), sorted.
    pub fn arrivals(&self) -> Vec<Duration> {
        match self {
            Load::Rate {
                per_second,
                duration,
            } => {
                let n = (per_second * duration.as_secs_f64()).floor();
                if !(n.is_finite() && n >= 0.0) || n > MAX_ARRIVALS as f64 {
                    return vec![Duration::ZERO; MAX_ARRIVALS + 1];
                }
                (0..n as usize)
                    .map(|i| Duration::from_secs_f64(i as f64 / per_second))
                    .collect()
            }
            Load::Ramp { from, to, duration } => ramp(*from, *to, duration.as_secs_f64()),
            Load::Spike { .. } => Vec::new(),
            Load::Replay(times) => times.clone(),
        }
    }

    /// The clients of a closed-loop profile (empty for the others).
    pub fn clients(&self) -> Vec<Client> {
        match self {
            Load::Spike {
                base,
                peak,
                at,
                hold,
                duration,
            } => {
                let mut clients = vec![
                    Client {
                        start: Duration::ZERO,
                        end: *duration,
                    };
                    *base as usize
                ];
                clients.extend(std::iter::repeat_n(
                    Client {
                        start: *at,
                        end: *at + *hold,
                    },
                    (peak - base) as usize,
                ));
                clients
            }
            _ => Vec::new(),
        }
    }

    /// The most requests that can be in flight at once: the peak of a spike; for open loop,
    /// unknown ahead (it depends on how long the function takes), so the number of requests.
    pub fn most_in_flight(&self) -> u32 {
        match self {
            Load::Spike { peak, .. } => *peak,
            _ => u32::try_from(self.arrivals().len()).unwrap_or(u32::MAX),
        }
    }

    /// How long the profile lasts (the last arrival of an open-loop one).
    pub fn duration(&self) -> Duration {
        match self {
            Load::Rate { duration, .. }
            | Load::Ramp { duration, .. }
            | Load::Spike { duration, .. } => *duration,
            Load::Replay(times) => times.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Load {
    /// The profile in the syntax [`Load::parse`] reads (a replay as its number of arrivals).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |d: &Duration| d.as_secs_f64();
        match self {
            Load::Rate {
                per_second,
                duration,
            } => write!(f, "rate={per_second},for={}s", s(duration)),
            Load::Ramp { from, to, duration } => {
                write!(f, "ramp={from}-{to},for={}s", s(duration))
            }
            Load::Spike {
                base,
                peak,
                at,
                hold,
                duration,
            } => write!(
                f,
                "spike={base}-{peak},at={}s,hold={}s,for={}s",
                s(at),
                s(hold),
                s(duration)
            ),
            Load::Replay(times) => write!(f, "replay of {} arrivals", times.len()),
        }
    }
}

/// Arrivals of a rate rising linearly from `a` to `b` a second over `d` seconds: the i-th
/// request comes when the integral of the rate reaches i.
fn ramp(a: f64, b: f64, d: f64) -> Vec<Duration> {
    let total = (a + b) / 2.0 * d;
    if !(total.is_finite() && total >= 0.0) || total > MAX_ARRIVALS as f64 {
        return vec![Duration::ZERO; MAX_ARRIVALS + 1];
    }
    let slope = (b - a) / d;
    (0..total.floor() as usize)
        .map(|i| {
            let i = i as f64;
            // a t + slope t² / 2 = i
            let t = if slope.abs() < 1e-12 {
                i / a
            } else {
                (-a + (a * a + 2.0 * slope * i).max(0.0).sqrt()) / slope
            };
            Duration::from_secs_f64(t.clamp(0.0, d))
        })
        .collect()
}

fn rate(s: &str) -> Option<f64> {
    let s = s.trim();
    let s = s.strip_suffix("/s").unwrap_or(s);
    s.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// `1.5`, `1.5s` or `1500ms`.
fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = number.trim().parse().ok()?;
    (0.0..=86_400.0)
        .contains(&v)
        .then(|| Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: &[Duration]) -> Vec<f64> {
        d.iter()
            .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
            .collect()
    }

    #[test]
    fn a_rate_spaces_its_requests_evenly() {
        let load = Load::parse("rate=4,for=1s").unwrap();
        assert_eq!(secs(&load.arrivals()), [0.0, 0.25, 0.5, 0.75]);
        assert_eq!(load.most_in_flight(), 4);
        assert_eq!(
            Load::parse("rate=10/s,for=1500ms")
                .unwrap()
                .arrivals()
                .len(),
            15
        );
    }

    #[test]
    fn a_ramp_sends_what_the_integral_of_its_rate_says() {
        // 0 → 10 a second over 2 s: 10 requests, the i-th when 2.5 t² = i.
        let load = Load::parse("ramp=0-10,for=2").unwrap();
        let t = load.arrivals();
        assert_eq!(t.len(), 10);
        for (i, t) in t.iter().enumerate() {
            let expected = (i as f64 / 2.5).sqrt();
            assert!((t.as_secs_f64() - expected).abs() < 1e-9, "{i}: {t:?}");
        }
        // A flat ramp is a rate.
        assert_eq!(
            secs(&Load::parse("ramp=4-4,for=1").unwrap().arrivals()),
            [0.0, 0.25, 0.5, 0.75]
        );
        // Falling: denser at the start.
        let falling = Load::parse("ramp=10-0,for=2").unwrap().arrivals();
        assert_eq!(falling.len(), 10);
        assert!(falling[1] - falling[0] < falling[9] - falling[8]);
    }

    #[test]
    fn a_spike_adds_clients_for_its_hold() {
        let load = Load::parse("spike=2-5,at=1s,hold=500ms,for=3s").unwrap();
        let c = load.clients();
        assert_eq!(c.len(), 5);
        assert_eq!(c.iter().filter(|c| c.start.is_zero()).count(), 2);
        assert!(
            c[2..]
                .iter()
                .all(|c| c.start == Duration::from_secs(1) && c.end == Duration::from_millis(1500))
        );
        assert_eq!(load.most_in_flight(), 5);
        assert!(load.arrivals().is_empty());
        assert_eq!(load.to_string(), "spike=2-5,at=1s,hold=0.5s,for=3s");
        assert_eq!(Load::parse(&load.to_string()), Ok(load));
    }

    #[test]
    fn a_replay_sorts_its_times_and_skips_comments() {
        let load = Load::replay("# ms\n250\n0\n\n1000.5\n").unwrap();
        assert_eq!(secs(&load.arrivals()), [0.0, 0.25, 1.001]);
        assert_eq!(load.duration(), Duration::from_micros(1_000_500));
        let e = Load::replay("10\nsoon\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = Load::replay("1e25\n").unwrap_err();
        assert!(e.contains("within a day"), "{e}");
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        for (spec, words) in [
            ("rate=5", "for= is missing"),
            ("rate=fast,for=1", "not a rate"),
            ("rate=5,for=1,every=2", "unknown option"),
            ("spike=5-2,at=0,hold=1,for=2", "PEAK >= BASE"),
            ("spike=1-2,at=2,hold=1,for=2", "before the run does"),
            ("ramp=5,for=1", "FROM-TO"),
            ("burst=5", "unknown profile"),
            ("rate=0,for=1", "no request"),
            ("rate=1000000,for=60", "more than"),
            ("spike=0-10000001,at=0,hold=1,for=1", "at most 10000"),
            ("rate", "expected rate="),
        ] {
            let e = Load::parse(spec).unwrap_err();
            assert!(e.contains(words), "{spec}: {e}");
        }
    }
}
