//! Fault injection for process-level drills: slow disk flushes and a
//! shifted clock, both for the project's own processes only (through
//! `LD_PRELOAD`), so Elasticsearch and the test itself run as usual.
//!
//! - [`slow_fsync_shim`] builds `tests/shim/slow_fsync.c` (with the C
//!   compiler the bundled SQLite already needs) into a preloadable library
//!   that sleeps after every `fdatasync`/`fsync`.
//! - [`faketime_lib`] is Debian's libfaketime (`scripts/test.sh` installs
//!   it), used with a whole-minute offset so minute boundaries stay where
//!   the test's own (real) clock has them.
//! - [`Env`] puts either or both into a process's environment.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace;

/// The slow-fsync shim, compiled once per test process into the target dir.
pub fn slow_fsync_shim() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace().join("target"), PathBuf::from);
            let dir = target.join("test-shims");
            std::fs::create_dir_all(&dir).expect("creating target/test-shims");
            let out = dir.join(format!("slow_fsync-{}.so", std::process::id()));
            let status = Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&out)
                .arg(workspace().join("tests/shim/slow_fsync.c"))
                .arg("-ldl")
                .status()
                .expect("running cc (install build-essential)");
            assert!(status.success(), "compiling tests/shim/slow_fsync.c failed");
            out
        })
        .clone()
}

/// Debian's libfaketime; panics naming the fix when it is missing.
pub fn faketime_lib() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is missing: run scripts/test.sh, or apt-get install faketime")
        })
}

/// Seconds (a whole number of minutes) to add to the real clock so that it
/// reads `before_secs` (rounded up to a minute) before the next 00:00 UTC.
pub fn offset_to_midnight(before_secs: i64) -> i64 {
    let now = chrono::Utc::now().timestamp();
    let minute = now / 60 * 60;
    let before = (before_secs + 59) / 60 * 60;
    let midnight = (now / 86_400 + 1) * 86_400;
    let mut offset = midnight - before - minute;
    if offset < 0 {
        offset += 86_400;
    }
    offset
}

/// Faults to put into one process's environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Sleep this many microseconds after every disk flush.
    pub fsync_delay_us: u64,
    /// Shift the process's clock by this many seconds.
    pub clock_offset_secs: i64,
}

impl Env {
    /// The variables for [`crate::Proc::start_with_env`].
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut preload = Vec::new();
        let mut vars = Vec::new();
        if self.fsync_delay_us > 0 {
            preload.push(slow_fsync_shim().display().to_string());
            vars.push((
                "PANORAMA_TEST_FSYNC_DELAY_US".to_owned(),
                self.fsync_delay_us.to_string(),
            ));
        }
        if self.clock_offset_secs != 0 {
            preload.push(faketime_lib().display().to_string());
            vars.push((
                "FAKETIME".to_owned(),
                format!("{:+}", self.clock_offset_secs),
            ));
            // File times stay real: the agent compares them with each other only.
            vars.push(("NO_FAKE_STAT".to_owned(), "1".to_owned()));
            vars.push(("FAKETIME_DONT_RESET".to_owned(), "1".to_owned()));
        }
        if !preload.is_empty() {
            vars.push(("LD_PRELOAD".to_owned(), preload.join(" ")));
        }
        vars
    }
}

/// A process restarted when it dies, as systemd's `Restart=on-failure`
/// would, and killed on request.
pub struct Supervised {
    bin: PathBuf,
    args: Vec<String>,
    /// Faults in the environment of the next start.
    pub env: std::sync::Mutex<Vec<(String, String)>>,
    log: PathBuf,
    proc: std::sync::Mutex<Option<crate::Proc>>,
    /// kill -9s so far.
    pub kills: std::sync::atomic::AtomicU32,
    /// Restarts by [`Supervised::supervise`] so far.
    pub restarts: std::sync::atomic::AtomicU32,
}

impl Supervised {
    /// Not started yet; see [`Supervised::start`].
    pub fn new(bin: PathBuf, args: Vec<String>, log: PathBuf, env: Vec<(String, String)>) -> Self {
        Supervised {
            bin,
            args,
            env: std::sync::Mutex::new(env),
            log,
            proc: std::sync::Mutex::new(None),
            kills: Default::default(),
            restarts: Default::default(),
        }
    }

    fn spawn(&self) -> crate::Proc {
        let env = self.env.lock().unwrap().clone();
        crate::Proc::start_with_env(&self.bin, &self.args, &self.log, &env)
    }

    /// Starts it (again, if it runs: the old one is killed).
    pub fn start(&self) {
        *self.proc.lock().unwrap() = Some(self.spawn());
    }

    /// kill -9.
    pub fn kill9(&self) {
        if let Some(p) = self.proc.lock().unwrap().as_mut() {
            p.kill9();
            self.kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// SIGTERM, waiting up to `deadline` for it to exit; true if it exited 0.
    pub fn terminate(&self, deadline: std::time::Duration) -> bool {
        self.proc
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|p| p.terminate(deadline))
    }

    /// Restarts it if it is not running; true if it did.
    pub fn supervise(&self) -> bool {
        let mut p = self.proc.lock().unwrap();
        if p.as_mut().is_none_or(crate::Proc::exited) {
            *p = Some(self.spawn());
            self.restarts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return true;
        }
        false
    }
}
