//! Host sampling for the `infra` layer: CPU, load, memory, swap, disks,
//! network, processes, and the agent's own heartbeat.
//!
//! Every [`DEFAULT_INTERVAL`] the agent reads a few procfs files and turns them
//! into [`Event`]s with [`Layer::Infra`] and a gauge `value`. Everything comes
//! from procfs text rather than system calls, so the sampler is safe Rust,
//! runs unprivileged, and is tested against fixture directories; the one
//! figure procfs lacks, free space per mount, sits behind a single function
//! (see `fsusage.rs`).
//!
//! Kernel counters are cumulative, so rates (CPU shares, disk utilisation,
//! network throughput) are differences between two samples. The first sample
//! therefore carries only plain gauges, and a counter that went backwards (a
//! driver reset, a 32-bit wrap, a device replaced under the same name) skips
//! its rate for one tick instead of reporting a negative or absurd value.
//!
//! A broken source never hides the others: each file is read and parsed on
//! its own, what could be produced is pushed, and the failures come back
//! together in a [`HostError`]. Each source logs once when it starts failing
//! and once when it recovers, not every ten seconds.
//!
//! # Metrics
//!
//! | name | unit | from |
//! |---|---|---|
//! | `agent.heartbeat` | always 1; dim `version`, the agent's release (`0.1.0`) | every sample, even when all else fails |
//! | `cpu.busy`, `cpu.iowait`, `cpu.steal` | % of all CPU time | `stat` deltas |
//! | `load.1`, `load.5`, `load.15` | runnable + uninterruptible tasks | `loadavg` |
//! | `mem.used` | % of `MemTotal` not `MemAvailable` | `meminfo` |
//! | `mem.used_bytes` | bytes | `meminfo` |
//! | `swap.used` | % of swap (0 without swap) | `meminfo` |
//! | `swap.used_bytes` | bytes | `meminfo` |
//! | `disk.<mount>.used` | % as `df` shows it | `self/mounts` + statvfs |
//! | `disk.<mount>.free_bytes` | bytes available to non-root | `self/mounts` + statvfs |
//! | `disk.<dev>.io_util` | % of wall time with I/O in flight | `diskstats` deltas |
//! | `disk.<dev>.await_ms` | ms per completed read or write (0 when idle) | `diskstats` deltas |
//! | `net.<if>.rx_bytes`, `net.<if>.tx_bytes` | bytes/s | `net/dev` deltas |
//! | `net.<if>.errors` | packets/s lost (errors + drops, rx + tx) | `net/dev` deltas |
//! | `procs.count` | processes (numeric entries of the proc root) | directory listing |
//! | `procs.running`, `procs.blocked` | tasks runnable / in uninterruptible sleep | `stat` |
//!
//! `procs.count` lists the proc root rather than reading `/proc/stat`, whose
//! `processes` line counts forks since boot, not processes alive.
//!
//! The heartbeat's `version` dim is how the dashboard's Hosts page knows
//! which release each agent runs. It is the heartbeat's only dim and the
//! same on every sample of a running agent, so the heartbeat stays one
//! series per host (a new one after an upgrade); the other metrics carry
//! no dims.
//!
//! Series are bounded: at most [`MAX_SERIES_PER_FAMILY`] mounts, disks and
//! interfaces each; `lo` and `veth*` (one per container on a container host)
//! are skipped; partitions, loop, RAM, zram, optical and floppy devices are
//! skipped; pseudo, memory, read-only-image and network file systems are
//! skipped (statvfs on a dead NFS server would block the sampler).

mod fsusage;
mod procfs;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use panorama_model::{Event, Layer};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use fsusage::FsUsage;
use procfs::{CpuTimes, DiskCounters, NetCounters};

/// How often the agent samples the host unless configured otherwise: often
/// enough that a per-minute rollup holds six points, rarely enough to cost
/// nothing measurable.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Where procfs is mounted on an ordinary host.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// The service name host events carry unless configured otherwise.
pub const DEFAULT_SERVICE: &str = "host";

