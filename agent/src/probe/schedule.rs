//! Running probes: one task per probe and one that ships their results.
//!
//! A probe's task runs it, waits, and runs it again: runs of one probe
//! never overlap because there is only ever one, and each is cut off at
//! the probe's timeout (checked below the interval at start), so a hung
//! target costs one timeout per run and nothing more. The wait is the
//! interval from the previous start plus a random part of the jitter, so
//! the probes of many agents spread out instead of hitting a target in
//! step.
//!
//! Results go over a bounded channel to the shipping task, which stages
//! them in the [`Outbox`] and ships them on the same path, in the same
//! batch encoding, as log events. While no collector answers, results wait
//! in the channel; when it is full a result is dropped and counted
//! (`dropped`), and the probe goes on probing: a probe's own history is
//! worth less than knowing what the target does now.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use panorama_model::Event;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::config::{ProbeConfig, ProbeKind};
use super::http::HttpProbe;
use super::outbox::Outbox;
use super::process::ProcessProbe;
use super::{BuildError, Report, TIMEOUT};
use crate::ship::{Delivery, Shipper};

/// Results waiting for the shipper, in runs (each a few events).
const QUEUE_RUNS: usize = 4096;
/// Most events in one probe batch.
const MAX_BATCH_EVENTS: usize = 5000;

/// A probe, built: clients made, files checked.
pub struct Runner {
    cfg: ProbeConfig,
    how: How,
}

enum How {
    Http(HttpProbe),
    Tcp(String),
    Dns(String, Option<std::net::SocketAddr>),
    Redis(String, Option<String>),
    Mysql(String, String, Option<String>),
    Process(Option<ProcessProbe>),
}

impl Runner {
    /// Builds a probe from its checked config.
    ///
    /// # Errors
    /// [`BuildError`]: an HTTP probe's `ca_file` that cannot be read or
    /// does not hold certificates.
    pub fn new(cfg: ProbeConfig) -> Result<Runner, BuildError> {
        let how = match &cfg.kind {
            ProbeKind::Http(spec) => How::Http(HttpProbe::new(spec.clone(), cfg.timeout)?),
            ProbeKind::Tcp { target } => How::Tcp(target.clone()),
            ProbeKind::Dns { name, server } => How::Dns(name.clone(), *server),
            ProbeKind::Redis {
                target,
                password_env,
            } => How::Redis(target.clone(), password_env.clone()),
            ProbeKind::Mysql {
                target,
                user,
                password_env,
            } => How::Mysql(target.clone(), user.clone(), password_env.clone()),
            ProbeKind::Process(m) => How::Process(Some(ProcessProbe::new(
                m.clone(),
                PathBuf::from(crate::host::DEFAULT_PROC_ROOT),
            ))),
        };
        Ok(Runner { cfg, how })
    }

    /// The probe's config.
    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    fn operation(&self) -> String {
        match &self.how {
            How::Http(h) => h.operation().to_owned(),
            How::Tcp(_) => "connect".into(),
            How::Dns(..) => "resolve".into(),
            How::Redis(..) => "ping".into(),
            How::Mysql(..) => "select1".into(),
            How::Process(_) => "alive".into(),
        }
    }

    /// One run, cut off at the timeout.
    pub async fn run_once(&mut self) -> Report {
        let timeout = self.cfg.timeout;
        let operation = self.operation();
        let now_s = chrono::Utc::now().timestamp();
        let run = async {
            match &mut self.how {
                How::Http(h) => h.run(now_s).await,
                How::Tcp(t) => super::tcp::run(t).await,
                How::Dns(name, server) => super::dns::run(name, *server).await,
                How::Redis(t, pw) => super::redis::run(t, pw.as_deref()).await,
                How::Mysql(t, user, pw) => super::mysql::run(t, user, pw.as_deref()).await,
                How::Process(slot) => {
                    // Reading /proc for a name scans every process: off the
                    // async threads.
                    let Some(mut p) = slot.take() else {
                        return Report::failed("alive", "busy", Duration::ZERO);
                    };
                    match tokio::task::spawn_blocking(move || {
                        let r = p.run();
                        (p, r)
                    })
                    .await
                    {
                        Ok((p, r)) => {
                            *slot = Some(p);
                            r
                        }
                        Err(_) => Report::failed("alive", "io", Duration::ZERO),
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(report) => report,
            Err(_) => Report::failed(operation, TIMEOUT, timeout),
        }
    }
}

/// Runs `runner` every interval until `stop`, sending each run's events.
pub async fn probe_task(
    mut runner: Runner,
    host: String,
    results: mpsc::Sender<Vec<Event>>,
    dropped: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let jitter = runner.cfg.jitter;
    let interval = runner.cfg.interval;
    let spread = |rng: &mut rand::rngs::ThreadRng| {
        if jitter.is_zero() {
            Duration::ZERO
        } else {
            rng.random_range(Duration::ZERO..jitter)
        }
    };
    let mut next = Instant::now() + spread(&mut rand::rng());
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let ts_ms = chrono::Utc::now().timestamp_millis();
        let report = tokio::select! {
            r = runner.run_once() => r,
            _ = stop.changed() => return,
        };
        if let Err(code) = &report.result {
            tracing::debug!(code = %code, "probe failed");
        }
        let events = report.events(&runner.cfg, &host, ts_ms);
        if results.try_send(events).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        next = (started + interval + spread(&mut rand::rng())).max(Instant::now());
    }
}

/// Starts every probe and the task shipping their results; returns when
/// `stop` turns true (the batch in flight stays staged for the next start).
///
/// # Errors
/// The outbox in `dir` cannot be opened or written, or a shipper cannot
/// be built.
pub async fn run(
    agent_id: String,
    host: String,
    runners: Vec<Runner>,
    dir: PathBuf,
    shipper: Shipper,
    dropped: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut outbox = Outbox::open(&dir)?;
    let (tx, mut rx) = mpsc::channel(QUEUE_RUNS);
    let mut tasks = tokio::task::JoinSet::new();
    for runner in runners {
        let span = tracing::info_span!("probe", probe = %runner.cfg.name);
        tasks.spawn(
            probe_task(
                runner,
                host.clone(),
                tx.clone(),
                dropped.clone(),
                stop.clone(),
            )
            .instrument(span),
        );
    }
    drop(tx);
    let mut stop = stop;
    loop {
        if outbox.pending().is_none() {
            let mut events = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => break },
                _ = stop.changed() => break,
            };
            while events.len() < MAX_BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(mut more) => events.append(&mut more),
                    Err(_) => break,
                }
            }
            outbox.stage(&agent_id, events)?;
        }
        let Some(batch) = outbox.pending() else {
            continue;
        };
        let delivery = tokio::select! {
            d = shipper.ship(batch) => d,
            _ = stop.changed() => break,
        };
        match delivery {
            Delivery::Acked => outbox.acked()?,
            Delivery::Overlap { counted } => {
                // The collector counted further than the sequence says (the
                // data dir was restored from an old copy): move the batch
                // past what it counted, so it is counted rather than lost.
                tracing::warn!(
                    counted,
                    next = outbox.next(),
                    "probe sequence behind the collector; moving on"
                );
                outbox.rebase(counted)?;
            }
        }
    }
    tasks.shutdown().await;
    Ok(())
}
