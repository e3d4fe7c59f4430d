//! Probes across real processes: `panorama-agent` runs a TCP probe every
//! 100 ms against a local listener and ships its results to a real
//! `panorama collector`, whose disk flushes are slowed (80 ms after every
//! fsync, the `LD_PRELOAD` shim) so that a batch is nearly always waiting
//! for its acknowledgement. The agent is killed with -9 again and again and
//! restarted; a kill that lands while a batch is in flight leaves it staged
//! (`probes/probes.pending`) for the next life to resend.
//!
//! The exact count is the agent's own sequence: every probe result it
//! staged advanced `probes/probes.seq` by one (a TCP probe's run is one
//! event), and a staged result is never dropped. A result still in the
//! agent's queue when it is killed was never staged, so it is lost the way
//! a sample not yet taken is; the listener's accepted connections say how
//! many runs there were, staged or not. The collector must count exactly
//! the staged results: no resend counted twice, no staged batch lost.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panorama_tests::fault::Env;
use panorama_tests::{Proc, binary, collector_args, free_port, query_encode, wait_healthy};
use rand::Rng;

const VIEWER: &str = "viewer-token-probe";
const SERIES: &str = "tcp@gate connect";
const HOST: &str = "probe-host";
const KILLS: u32 = 10;

/// `probes.seq`'s `next`: results staged and acknowledged so far.
fn sequence(data: &Path) -> u64 {
    match fs::read(data.join("probes/probes.seq")) {
        Ok(b) => {
            serde_json::from_slice::<serde_json::Value>(&b).expect("probes.seq is JSON")["next"]
                .as_u64()
                .expect("probes.seq has `next`")
        }
        Err(_) => 0,
    }
}

fn pending(data: &Path) -> bool {
    data.join("probes/probes.pending").exists()
}

/// The collector's count of the probe's series over `[from, to)`.
async fn counted(base: &str, from: i64, to: i64) -> Option<u64> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/series?layer=component&service={HOST}&name={}&from={from}&to={to}",
            query_encode(SERIES)
        ))
        .bearer_auth(VIEWER)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["points"]
        .as_array()?
        .iter()
        .map(|p| p["count"].as_u64())
        .sum()
}

fn agent_config(data: &Path, base: &str, target: u16, interval: &str) -> String {
    format!(
        "agent_id = \"probe-agent\"\nhost = \"{HOST}\"\ndata_dir = \"{}\"\n\
         [collector]\nurls = [\"{base}\"]\ntoken = \"tok\"\n\
         [host_metrics]\nenabled = false\n\
         [[probe]]\nname = \"gate\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:{target}\"\n\
         interval = \"{interval}\"\ntimeout = \"80ms\"\njitter = \"10ms\"\n",
        data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_while_probes_ship_counts_each_staged_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let from = chrono::Utc::now().timestamp_millis() / 60_000 * 60_000 - 60_000;

    // The probe's target: accepts and closes every connection, counting them.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            for conn in target.incoming() {
                if conn.is_ok() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let collector_log = dir.path().join("collector.log");
    let collector_args = collector_args(port, &dir.path().join("cdata"), "tok", VIEWER);
    let slow_disk = Env {
        fsync_delay_us: 80_000,
        ..Env::default()
    };
    let _collector = Proc::start_with_env(
        &binary("panorama"),
        &collector_args,
        &collector_log,
        &slow_disk.vars(),
    );
    wait_healthy(
        &format!("{base}/health"),
        Duration::from_secs(20),
        &collector_log,
    )
    .await;

    let data = dir.path().join("adata");
    let config = dir.path().join("agent.toml");
    fs::write(&config, agent_config(&data, &base, target_port, "100ms")).unwrap();
    let agent_bin = binary("panorama-agent");
    let agent_args = vec!["--config".to_owned(), config.display().to_string()];
    let agent_log = dir.path().join("agent.log");
    let mut agent = Proc::start(&agent_bin, &agent_args, &agent_log);

    // Wait for the first acknowledged batch, then kill at random moments.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sequence(&data) == 0 {
        assert!(
            Instant::now() < deadline,
            "no probe batch acknowledged; agent log:\n{}",
            fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut in_flight = 0;
    for _ in 0..KILLS {
        let pause = rand::rng().random_range(400..1200u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        agent.kill9();
        if pending(&data) {
            in_flight += 1;
        }
        agent = Proc::start(&agent_bin, &agent_args, &agent_log);
    }

    // A last life that falls quiet: the same probe once an hour, so after
    // it resent what the last kill left staged and shipped its one run,
    // the sequence is final.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.kill9();
    fs::write(&config, agent_config(&data, &base, target_port, "1h")).unwrap();
    agent = Proc::start(&agent_bin, &agent_args, &agent_log);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (u64::MAX, Instant::now());
    let staged = loop {
        let seq = sequence(&data);
        if seq != last.0 || pending(&data) {
            last = (seq, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break seq;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's probe outbox never settled; agent log tail:\n{}",
            tail(&agent_log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        agent.terminate(Duration::from_secs(20)),
        "agent exits cleanly on SIGTERM"
    );
    assert!(!pending(&data), "nothing left in flight");

    let to = chrono::Utc::now().timestamp_millis() / 60_000 * 60_000 + 2 * 60_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = counted(&base, from, to).await;
    while got != Some(staged) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        got = counted(&base, from, to).await;
    }
    let runs = accepted.load(Ordering::SeqCst);
    println!(
        "{KILLS} kills, {in_flight} with a batch in flight; {runs} runs, {staged} staged, collector counted {got:?}"
    );
    assert_eq!(
        got,
        Some(staged),
        "the collector counts each staged probe result once; agent log tail:\n{}",
        tail(&agent_log)
    );
    assert!(
        staged <= runs,
        "no more results than runs ({staged} staged, {runs} connections)"
    );
    assert!(staged > 50, "probes ran throughout: {staged}");
    assert!(
        in_flight >= 1,
        "at least one kill landed with a batch in flight (slow collector disk)"
    );
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    s[s.len().saturating_sub(3000)..].to_owned()
}