/// The liveness series (one event per sample, so the collector can tell a
/// silent host from a quiet one) and its dim naming the agent's release:
/// defined in `model`, which the dashboard reads them by.
pub use panorama_model::agent::{HEARTBEAT, VERSION_DIM};

/// This agent's release, the value of [`VERSION_DIM`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most mounts, disks and interfaces (each) reported per host; beyond it
/// the rest are dropped with one warning, so an odd host cannot explode the
/// series count.
pub const MAX_SERIES_PER_FAMILY: usize = 64;

/// procfs files are small; the cap only guards against a fixture or a broken
/// mount handing us something enormous.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// One procfs input the sampler could not use on this tick.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file or directory could not be read (missing in a container,
    /// permission denied, I/O error).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The file was read but does not hold what the kernel writes there.
    #[error("cannot parse {}: {reason}", path.display())]
    Malformed {
        /// What was being parsed.
        path: PathBuf,
        /// What was missing or wrong.
        reason: &'static str,
    },
}

impl SourceError {
    /// The file or directory this problem is about.
    pub fn path(&self) -> &Path {
        match self {
            SourceError::Read { path, .. } | SourceError::Malformed { path, .. } => path,
        }
    }
}

/// A sample that could not read every source. The events that could be
/// produced were still pushed; each problem has already been logged when its
/// source started failing, so callers need not log this again at warn level.
#[derive(Debug)]
pub struct HostError {
    /// One entry per source that failed on this tick, never empty.
    pub problems: Vec<SourceError>,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host sample incomplete")?;
        for (i, p) in self.problems.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.problems
            .first()
            .map(|p| p as &(dyn std::error::Error + 'static))
    }
}

/// The inputs, in the order they are sampled; indexes [`Health::failing`].
#[derive(Debug, Clone, Copy)]
enum Source {
    Stat,
    Loadavg,
    Meminfo,
    Mounts,
    Diskstats,
    NetDev,
    Processes,
}

const SOURCES: usize = 7;

/// Paths under the proc root, joined once rather than every tick.
#[derive(Debug)]
struct Paths {
    root: PathBuf,
    stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    self_mounts: PathBuf,
    mounts: PathBuf,
    diskstats: PathBuf,
    net_dev: PathBuf,
}

/// Last counters seen for one device, when, and in which sample.
#[derive(Debug)]
struct Tracked<C> {
    counters: C,
    at_ms: i64,
    generation: u64,
}

/// Counters from the previous sample, the base of every rate.
#[derive(Debug, Default)]
struct Previous {
    generation: u64,
    cpu: Option<CpuTimes>,
    disks: HashMap<String, Tracked<DiskCounters>>,
    nets: HashMap<String, Tracked<NetCounters>>,
}

/// What has been logged already, so a condition is reported once, not every tick.
#[derive(Debug, Default)]
struct Health {
    failing: [bool; SOURCES],
    capped: [bool; 3],
}

/// Samples one host from its procfs and emits `infra` events.
///
/// Keeps the previous sample's counters so that the next call can turn them
/// into rates; one sampler per host, called every [`DEFAULT_INTERVAL`] or so.
#[derive(Debug)]
pub struct HostSampler {
    paths: Paths,
    service: String,
    host: String,
    fs_usage: fn(&Path) -> Option<FsUsage>,
    prev: Previous,
    health: Health,
    /// Reused for every file so a steady-state sample allocates only the
    /// events themselves.
    buf: Vec<u8>,
}

impl HostSampler {
    /// A sampler reading procfs at `proc_root` (normally [`DEFAULT_PROC_ROOT`];
    /// tests point it at a fixture), labelling events with `host` and
    /// `service` (normally [`DEFAULT_SERVICE`]).
    pub fn new(proc_root: PathBuf, host: String, service: String) -> HostSampler {
        let paths = Paths {
            stat: proc_root.join("stat"),
            loadavg: proc_root.join("loadavg"),
            meminfo: proc_root.join("meminfo"),
            self_mounts: proc_root.join("self/mounts"),
            mounts: proc_root.join("mounts"),
            diskstats: proc_root.join("diskstats"),
            net_dev: proc_root.join("net/dev"),
            root: proc_root,
        };
        HostSampler {
            paths,
            service,
            host,
            fs_usage: fsusage::fs_usage,
            prev: Previous::default(),
            health: Health::default(),
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Replaces the statvfs call, so tests can give mounts known sizes.
    #[cfg(test)]
    pub(crate) fn with_fs_usage(mut self, f: fn(&Path) -> Option<FsUsage>) -> HostSampler {
        self.fs_usage = f;
        self
    }

    /// Samples the host as of `now_ms` (Unix ms, also the events' time) and
    /// appends the events to `out`.
    ///
    /// Rates are computed over the time between this call's `now_ms` and the
    /// previous one's, so pass the real sampling time; a clock that stood
    /// still or stepped back skips the rates for one tick.
    ///
    /// # Errors
    ///
    /// [`HostError`] lists the sources that could not be read or parsed. The
    /// heartbeat and every metric from the other sources are in `out` anyway.
    pub fn sample(&mut self, now_ms: i64, out: &mut Vec<Event>) -> Result<(), HostError> {
        let HostSampler {
            paths,
            service,
            host,
            fs_usage,
            prev,
            health,
            buf,
        } = self;
        prev.generation = prev.generation.wrapping_add(1);
        let mut emit = Emit {
            out,
            ts_ms: now_ms,
            service,
            host,
        };
        emit.heartbeat();

        let mut problems = Vec::new();
        let mut check = |source: Source, result: Result<(), SourceError>| {
            health.record(source, result, &mut problems);
        };
        check(Source::Stat, sample_stat(&paths.stat, buf, prev, &mut emit));
        check(
            Source::Loadavg,
            sample_loadavg(&paths.loadavg, buf, &mut emit),
        );
        check(
            Source::Meminfo,
            sample_meminfo(&paths.meminfo, buf, &mut emit),
        );
        let mut capped = [false; 3];
        check(
            Source::Mounts,
            sample_mounts(paths, *fs_usage, buf, &mut emit, &mut capped[0]),
        );
        check(
            Source::Diskstats,
            sample_diskstats(
                &paths.diskstats,
                buf,
                prev,
                now_ms,
                &mut emit,
                &mut capped[1],
            ),
        );
        check(
            Source::NetDev,
            sample_net_dev(&paths.net_dev, buf, prev, now_ms, &mut emit, &mut capped[2]),
        );
        check(Source::Processes, sample_processes(&paths.root, &mut emit));
        health.note_caps(capped);

        if problems.is_empty() {
            Ok(())
        } else {
            Err(HostError { problems })
        }
    }
}

/// Samples `sampler` every `interval` and sends each sample's events to `tx`,
/// until the receiver is dropped.
///
/// The procfs reads are blocking file I/O (and statvfs can be slow on a busy
/// disk), so each sample runs on the blocking pool rather than stalling an
/// async worker. A tick missed because the previous sample ran long is
/// delayed, not bunched up. A zero interval is taken as one millisecond.
pub async fn run(mut sampler: HostSampler, interval: Duration, tx: mpsc::Sender<Vec<Event>>) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let joined = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let result = sampler.sample(now_ms, &mut out);
            (sampler, out, result)
        })
        .await;
        let (back, out, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                // The parsers are built not to panic; if one does anyway the
                // sampler is gone with it and host metrics stop, which the
                // missing heartbeat will show.
                warn!(error = %e, "host sampler stopped");
                return;
            }
        };
        sampler = back;
        if let Err(e) = result {
            debug!(error = %e, "host sample incomplete");
        }
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

