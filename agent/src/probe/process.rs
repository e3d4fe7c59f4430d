//! `process`: is a local process running, and what does it use. Found by
//! name (every process whose `comm`, or whose command line's first word's
//! file name, is the name) or by a pid file. Figures: `processes` (how
//! many matched), `rss_bytes` and `cpu_percent` (of one core, summed over
//! the matches, since the previous run).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Report;
use super::config::ProcessMatch;

/// Page size for `statm`: 4 KiB on every architecture the agent ships for.
const PAGE: u64 = 4096;
/// `USER_HZ`, the unit of `stat`'s CPU times: 100 on Linux everywhere.
const TICKS_PER_SEC: f64 = 100.0;

/// A process probe and what it saw last time (for CPU).
#[derive(Debug)]
pub struct ProcessProbe {
    matcher: ProcessMatch,
    proc_root: PathBuf,
    last: Option<(Instant, u64)>,
}

impl ProcessProbe {
    /// A probe reading `proc_root` (`/proc`).
    pub fn new(matcher: ProcessMatch, proc_root: PathBuf) -> ProcessProbe {
        ProcessProbe {
            matcher,
            proc_root,
            last: None,
        }
    }

    /// One look.
    pub fn run(&mut self) -> Report {
        let started = Instant::now();
        let pids = match &self.matcher {
            ProcessMatch::Name(name) => by_name(&self.proc_root, name),
            ProcessMatch::PidFile(file) => match std::fs::read_to_string(file) {
                Ok(text) => text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|pid| self.proc_root.join(pid.to_string()).join("stat").exists())
                    .into_iter()
                    .collect(),
                Err(_) => Vec::new(),
            },
        };
        let mut rss = 0u64;
        let mut ticks = 0u64;
        let mut alive = 0usize;
        for pid in &pids {
            let dir = self.proc_root.join(pid.to_string());
            let Some(t) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| cpu_ticks(&s))
            else {
                continue;
            };
            alive += 1;
            ticks = ticks.saturating_add(t);
            if let Some(pages) = std::fs::read_to_string(dir.join("statm"))
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            {
                rss = rss.saturating_add(pages * PAGE);
            }
        }
        let now = Instant::now();
        let mut figures = vec![("processes", alive as f64)];
        if alive == 0 {
            self.last = None;
            return Report {
                operation: "alive".into(),
                result: Err("not-running".into()),
                latency: started.elapsed(),
                figures,
            };
        }
        figures.push(("rss_bytes", rss as f64));
        if let Some((then, before)) = self.last {
            let secs = now.duration_since(then).as_secs_f64();
            if secs > 0.0 && ticks >= before {
                figures.push((
                    "cpu_percent",
                    (ticks - before) as f64 / TICKS_PER_SEC / secs * 100.0,
                ));
            }
        }
        self.last = Some((now, ticks));
        Report {
            operation: "alive".into(),
            result: Ok(()),
            latency: started.elapsed(),
            figures,
        }
    }
}

fn by_name(proc_root: &Path, name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let matches = comm.trim_end() == name
            || std::fs::read(path.join("cmdline")).ok().is_some_and(|c| {
                let argv0 = c.split(|&b| b == 0).next().unwrap_or_default();
                let argv0 = String::from_utf8_lossy(argv0);
                let first = argv0.split_whitespace().next().unwrap_or_default();
                Path::new(first).file_name().is_some_and(|f| f == name)
            });
        if matches {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// utime + stime from `/proc/PID/stat`; the command name in parentheses
/// may hold spaces and parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_survive_odd_command_names() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_is_found_by_pid_file_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("me.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        let mut probe = ProcessProbe::new(ProcessMatch::PidFile(pid_file.clone()), "/proc".into());
        let first = probe.run();
        assert_eq!(first.result, Ok(()));
        assert!(
            first
                .figures
                .iter()
                .any(|(f, v)| *f == "rss_bytes" && *v > 1e6),
            "{first:?}"
        );
        // Burn a little CPU so the second run has something to report.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let second = probe.run();
        assert!(
            second.figures.iter().any(|(f, _)| *f == "cpu_percent"),
            "{second:?}"
        );
        std::fs::write(&pid_file, "999999999\n").unwrap();
        assert_eq!(probe.run().result, Err("not-running".into()));
        let mut by_name = ProcessProbe::new(
            ProcessMatch::Name("no-such-process-xyz".into()),
            "/proc".into(),
        );
        assert_eq!(by_name.run().result, Err("not-running".into()));
    }
}
