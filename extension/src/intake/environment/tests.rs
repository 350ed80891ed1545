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
fn the_table_limit_is_a_millisecond_of_the_functions_time_at_its_cpu_share() {
    use config::table_cpu_limit;
    assert_eq!(table_cpu_limit(Some(128)), Duration::from_nanos(72_357));
    assert_eq!(table_cpu_limit(Some(1_769)), Duration::from_millis(1));
    assert_eq!(table_cpu_limit(Some(10_240)), Duration::from_millis(1));
    assert_eq!(table_cpu_limit(None), Duration::from_millis(1));
    let limit = |mb: &str| {
        let env = [(crate::config::MEMORY_SIZE_VAR, mb)];
        EnvironmentConfig::from_env(&env).unwrap().table_cpu_limit
    };
    assert_eq!(limit("512"), Duration::from_nanos(289_429));
    // A bad memory size is the resource's error; here it leaves the default.
    assert_eq!(limit("lots"), Duration::from_millis(1));
}

/// In `auto`, a reading that costs more than the limit is the last one.
#[test]
fn auto_stops_after_a_reading_over_the_limit() {
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: None,
        connections: Connections::Auto,
        table_cpu_limit: Duration::ZERO,
    });
    s.open_tables();
    let sockets: HashSet<u64> = [1].into_iter().collect();
    s.established(&sockets, |_, _| {});
    assert!(s.table.is_some(), "the first reading was taken");
    assert_eq!(s.config.connections, Connections::Off);
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: None,
        connections: Connections::Auto,
        table_cpu_limit: Duration::from_secs(10),
    });
    s.open_tables();
    s.established(&sockets, |_, _| {});
    assert_eq!(s.config.connections, Connections::Auto);
}

#[test]
fn connections_off_reads_no_table() {
    let mut s = Sampler::new(EnvironmentConfig {
        sample_interval: None,
        connections: Connections::Off,
        ..EnvironmentConfig::default()
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
        ..EnvironmentConfig::default()
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
        ..EnvironmentConfig::default()
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

/// An established loopback connection of this process: both ends (hold them), the server's
/// port, and the client socket's inode.
pub(super) fn connection() -> (std::net::TcpStream, std::net::TcpStream, u16, u64) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let link = std::fs::read_link(format!("/proc/self/fd/{}", client.as_raw_fd())).unwrap();
    let inode = procfs::socket_inode(link.as_os_str().as_encoded_bytes()).expect("a socket");
    (client, server, port, inode)
}

/// The socket diagnostics and the `/proc` tables they fall back to find the same established
/// connection of this process, with its remote port.
#[test]
fn both_table_sources_find_the_same_connection() {
    let (_client, _server, port, inode) = connection();
    let sockets: HashSet<u64> = [inode].into_iter().collect();
    let read = |refused: bool| {
        let mut s = Sampler::new(EnvironmentConfig {
            sample_interval: None,
            connections: Connections::Always,
            ..EnvironmentConfig::default()
        });
        s.open_tables();
        if refused {
            s.diag = sockets::Diag::Refused;
        }
        let mut found = Vec::new();
        s.established(&sockets, |inode, port| found.push((inode, port)));
        (found, matches!(s.diag, sockets::Diag::Open(_)))
    };
    assert_eq!(
        read(false),
        (vec![(inode, port)], true),
        "through the diagnostics"
    );
    assert_eq!(
        read(true),
        (vec![(inode, port)], false),
        "from /proc/net/tcp"
    );
}