impl Health {
    fn record(
        &mut self,
        source: Source,
        result: Result<(), SourceError>,
        problems: &mut Vec<SourceError>,
    ) {
        let was_failing = &mut self.failing[source as usize];
        match result {
            Ok(()) => {
                if *was_failing {
                    info!(source = ?source, "host metric source recovered");
                }
                *was_failing = false;
            }
            Err(e) => {
                if !*was_failing {
                    warn!(source = ?source, error = %e, "host metric source unavailable");
                }
                *was_failing = true;
                problems.push(e);
            }
        }
    }

    fn note_caps(&mut self, capped: [bool; 3]) {
        const FAMILIES: [&str; 3] = ["mounts", "disks", "interfaces"];
        for ((now, logged), family) in capped.into_iter().zip(&mut self.capped).zip(FAMILIES) {
            if now && !*logged {
                warn!(
                    family,
                    limit = MAX_SERIES_PER_FAMILY,
                    "too many host devices, the rest are not reported"
                );
            }
            *logged = now;
        }
    }
}

/// Builds events with the sampler's labels and drops values that are not
/// finite, so a bad division can never reach the collector.
struct Emit<'a> {
    out: &'a mut Vec<Event>,
    ts_ms: i64,
    service: &'a str,
    host: &'a str,
}

