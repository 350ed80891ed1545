use super::*;

const STAT: &str = "4242 (python3 (my) app) S 4200 4242 4200 0 -1 4194560 1500 0 0 0 \
                    731 42 5 3 20 0 7 0 12345 300000000 9000 18446744073709551615 1 1 0 0 0 0 0 \
                    16781312 16386 0 0 0 17 1 0 0 0 0 0\n";

#[test]
fn stat_fields_are_counted_from_the_last_parenthesis() {
    let s = parse_stat(STAT).expect("parses");
    assert_eq!(
        s,
        Stat {
            ppid: 4200,
            utime: 731,
            stime: 42,
            cutime: 5,
            cstime: 3,
            threads: 7,
            rss_pages: 9000,
        }
    );
}

#[test]
fn stat_that_is_cut_short_or_garbled_is_refused() {
    assert_eq!(parse_stat(""), None);
    assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
    assert_eq!(parse_stat(&STAT.replace(" 731 ", " seven ")), None);
    assert_eq!(parse_stat("no parenthesis at all 1 2 3"), None);
}

#[test]
fn statm_gives_resident_pages() {
    assert_eq!(parse_statm("75000 9000 1200 300 0 5000 0\n"), Some(9000));
    assert_eq!(parse_statm("75000\n"), None);
    assert_eq!(parse_statm("75000 x\n"), None);
}

#[test]
fn status_reads_rss_and_peak_and_counts_bad_lines() {
    let text = "Name:\tpython3\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\n\
                VmRSS:\t   40960 kB\ngarbage line without colon\nThreads:\t7\n";
    let s = parse_status(text);
    assert_eq!(s.hwm, Some(51200 * 1024));
    assert_eq!(s.rss, Some(40960 * 1024));
    assert_eq!(s.bad_lines, 1);
}

#[test]
fn a_bad_status_value_does_not_cost_the_other() {
    let s = parse_status("VmHWM:\t lots kB\nVmRSS:\t 100 kB\n");
    assert_eq!((s.hwm, s.rss, s.bad_lines), (None, Some(102_400), 1));
    let s = parse_status("VmRSS:\t 100 MB\nVmHWM:\t 200 kB\n");
    assert_eq!((s.hwm, s.rss, s.bad_lines), (Some(204_800), None, 1));
}

const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2206170700  525440    0    0    0     0          0         0 2206170700  525440    0    0    0     0       0          0
  eth0:   1000       10    0    0    0     0          0         0      500       5    0    0    0     0       0          0
 veth1: 24 1 0 0 0 0 0 0 76 1 0 0 0 0 0 0
  bad0: 12 oops
";

#[test]
fn net_dev_sums_every_interface_but_loopback() {
    let n = parse_net_dev(NET_DEV);
    assert_eq!((n.rx_bytes, n.tx_bytes), (1024, 576));
    assert_eq!(n.bad_lines, 1, "bad0 is counted, the headers are not");
}

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1147 1 00000000beae3714 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:A1B3 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 5002 1 0000000000000000 20 4 30 10 -1
   this line is broken
   3: 0100007F:A1B4 0100007F:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 5003 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:A1B5 0100007F:1538 06 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:A1B6 0100007F:ZZZZ 01 00000000:00000000 00:00000000 00000000  1000        0 5004 1
";

#[test]
fn tcp_lists_established_connections_and_skips_bad_lines() {
    let mut seen = Vec::new();
    let bad = parse_tcp(TCP, |c| seen.push((c.remote_port, c.inode)));
    assert_eq!(seen, vec![(5432, 5001), (5432, 5002), (443, 5003)]);
    assert_eq!(bad, 2, "the broken line and the bad port");
}

#[test]
fn tcp6_addresses_parse_the_same_way() {
    let text = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:1538 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1\n";
    let mut seen = Vec::new();
    assert_eq!(parse_tcp(text, |c| seen.push((c.remote_port, c.inode))), 0);
    assert_eq!(seen, vec![(5432, 777)]);
}

#[test]
fn socket_links_give_their_inode() {
    assert_eq!(socket_inode(b"socket:[5001]"), Some(5001));
    assert_eq!(socket_inode(b"pipe:[5001]"), None);
    assert_eq!(socket_inode(b"/tmp/file"), None);
    assert_eq!(socket_inode(b"socket:[x]"), None);
}

#[test]
fn environ_finds_a_whole_key() {
    let env = b"AWS_LAMBDA_RUNTIME_API_X=no\0_HANDLER=app.handler\0AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\0";
    assert_eq!(
        environ_value(env, "AWS_LAMBDA_RUNTIME_API"),
        Some(&b"127.0.0.1:9001"[..])
    );
    assert_eq!(environ_value(env, "_HANDLER"), Some(&b"app.handler"[..]));
    assert_eq!(environ_value(env, "HANDLER"), None);
}

#[test]
fn children_skip_bad_ids() {
    let mut out = Vec::new();
    assert_eq!(parse_children("12 13 x 15 \n", &mut out), 1);
    assert_eq!(out, vec![12, 13, 15]);
}

#[test]
fn loadavg_gives_the_last_pid() {
    assert_eq!(
        parse_loadavg_last_pid("0.52 0.58 0.59 2/1234 56789\n"),
        Some(56789)
    );
    assert_eq!(parse_loadavg_last_pid("0.52 0.58 0.59 2/1234\n"), None);
    assert_eq!(parse_loadavg_last_pid("0.52 0.58 0.59 21234 56789\n"), None);
    assert_eq!(parse_loadavg_last_pid(""), None);
}
