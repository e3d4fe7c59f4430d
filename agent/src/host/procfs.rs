//! Pure parsers for the handful of procfs files the host sampler reads.
//!
//! They take text and return counters; they never touch the file system, so
//! the property tests can feed them anything. Every number goes through
//! `u64::from_str` or `f64::from_str` and every sum is saturating: hostile or
//! truncated content yields `None` or a skipped line, never a panic.

use std::borrow::Cow;

/// Jiffies per CPU state from the aggregate `cpu` line of `/proc/stat`.
///
/// `guest` and `guest_nice` are left out on purpose: the kernel already counts
/// them inside `user` and `nice`, so adding them would count guest time twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) user: u64,
    pub(crate) nice: u64,
    pub(crate) system: u64,
    pub(crate) idle: u64,
    pub(crate) iowait: u64,
    pub(crate) irq: u64,
    pub(crate) softirq: u64,
    pub(crate) steal: u64,
}

impl CpuTimes {
    /// All jiffies spent, in any state.
    pub(crate) fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |acc, v| acc.saturating_add(*v))
    }

    /// Field-wise difference, or `None` if any field went backwards.
    ///
    /// Per-field rather than on the total: a kernel that resets or misreports
    /// one state (iowait is known to wobble on tickless kernels) must not turn
    /// into a negative share of another.
    pub(crate) fn delta(&self, earlier: &CpuTimes) -> Option<CpuTimes> {
        Some(CpuTimes {
            user: self.user.checked_sub(earlier.user)?,
            nice: self.nice.checked_sub(earlier.nice)?,
            system: self.system.checked_sub(earlier.system)?,
            idle: self.idle.checked_sub(earlier.idle)?,
            iowait: self.iowait.checked_sub(earlier.iowait)?,
            irq: self.irq.checked_sub(earlier.irq)?,
            softirq: self.softirq.checked_sub(earlier.softirq)?,
            steal: self.steal.checked_sub(earlier.steal)?,
        })
    }
}