impl Emit<'_> {
    /// [`HEARTBEAT`], with the agent's [`VERSION`].
    fn heartbeat(&mut self) {
        self.gauge(HEARTBEAT, 1.0);
        if let Some(beat) = self.out.last_mut() {
            beat.dims.insert(VERSION_DIM.to_owned(), VERSION.to_owned());
        }
    }

    fn gauge(&mut self, name: impl Into<String>, value: f64) {
        if !value.is_finite() {
            return;
        }
        let mut event = Event::new(self.ts_ms, Layer::Infra, self.service, self.host, name);
        event.value = Some(value);
        self.out.push(event);
    }

    /// A share of something, clamped: kernel counters sampled a few
    /// microseconds apart can overshoot 100 % by a hair.
    fn percent(&mut self, name: impl Into<String>, value: f64) {
        self.gauge(name, value.clamp(0.0, 100.0));
    }
}

/// Reads `path` into `buf`, replacing its content.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), SourceError> {
    buf.clear();
    File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(buf))
        .map(drop)
        .map_err(|source| SourceError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Reads `path` as text. procfs is ASCII; anything else is replaced, not
/// rejected, so one odd byte cannot cost a whole source.
fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<Cow<'b, str>, SourceError> {
    read_into(path, buf)?;
    Ok(String::from_utf8_lossy(buf))
}

fn malformed(path: &Path, reason: &'static str) -> SourceError {
    SourceError::Malformed {
        path: path.to_owned(),
        reason,
    }
}

fn sample_stat(
    path: &Path,
    buf: &mut Vec<u8>,
    prev: &mut Previous,
    emit: &mut Emit<'_>,
) -> Result<(), SourceError> {
    let text = read_text(path, buf)?;
    let info = procfs::parse_stat(&text);
    if let Some(n) = info.procs_running {
        emit.gauge("procs.running", n as f64);
    }
    if let Some(n) = info.procs_blocked {
        emit.gauge("procs.blocked", n as f64);
    }
    let Some(cpu) = info.cpu else {
        prev.cpu = None;
        return Err(malformed(path, "no well-formed aggregate cpu line"));
    };
    if let Some(d) = prev.cpu.and_then(|p| cpu.delta(&p)) {
        let total = d.total() as f64;
        if total > 0.0 {
            let idle = d.idle.saturating_add(d.iowait) as f64;
            emit.percent("cpu.busy", (1.0 - idle / total) * 100.0);
            emit.percent("cpu.iowait", d.iowait as f64 / total * 100.0);
            emit.percent("cpu.steal", d.steal as f64 / total * 100.0);
        }
    }
    prev.cpu = Some(cpu);
    Ok(())
}

fn sample_loadavg(path: &Path, buf: &mut Vec<u8>, emit: &mut Emit<'_>) -> Result<(), SourceError> {
    let text = read_text(path, buf)?;
    let [l1, l5, l15] = procfs::parse_loadavg(&text)
        .ok_or_else(|| malformed(path, "expected three load averages"))?;
    emit.gauge("load.1", l1);
    emit.gauge("load.5", l5);
    emit.gauge("load.15", l15);
    Ok(())
}

