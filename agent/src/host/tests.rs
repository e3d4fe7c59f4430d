use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use panorama_model::{Event, Layer};
use proptest::prelude::*;

use super::fsusage::FsUsage;
use super::procfs;
use super::*;

const T0: i64 = 1_700_000_000_000;
const T1: i64 = T0 + 10_000;

/// Writes `content` at `rel` under `root`, creating parent directories.
fn put(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Known sizes for the fixture's mount points; anything else has no usage.
fn fake_usage(mount_point: &Path) -> Option<FsUsage> {
    let (used, available) = match mount_point.to_str()? {
        "/" => (60 << 30, 40 << 30),
        "/data" => (1 << 30, 3 << 30),
        "/mnt/my disk" => (0, 5 << 20),
        _ => return None,
    };
    Some(FsUsage { used, available })
}

fn sampler(root: &Path) -> HostSampler {
    HostSampler::new(root.to_owned(), "web1".into(), DEFAULT_SERVICE.into())
        .with_fs_usage(fake_usage)
}

/// Name → value of one sample, checking the labels every event must carry.
fn values(events: &[Event]) -> BTreeMap<String, f64> {
    let mut map = BTreeMap::new();
    for e in events {
        assert_eq!(e.layer, Layer::Infra);
        assert_eq!(e.host, "web1");
        assert_eq!(e.service, "host");
        let v = e.value.unwrap_or_else(|| panic!("{} has no value", e.name));
        assert!(v.is_finite() && v >= 0.0, "{} = {v}", e.name);
        assert!(map.insert(e.name.clone(), v).is_none(), "{} twice", e.name);
    }
    map
}

#[track_caller]
fn assert_near(values: &BTreeMap<String, f64>, name: &str, want: f64) {
    let got = *values
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing; have {:?}", values.keys()));
    assert!((got - want).abs() < 1e-9, "{name}: got {got}, want {want}");
}

const NET_HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

fn net_line(
    name: &str,
    rx: u64,
    rx_errs: u64,
    rx_drop: u64,
    tx: u64,
    tx_errs: u64,
    tx_drop: u64,
) -> String {
    format!("{name:>6}: {rx} 10 {rx_errs} {rx_drop} 0 0 0 0 {tx} 20 {tx_errs} {tx_drop} 0 0 0 0\n")
}

/// A host with two disks (one partitioned), an NVMe drive, a loop device,
/// two real interfaces plus `lo` and a veth, assorted mounts and three
/// processes. `second` moves every counter by a known amount.
fn write_fixture(root: &Path, second: bool) {
    let stat = if second {
        // Deltas: user 100, system 100, idle 600, iowait 150, steal 50; total 1000.
        "cpu  1100 0 600 10600 350 0 0 60 7 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nprocesses 9999\nprocs_running 5\nprocs_blocked 2\n"
    } else {
        "cpu  1000 0 500 10000 200 0 0 10 7 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nprocesses 9000\nprocs_running 3\nprocs_blocked 1\n"
    };
    put(root, "stat", stat);
    put(root, "loadavg", "0.50 1.25 2.00 2/345 6789\n");
    put(
        root,
        "meminfo",
        "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\nBuffers:           10000 kB\nCached:           300000 kB\nSwapCached:            0 kB\nSwapTotal:        200000 kB\nSwapFree:         150000 kB\n",
    );
    put(
        root,
        "self/mounts",
        "/dev/sda1 / ext4 rw,relatime 0 0\n\
         proc /proc proc rw 0 0\n\
         sysfs /sys sysfs rw 0 0\n\
         tmpfs /run tmpfs rw 0 0\n\
         cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
         /dev/sdb1 /data xfs rw 0 0\n\
         /dev/sda1 /var/lib/kubelet/bind ext4 rw 0 0\n\
         overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0\n\
         /dev/loop0 /snap/core/1 squashfs ro 0 0\n\
         server:/export /mnt/nfs nfs4 rw 0 0\n\
         /dev/sdc1 /mnt/my\\040disk ext4 rw 0 0\n",
    );
    let disks = if second {
        // sda: +100 reads, +300 writes, +400/+1200 ms, +2500 ms busy in 10 s.
        // sdb: every counter went backwards (a reset).
        // nvme0n1: idle. sdd: new since the first sample.
        "   8       0 sda 1100 5 8800 5400 2300 7 18000 11200 0 32500 47000\n\
            8       1 sda1 1100 5 8800 5400 2300 7 18000 11200 0 32500 47000\n\
            8      16 sdb 1 0 8 1 1 0 8 1 0 2 3\n\
            8      48 sdd 5 0 40 10 5 0 40 10 0 20 20\n\
          259       0 nvme0n1 50 0 400 100 60 0 480 120 0 200 220 0 0 0 0 0 0\n\
          259       1 nvme0n1p1 50 0 400 100 60 0 480 120 0 200 220 0 0 0 0 0 0\n\
            7       0 loop0 9 0 9 9 9 0 9 9 0 9999 9\n"
    } else {
        "   8       0 sda 1000 5 8000 5000 2000 7 16000 10000 0 30000 45000\n\
            8       1 sda1 1000 5 8000 5000 2000 7 16000 10000 0 30000 45000\n\
            8      16 sdb 500 0 4000 900 700 0 5600 800 0 1500 1700\n\
          259       0 nvme0n1 50 0 400 100 60 0 480 120 0 200 220 0 0 0 0 0 0\n\
          259       1 nvme0n1p1 50 0 400 100 60 0 480 120 0 200 220 0 0 0 0 0 0\n\
            7       0 loop0 1 0 1 1 1 0 1 1 0 1 1\n"
    };
    put(root, "diskstats", disks);
    let net = if second {
        [
            net_line("lo", 9_000_000, 0, 0, 9_000_000, 0, 0),
            // +200000 rx, +50000 tx, +3+2+1+4 lost in 10 s.
            net_line("eth0", 201_000, 13, 2, 55_000, 1, 4),
            // rx wrapped; tx +10000.
            net_line("eth1", 100, 0, 0, 20_000, 0, 0),
            net_line("veth9a1", 5_000, 0, 0, 5_000, 0, 0),
        ]
    } else {
        [
            net_line("lo", 1_000, 0, 0, 1_000, 0, 0),
            net_line("eth0", 1_000, 10, 0, 5_000, 0, 0),
            net_line("eth1", 4_294_967_000, 0, 0, 10_000, 0, 0),
            net_line("veth9a1", 1, 0, 0, 1, 0, 0),
        ]
    };
    put(root, "net/dev", format!("{NET_HEADER}{}", net.concat()));
    for pid in ["1", "42", "31337"] {
        fs::create_dir_all(root.join(pid)).unwrap();
    }
    fs::create_dir_all(root.join("sys")).unwrap();
    put(root, "self/status", "not a pid");
}

#[test]
fn first_sample_has_gauges_but_no_rates() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    let mut s = sampler(dir.path());
    let mut out = Vec::new();
    s.sample(T0, &mut out).unwrap();
    assert!(out.iter().all(|e| e.ts_ms == T0));
    let v = values(&out);

    assert_near(&v, HEARTBEAT, 1.0);
    assert_near(&v, "load.1", 0.5);
    assert_near(&v, "load.5", 1.25);
    assert_near(&v, "load.15", 2.0);
    assert_near(&v, "mem.used", 75.0);
    assert_near(&v, "mem.used_bytes", 750_000.0 * 1024.0);
    assert_near(&v, "swap.used", 25.0);
    assert_near(&v, "swap.used_bytes", 50_000.0 * 1024.0);
    assert_near(&v, "procs.count", 3.0);
    assert_near(&v, "procs.running", 3.0);
    assert_near(&v, "procs.blocked", 1.0);

    // Real file systems only, each once, with the escaped space undone.
    let mounts: Vec<&str> = v
        .keys()
        .filter_map(|k| k.strip_prefix("disk.")?.strip_suffix(".used"))
        .collect();
    assert_eq!(mounts, ["/", "/data", "/mnt/my disk"]);
    assert_near(&v, "disk./.used", 60.0);
    assert_near(&v, "disk./.free_bytes", (40u64 << 30) as f64);
    assert_near(&v, "disk./data.used", 25.0);
    assert_near(&v, "disk./mnt/my disk.used", 0.0);
    assert_near(&v, "disk./mnt/my disk.free_bytes", (5u64 << 20) as f64);

    for rate in ["cpu.", ".io_util", ".await_ms", "net."] {
        assert!(
            !v.keys().any(|k| k.contains(rate)),
            "{rate} on first sample"
        );
    }
}