/// What the sampler uses from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatInfo {
    /// The aggregate `cpu` line, if present and well formed.
    pub(crate) cpu: Option<CpuTimes>,
    /// Runnable tasks right now.
    pub(crate) procs_running: Option<u64>,
    /// Tasks in uninterruptible sleep (usually waiting on I/O).
    pub(crate) procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`. Missing lines leave their field `None`.
pub(crate) fn parse_stat(text: &str) -> StatInfo {
    let mut info = StatInfo::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") if info.cpu.is_none() => info.cpu = parse_cpu_fields(fields),
            Some("procs_running") => info.procs_running = fields.next().and_then(parse_u64),
            Some("procs_blocked") => info.procs_blocked = fields.next().and_then(parse_u64),
            _ => {}
        }
    }
    info
}

fn parse_cpu_fields<'a>(mut fields: impl Iterator<Item = &'a str>) -> Option<CpuTimes> {
    // The first four states exist on every kernel; the later ones were added
    // over the 2.6 series and count as zero where absent.
    let mut next_required = || fields.next().and_then(parse_u64);
    let user = next_required()?;
    let nice = next_required()?;
    let system = next_required()?;
    let idle = next_required()?;
    let mut next_optional = || next_required().unwrap_or(0);
    Some(CpuTimes {
        user,
        nice,
        system,
        idle,
        iowait: next_optional(),
        irq: next_optional(),
        softirq: next_optional(),
        steal: next_optional(),
    })
}

/// The three load averages of `/proc/loadavg`.
pub(crate) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace();
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    Some([next()?, next()?, next()?])
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemInfo {
    pub(crate) total: Option<u64>,
    pub(crate) available: Option<u64>,
    pub(crate) free: Option<u64>,
    pub(crate) buffers: Option<u64>,
    pub(crate) cached: Option<u64>,
    pub(crate) swap_total: Option<u64>,
    pub(crate) swap_free: Option<u64>,
}

impl MemInfo {
    /// Memory a new workload could use without swapping.
    ///
    /// `MemAvailable` is the kernel's own estimate and the only honest one;
    /// before Linux 3.14 it does not exist and free + buffers + cached is the
    /// customary approximation (it overstates, since not all cache is
    /// reclaimable).
    pub(crate) fn available(&self) -> Option<u64> {
        self.available.or_else(|| {
            Some(
                self.free?
                    .saturating_add(self.buffers.unwrap_or(0))
                    .saturating_add(self.cached.unwrap_or(0)),
            )
        })
    }
}

/// Parses `/proc/meminfo` (`Key:   123 kB` lines; values are in KiB).
pub(crate) fn parse_meminfo(text: &str) -> MemInfo {
    let mut info = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut info.total,
            "MemAvailable" => &mut info.available,
            "MemFree" => &mut info.free,
            "Buffers" => &mut info.buffers,
            "Cached" => &mut info.cached,
            "SwapTotal" => &mut info.swap_total,
            "SwapFree" => &mut info.swap_free,
            _ => continue,
        };
        let mut fields = rest.split_ascii_whitespace();
        let Some(n) = fields.next().and_then(parse_u64) else {
            continue;
        };
        // Every size line says kB today; a unit-less line is taken as bytes
        // rather than guessed at.
        let bytes = match fields.next() {
            Some("kB") => n.saturating_mul(1024),
            None => n,
            Some(_) => continue,
        };
        *slot = Some(bytes);
    }
    info
}

/// Cumulative counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskCounters {
    /// Reads completed.
    pub(crate) reads: u64,
    /// Milliseconds spent by all reads.
    pub(crate) read_ms: u64,
    /// Writes completed.
    pub(crate) writes: u64,
    /// Milliseconds spent by all writes.
    pub(crate) write_ms: u64,
    /// Milliseconds during which at least one I/O was in flight.
    pub(crate) io_ms: u64,
}

/// Parses one `/proc/diskstats` line into the device name and its counters.
///
/// Lines with fewer than the eleven classic counters (old kernels printed four
/// for partitions) are skipped.
pub(crate) fn parse_diskstats_line(line: &str) -> Option<(&str, DiskCounters)> {
    let mut f = line.split_ascii_whitespace();
    let _major = f.next()?;
    let _minor = f.next()?;
    let name = f.next()?;
    let mut c = [0u64; 10];
    for slot in &mut c {
        *slot = parse_u64(f.next()?)?;
    }
    // Order after the name: reads, reads merged, sectors read, ms reading,
    // writes, writes merged, sectors written, ms writing, in flight, ms doing I/O.
    Some((
        name,
        DiskCounters {
            reads: c[0],
            read_ms: c[3],
            writes: c[4],
            write_ms: c[7],
            io_ms: c[9],
        },
    ))
}

/// Whether a block device is worth a series of its own.
///
/// Loop, RAM, zram, optical and floppy devices carry no workload anyone pages
/// on, and partitions would double-count their disk. Partitions are
/// recognised by their parent being listed too (`sda` / `sda1`,
/// `nvme0n1` / `nvme0n1p1`), which needs no `/sys` and works for any naming
/// scheme the kernel uses. `names` must be sorted.
pub(crate) fn is_whole_disk(name: &str, names: &[&str]) -> bool {
    const SKIP: [&str; 5] = ["loop", "ram", "zram", "sr", "fd"];
    if SKIP.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == name.len() || base.is_empty() {
        return true;
    }
    let listed = |parent: &str| names.binary_search(&parent).is_ok();
    // `sda1`: parent ends in a letter and the partition number follows it.
    if !base.ends_with(|c: char| c.is_ascii_digit()) && listed(base) {
        return false;
    }
    // `nvme0n1p1`, `mmcblk0p2`: parent ends in a digit, so a `p` separates.
    // Checking for the `p` also keeps `nvme0n10` a disk next to `nvme0n1`.
    let numbered_parent = base
        .strip_suffix('p')
        .filter(|parent| parent.ends_with(|c: char| c.is_ascii_digit()));
    !numbered_parent.is_some_and(listed)
}

/// Cumulative counters of one network interface from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetCounters {
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    /// Receive and transmit errors plus drops: all packets the interface lost.
    pub(crate) errors: u64,
}

/// Parses one `/proc/net/dev` line into the interface name and its counters.
/// The two header lines, and anything else without the colon, yield `None`.
pub(crate) fn parse_net_dev_line(line: &str) -> Option<(&str, NetCounters)> {
    // The last colon: counters never contain one, and older kernels print
    // `eth0:123` with no space after it.
    let colon = line.rfind(':')?;
    let name = line[..colon].trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('|') {
        return None;
    }
    let mut c = [0u64; 12];
    let mut f = line[colon + 1..].split_ascii_whitespace();
    for slot in &mut c {
        *slot = parse_u64(f.next()?)?;
    }
    // Receive: bytes packets errs drop fifo frame compressed multicast;
    // then transmit: bytes packets errs drop ...
    Some((
        name,
        NetCounters {
            rx_bytes: c[0],
            tx_bytes: c[8],
            errors: c[2]
                .saturating_add(c[3])
                .saturating_add(c[10])
                .saturating_add(c[11]),
        },
    ))
}

/// One line of `/proc/self/mounts`: the source, where it is mounted, and its
/// file-system type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount<'a> {
    pub(crate) device: &'a str,
    pub(crate) mount_point: Cow<'a, str>,
    pub(crate) fs_type: &'a str,
}

/// Parses one mounts line; the mount point's octal escapes (`\040` for a
/// space) are undone so metric names show the path an operator would type.
pub(crate) fn parse_mount_line(line: &str) -> Option<Mount<'_>> {
    let mut f = line.split_ascii_whitespace();
    let device = f.next()?;
    let mount_point = f.next()?;
    let fs_type = f.next()?;
    Some(Mount {
        device,
        mount_point: unescape_octal(mount_point),
        fs_type,
    })
}

/// Whether a mount holds data an operator could fill up.
///
/// Pseudo and memory file systems are skipped, and so are read-only images
/// (squashfs snaps, ISO images) that are full by construction and would
/// alert forever. Network file systems are skipped too: statvfs on a dead NFS
/// server blocks without a timeout and would stall the whole sampler.
/// Overlay is kept only at `/`: that is the root an agent running inside a
/// container sees, whereas on a container host every running container adds
/// an overlay mount, which would churn series and repeat one disk's usage.
pub(crate) fn is_real_filesystem(mount: &Mount<'_>) -> bool {
    const PSEUDO: &[&str] = &[
        "proc",
        "sysfs",
        "tmpfs",
        "devtmpfs",
        "devpts",
        "devfs",
        "cgroup",
        "cgroup2",
        "pstore",
        "bpf",
        "tracefs",
        "debugfs",
        "securityfs",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "rpc_pipefs",
        "nsfs",
        "ramfs",
        "rootfs",
        "efivarfs",
        "selinuxfs",
        "squashfs",
        "iso9660",
        "udf",
        "nfs",
        "nfs4",
        "nfsd",
        "cifs",
        "smb3",
        "ceph",
        "glusterfs",
        "9p",
    ];
    let fs = mount.fs_type;
    if PSEUDO.contains(&fs) {
        return false;
    }
    // FUSE: sshfs, gvfs, lxcfs and friends are remote or synthetic.
    if fs == "fuse" || fs.starts_with("fuse.") {
        return false;
    }
    // fuseblk is ntfs-3g and the like on a local block device: real data.
    if fs == "fuseblk" {
        return mount.device.starts_with("/dev/");
    }
    if fs == "overlay" || fs == "aufs" {
        return mount.mount_point == "/";
    }
    true
}

fn unescape_octal(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'\\' => bytes.get(i + 1..i + 4).and_then(octal_byte),
            _ => None,
        };
        if let Some(code) = escaped {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    let mut v: u16 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v * 8 + u16::from(d - b'0');
    }
    u8::try_from(v).ok()
}

fn parse_u64(s: &str) -> Option<u64> {
    s.parse().ok()
}