fn sample_meminfo(path: &Path, buf: &mut Vec<u8>, emit: &mut Emit<'_>) -> Result<(), SourceError> {
    let text = read_text(path, buf)?;
    let info = procfs::parse_meminfo(&text);
    // Swap first: it needs nothing from the memory lines, so it survives them
    // being broken.
    if let (Some(total), Some(free)) = (info.swap_total, info.swap_free) {
        let used = total.saturating_sub(free);
        // A host without swap reports 0 % rather than nothing, so a rule
        // on swap.used never sees a missing series as "no data".
        let pct = if total == 0 {
            0.0
        } else {
            used as f64 / total as f64 * 100.0
        };
        emit.percent("swap.used", pct);
        emit.gauge("swap.used_bytes", used as f64);
    }
    let total = info
        .total
        .filter(|t| *t > 0)
        .ok_or_else(|| malformed(path, "no MemTotal"))?;
    let available = info
        .available()
        .ok_or_else(|| malformed(path, "neither MemAvailable nor MemFree"))?;
    let used = total.saturating_sub(available);
    emit.percent("mem.used", used as f64 / total as f64 * 100.0);
    emit.gauge("mem.used_bytes", used as f64);
    Ok(())
}

fn sample_mounts(
    paths: &Paths,
    fs_usage: fn(&Path) -> Option<FsUsage>,
    buf: &mut Vec<u8>,
    emit: &mut Emit<'_>,
    capped: &mut bool,
) -> Result<(), SourceError> {
    // self/mounts is this process's mount namespace; the top-level `mounts`
    // link is the fallback for a proc root that lacks `self` (an old kernel,
    // or a fixture).
    if read_into(&paths.self_mounts, buf).is_err() {
        read_into(&paths.mounts, buf)?;
    }
    let text = String::from_utf8_lossy(buf);
    let mut seen_points: Vec<Cow<'_, str>> = Vec::new();
    let mut seen_devices: Vec<&str> = Vec::new();
    for mount in text.lines().filter_map(procfs::parse_mount_line) {
        if !procfs::is_real_filesystem(&mount) {
            continue;
        }
        // Bind mounts show one file system at several places, and a mount
        // point may be mounted over; either would repeat one disk's figures.
        let is_block = mount.device.starts_with("/dev/");
        if seen_points.contains(&mount.mount_point)
            || (is_block && seen_devices.contains(&mount.device))
        {
            continue;
        }
        if seen_points.len() >= MAX_SERIES_PER_FAMILY {
            *capped = true;
            break;
        }
        if is_block {
            seen_devices.push(mount.device);
        }
        if let Some(usage) = fs_usage(Path::new(&*mount.mount_point)) {
            let point = &mount.mount_point;
            if let Some(pct) = usage.used_percent() {
                emit.percent(format!("disk.{point}.used"), pct);
            }
            emit.gauge(format!("disk.{point}.free_bytes"), usage.available as f64);
        }
        seen_points.push(mount.mount_point);
    }
    Ok(())
}

/// Records `counters` for `name` and returns the previous ones with the
/// milliseconds since, when there are previous ones and time moved forward.
fn track<C: Copy>(
    map: &mut HashMap<String, Tracked<C>>,
    name: &str,
    counters: C,
    now_ms: i64,
    generation: u64,
) -> Option<(C, f64)> {
    let fresh = Tracked {
        counters,
        at_ms: now_ms,
        generation,
    };
    // get_mut first: the steady state finds the device and allocates no key.
    let Some(slot) = map.get_mut(name) else {
        map.insert(name.to_owned(), fresh);
        return None;
    };
    let old = std::mem::replace(slot, fresh);
    let elapsed_ms = now_ms.checked_sub(old.at_ms).filter(|d| *d > 0)?;
    Some((old.counters, elapsed_ms as f64))
}