#[test]
fn second_sample_has_exact_rates() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    let mut s = sampler(dir.path());
    let mut out = Vec::new();
    s.sample(T0, &mut out).unwrap();
    write_fixture(dir.path(), true);
    out.clear();
    s.sample(T1, &mut out).unwrap();
    let v = values(&out);

    assert_near(&v, "cpu.busy", 25.0);
    assert_near(&v, "cpu.iowait", 15.0);
    assert_near(&v, "cpu.steal", 5.0);
    assert_near(&v, "procs.running", 5.0);
    assert_near(&v, "procs.blocked", 2.0);

    assert_near(&v, "disk.sda.io_util", 25.0);
    assert_near(&v, "disk.sda.await_ms", 1600.0 / 400.0);
    assert_near(&v, "disk.nvme0n1.io_util", 0.0);
    assert_near(&v, "disk.nvme0n1.await_ms", 0.0);
    let disk_rates: Vec<&str> = v
        .keys()
        .filter(|k| k.ends_with(".io_util") || k.ends_with(".await_ms"))
        .map(String::as_str)
        .collect();
    // sdb was reset, sdd is new, partitions and loop devices never count.
    assert_eq!(
        disk_rates,
        [
            "disk.nvme0n1.await_ms",
            "disk.nvme0n1.io_util",
            "disk.sda.await_ms",
            "disk.sda.io_util"
        ]
    );

    assert_near(&v, "net.eth0.rx_bytes", 20_000.0);
    assert_near(&v, "net.eth0.tx_bytes", 5_000.0);
    assert_near(&v, "net.eth0.errors", 1.0);
    assert_near(&v, "net.eth1.tx_bytes", 1_000.0);
    assert_near(&v, "net.eth1.errors", 0.0);
    assert!(
        !v.contains_key("net.eth1.rx_bytes"),
        "wrapped counter gave a rate"
    );
    assert!(
        !v.keys()
            .any(|k| k.starts_with("net.lo.") || k.starts_with("net.veth"))
    );

    // A third sample one second later: sdd now has a base, sdb is back.
    out.clear();
    s.sample(T1 + 1_000, &mut out).unwrap();
    let v = values(&out);
    assert_near(&v, "disk.sdd.io_util", 0.0);
    assert_near(&v, "disk.sdb.io_util", 0.0);
    assert_near(&v, "net.eth1.rx_bytes", 0.0);
    // Unchanged counters: the CPU delta is zero, so no share is invented.
    assert!(!v.contains_key("cpu.busy"));
}

