//! The sampler's variable, and the sampler against real processes of this test (a child it
//! starts stands in for the runtime).

use super::*;

#[test]
fn interval_defaults_and_zero_turns_samples_off() {
    let env: [(&str, &str); 0] = [];
    assert_eq!(
        EnvironmentConfig::from_env(&env).unwrap().sample_interval,
        Some(DEFAULT_SAMPLE_INTERVAL)
    );
    let env = [(SAMPLE_INTERVAL_VAR, "0")];
    assert_eq!(
        EnvironmentConfig::from_env(&env).unwrap().sample_interval,
        None
    );
    let env = [(SAMPLE_INTERVAL_VAR, "100")];
    assert_eq!(
        EnvironmentConfig::from_env(&env).unwrap().sample_interval,
        Some(Duration::from_millis(100))
    );
    for bad in ["-1", "fast", "900001"] {
        let env = [(SAMPLE_INTERVAL_VAR, bad)];
        let errors = EnvironmentConfig::from_env(&env).unwrap_err();
        assert_eq!(errors[0].var, SAMPLE_INTERVAL_VAR, "{bad}");
    }
}

#[test]
fn connections_default_to_auto_and_a_bad_value_is_named() {
    let env: [(&str, &str); 0] = [];
    assert_eq!(
        EnvironmentConfig::from_env(&env).unwrap().connections,
        Connections::Auto
    );
    for (value, want) in [
        ("auto", Connections::Auto),
        ("always", Connections::Always),
        ("off", Connections::Off),
    ] {
        let env = [(CONNECTIONS_VAR, value)];
        assert_eq!(EnvironmentConfig::from_env(&env).unwrap().connections, want);
    }
    let env = [
        (CONNECTIONS_VAR, "sometimes"),
        (SAMPLE_INTERVAL_VAR, "fast"),
    ];
    let errors = EnvironmentConfig::from_env(&env).unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(vars, [SAMPLE_INTERVAL_VAR, CONNECTIONS_VAR]);
}

#[test]
fn connections_off_reads_no_table() {
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: None,
        connections: Connections::Off,
    });
    let sockets: HashSet<u64> = [1, 2].into_iter().collect();
    let mut seen = 0;
    s.established(&sockets, |_, _| seen += 1);
    assert_eq!(seen, 0);
    assert!(s.table.is_none(), "no reading was taken");
}

#[test]
fn samples_are_bounded_and_cover_the_whole_invocation() {
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: Some(Duration::from_millis(10)),
        connections: Connections::Always,
    });
    // No processes are followed (none discovered): the sampler still keeps its bounds.
    s.scanned = true;
    let start = Instant::now();
    let _ = s.begin("r", start, 0);
    for i in 0..(MAX_SAMPLES as u64 * 3) {
        s.sample(start + Duration::from_millis(10 * i), i);
    }
    let due = s.sample_due().expect("armed during the invocation");
    assert!(due > start + Duration::from_millis(10 * MAX_SAMPLES as u64));
    let usage = s.end(1).expect("open");
    assert!(usage.samples.len() <= MAX_SAMPLES);
    assert_eq!(
        usage.samples.first().map(|x| x.0),
        Some(0),
        "the first is kept"
    );
    assert!(
        s.sample_due().is_none(),
        "no timer once the invocation ended"
    );
    assert!(s.end(2).is_none());
}

#[test]
fn the_doubling_interval_stays_bounded_however_many_samples() {
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: Some(Duration::from_millis(1)),
        connections: Connections::Always,
    });
    s.scanned = true;
    let start = Instant::now();
    let _ = s.begin("r", start, 0);
    for i in 0..20_000u64 {
        s.sample(start, i);
    }
    let due = s.sample_due().expect("still armed");
    assert!(due <= start + Duration::from_millis(MAX_SAMPLE_INTERVAL_MS));
    assert!(s.end(1).expect("open").samples.len() <= MAX_SAMPLES);
}