fn sample_diskstats(
    path: &Path,
    buf: &mut Vec<u8>,
    prev: &mut Previous,
    now_ms: i64,
    emit: &mut Emit<'_>,
    capped: &mut bool,
) -> Result<(), SourceError> {
    let text = read_text(path, buf)?;
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(procfs::parse_diskstats_line)
        .map(|(name, _)| name)
        .collect();
    if names.is_empty() && !text.trim().is_empty() {
        return Err(malformed(path, "no well-formed device line"));
    }
    names.sort_unstable();
    let generation = prev.generation;
    let mut kept = 0;
    for (name, now) in text.lines().filter_map(procfs::parse_diskstats_line) {
        if !procfs::is_whole_disk(name, &names) {
            continue;
        }
        if kept >= MAX_SERIES_PER_FAMILY {
            *capped = true;
            break;
        }
        kept += 1;
        let Some((before, elapsed_ms)) = track(&mut prev.disks, name, now, now_ms, generation)
        else {
            continue;
        };
        if let Some(busy_ms) = now.io_ms.checked_sub(before.io_ms) {
            emit.percent(
                format!("disk.{name}.io_util"),
                busy_ms as f64 / elapsed_ms * 100.0,
            );
        }
        let deltas = (|| {
            let ios = (now.reads.checked_sub(before.reads)?)
                .saturating_add(now.writes.checked_sub(before.writes)?);
            let ms = (now.read_ms.checked_sub(before.read_ms)?)
                .saturating_add(now.write_ms.checked_sub(before.write_ms)?);
            Some((ios, ms))
        })();
        if let Some((ios, ms)) = deltas {
            // An idle disk waits for nothing: 0, not a gap in the series.
            let await_ms = if ios == 0 {
                0.0
            } else {
                ms as f64 / ios as f64
            };
            emit.gauge(format!("disk.{name}.await_ms"), await_ms);
        }
    }
    prev.disks.retain(|_, t| t.generation == generation);
    Ok(())
}

fn sample_net_dev(
    path: &Path,
    buf: &mut Vec<u8>,
    prev: &mut Previous,
    now_ms: i64,
    emit: &mut Emit<'_>,
    capped: &mut bool,
) -> Result<(), SourceError> {
    let text = read_text(path, buf)?;
    let generation = prev.generation;
    let mut parsed = 0;
    let mut kept = 0;
    for (name, now) in text.lines().filter_map(procfs::parse_net_dev_line) {
        parsed += 1;
        // Loopback traffic is the host talking to itself; veth pairs are one
        // per container and mirror traffic already counted on the bridge.
        if name == "lo" || name.starts_with("veth") {
            continue;
        }
        if kept >= MAX_SERIES_PER_FAMILY {
            *capped = true;
            break;
        }
        kept += 1;
        let Some((before, elapsed_ms)) = track(&mut prev.nets, name, now, now_ms, generation)
        else {
            continue;
        };
        let per_s = |now: u64, before: u64| {
            now.checked_sub(before)
                .map(|d| d as f64 * 1000.0 / elapsed_ms)
        };
        if let Some(r) = per_s(now.rx_bytes, before.rx_bytes) {
            emit.gauge(format!("net.{name}.rx_bytes"), r);
        }
        if let Some(r) = per_s(now.tx_bytes, before.tx_bytes) {
            emit.gauge(format!("net.{name}.tx_bytes"), r);
        }
        if let Some(r) = per_s(now.errors, before.errors) {
            emit.gauge(format!("net.{name}.errors"), r);
        }
    }
    prev.nets.retain(|_, t| t.generation == generation);
    if parsed == 0 && text.lines().count() > 2 {
        return Err(malformed(path, "no well-formed interface line"));
    }
    Ok(())
}

fn sample_processes(root: &Path, emit: &mut Emit<'_>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(root).map_err(|source| SourceError::Read {
        path: root.to_owned(),
        source,
    })?;
    // Entries can vanish mid-listing (a process exits); those errors are
    // skipped rather than failing the count.
    let count = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let bytes = name.as_encoded_bytes();
            !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
        })
        .count();
    emit.gauge("procs.count", count as f64);
    Ok(())
}