#[test]
fn clock_standing_still_skips_rates() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    let mut s = sampler(dir.path());
    let mut out = Vec::new();
    s.sample(T0, &mut out).unwrap();
    write_fixture(dir.path(), true);
    out.clear();
    s.sample(T0, &mut out).unwrap();
    let v = values(&out);
    assert!(
        !v.keys()
            .any(|k| k.ends_with(".io_util") || k.starts_with("net."))
    );
    // CPU shares come from jiffies, not the clock.
    assert_near(&v, "cpu.busy", 25.0);
}

#[test]
fn broken_sources_are_reported_and_the_rest_still_sampled() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    fs::remove_file(dir.path().join("diskstats")).unwrap();
    put(dir.path(), "loadavg", "nonsense\n");
    put(dir.path(), "stat", "intr 1 2 3\n");
    let mut s = sampler(dir.path());
    let mut out = Vec::new();
    let err = s.sample(T0, &mut out).unwrap_err();

    let mut failed: Vec<String> = err
        .problems
        .iter()
        .map(|p| p.path().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    failed.sort();
    assert_eq!(failed, ["diskstats", "loadavg", "stat"]);
    assert!(matches!(err.problems[0], SourceError::Malformed { .. }));
    let text = err.to_string();
    assert!(
        text.contains("diskstats") && text.contains("loadavg"),
        "{text}"
    );

    let v = values(&out);
    assert_near(&v, HEARTBEAT, 1.0);
    assert_near(&v, "mem.used", 75.0);
    assert_near(&v, "procs.count", 3.0);
    assert!(v.contains_key("disk./.used"));
    assert!(!v.keys().any(|k| k.starts_with("load.")));
}

#[test]
fn empty_proc_root_still_beats() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = HostSampler::new(dir.path().join("absent"), "web1".into(), "host".into());
    let mut out = Vec::new();
    let err = s.sample(T0, &mut out).unwrap_err();
    assert_eq!(err.problems.len(), 7);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, HEARTBEAT);
    assert_eq!(out[0].value, Some(1.0));
}

#[test]
fn heartbeat_carries_the_agent_version() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    let mut s = sampler(dir.path());
    for now in [T0, T1] {
        let mut out = Vec::new();
        s.sample(now, &mut out).unwrap();
        let beats: Vec<&Event> = out.iter().filter(|e| e.name == HEARTBEAT).collect();
        assert_eq!(beats.len(), 1);
        // The only dim, and the same every time: one series per host.
        let want = BTreeMap::from([("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
        assert_eq!(beats[0].dims, want);
        assert!(!VERSION.is_empty());
        // Other metrics stay without dims.
        assert!(
            out.iter()
                .filter(|e| e.name != HEARTBEAT)
                .all(|e| e.dims.is_empty())
        );
    }
}

#[test]
fn missing_mem_available_falls_back_and_no_swap_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "meminfo",
        "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 200 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    let mut s = sampler(dir.path());
    let mut out = Vec::new();
    let _ = s.sample(T0, &mut out);
    let v = values(&out);
    assert_near(&v, "mem.used", 60.0);
    assert_near(&v, "swap.used", 0.0);
}

#[test]
fn real_proc_gives_sane_values() {
    let proc_root = Path::new(DEFAULT_PROC_ROOT);
    if !proc_root.join("stat").exists() {
        return; // Not Linux.
    }
    let mut s = HostSampler::new(proc_root.to_owned(), "self".into(), "host".into());
    let mut out = Vec::new();
    let t0 = chrono::Utc::now().timestamp_millis();
    // Containers may hide a source (diskstats, net/dev); the rest must work.
    let _ = s.sample(t0, &mut out);
    // Burn a little CPU so the jiffy counters move between the samples.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(150);
    let mut spin = 0u64;
    while std::time::Instant::now() < deadline {
        spin = std::hint::black_box(spin.wrapping_add(1));
    }
    out.clear();
    let _ = s.sample(t0 + 150, &mut out);

    let mut seen = BTreeMap::new();
    for e in &out {
        assert_eq!(e.layer, Layer::Infra);
        let v = e.value.unwrap();
        assert!(v.is_finite() && v >= 0.0, "{} = {v}", e.name);
        if e.name.ends_with(".used") || e.name.ends_with(".io_util") || e.name.starts_with("cpu.") {
            assert!(v <= 100.0, "{} = {v}", e.name);
        }
        seen.insert(e.name.as_str(), v);
    }
    assert_eq!(seen.get(HEARTBEAT), Some(&1.0));
    for name in [
        "cpu.busy",
        "mem.used",
        "load.1",
        "load.5",
        "load.15",
        "procs.count",
    ] {
        assert!(
            seen.contains_key(name),
            "{name} missing from {:?}",
            seen.keys()
        );
    }
    assert!(seen["procs.count"] >= 1.0);
}

#[tokio::test]
async fn run_sends_a_sample_per_tick_until_the_receiver_goes() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), false);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(run(sampler(dir.path()), Duration::from_millis(10), tx));
    for _ in 0..2 {
        let batch = rx.recv().await.unwrap();
        assert!(batch.iter().any(|e| e.name == HEARTBEAT));
    }
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run ends once the receiver is dropped")
        .unwrap();
}

#[test]
fn partitions_and_virtual_devices_are_not_disks() {
    let mut names = vec![
        "sda",
        "sda1",
        "sda10",
        "nvme0n1",
        "nvme0n1p1",
        "nvme0n10",
        "mmcblk0",
        "mmcblk0p2",
        "md0",
        "dm-0",
        "loop3",
        "ram0",
        "zram0",
        "sr0",
        "xvda",
        "xvda1",
        "sdaa",
    ];
    names.sort_unstable();
    let disks: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| procfs::is_whole_disk(n, &names))
        .collect();
    assert_eq!(
        disks,
        [
            "dm-0", "md0", "mmcblk0", "nvme0n1", "nvme0n10", "sda", "sdaa", "xvda"
        ]
    );
}

#[test]
fn overlay_counts_only_as_root() {
    let keep = |line: &str| procfs::is_real_filesystem(&procfs::parse_mount_line(line).unwrap());
    assert!(keep("overlay / overlay rw 0 0"));
    assert!(!keep(
        "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0"
    ));
    assert!(keep("/dev/sdb1 /mnt/win fuseblk rw 0 0"));
    assert!(!keep("sshfs#h: /mnt/remote fuse.sshfs rw 0 0"));
    assert!(keep("tank/home /home zfs rw 0 0"));
}

/// Content for one procfs file: raw bytes, or text shaped enough like
/// procfs that the parsers get past their first checks.
fn file_content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        "([a-z0-9_]{0,8}:?[ \t]{1,2}(-?[0-9]{1,25}(\\.[0-9]{0,3})?|kB|/dev/sd[a-c][0-9]?|\\\\[0-9]{3})){0,20}\n{0,2}"
            .prop_map(String::into_bytes),
        prop::collection::vec(
            "[ ]{0,3}[0-9]{1,3} [0-9]{1,3} (sda|sda1|nvme0n1p1|eth0|lo|cpu|/dev/sda|/) [0-9 ]{0,60}",
            0..6
        )
        .prop_map(|lines| lines.join("\n").into_bytes()),
    ]
}

const FILES: [&str; 6] = [
    "stat",
    "loadavg",
    "meminfo",
    "self/mounts",
    "diskstats",
    "net/dev",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_files_never_panic(
        first in prop::collection::vec(file_content(), FILES.len()),
        second in prop::collection::vec(file_content(), FILES.len()),
        dt in -5_000i64..20_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sampler(dir.path());
        let mut out = Vec::new();
        for (round, contents) in [first, second].iter().enumerate() {
            for (file, content) in FILES.iter().zip(contents) {
                put(dir.path(), file, content);
            }
            out.clear();
            let _ = s.sample(T0 + dt * round as i64, &mut out);
            prop_assert!(out.iter().any(|e| e.name == HEARTBEAT));
            for e in &out {
                let v = e.value.unwrap();
                prop_assert!(v.is_finite() && v >= 0.0, "{} = {}", e.name, v);
            }
        }
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let lossy = String::from_utf8_lossy(&bytes);
        for t in [text.as_str(), &*lossy] {
            let _ = procfs::parse_stat(t);
            let _ = procfs::parse_loadavg(t);
            let _ = procfs::parse_meminfo(t).available();
            let names: Vec<&str> = t.split_whitespace().collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            for line in t.lines() {
                let _ = procfs::parse_diskstats_line(line);
                let _ = procfs::parse_net_dev_line(line);
                if let Some(m) = procfs::parse_mount_line(line) {
                    let _ = procfs::is_real_filesystem(&m);
                }
            }
            for n in names {
                let _ = procfs::is_whole_disk(n, &sorted);
            }
        }
    }
}
