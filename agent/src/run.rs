//! The running agent: one task per source (tail → parse → ship → ack), one
//! for host metrics, one per probe plus the probes' shipper, and the
//! agent's own `/metrics`.
//!
//! A source's task parses each chunk into one batch carrying the chunk's
//! source id and byte range, ships it, and acknowledges the range to the
//! tailer only once a collector acknowledged the batch. Up to
//! `max_in_flight` batches of a source are on their way at once, each
//! chained to the one before it, so the collector counts them in order and
//! refuses the later ones when an earlier one fails; acknowledgements are
//! settled strictly in order (see `Flight`). So the checkpoint never runs
//! ahead of what a collector holds durably, and after any crash the tailer
//! resends from the last acknowledged offset, cut at the same places,
//! which the collector recognises.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use panorama_model::wire::binary::{Batch, BatchMeta};
use panorama_model::{Layer, agent};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::config::{AgentConfig, SourceConfig};
use crate::host::HostSampler;
use crate::parse::{Format, Pipeline};
use crate::ship::{Delivery, Encoded, ShipConfig, Shipper, Tried};
use crate::tail::{Chunk, Tailer};

pub use crate::parse::PARSE_ERROR_SERIES;

/// Per-source figures: the agent's half of end-to-end loss accounting.
#[derive(Debug, Default)]
pub struct SourceFigures {
    /// Lines read (handed out by the tailer).
    pub lines_read: AtomicU64,
    /// Bytes read.
    pub bytes_read: AtomicU64,
    /// Events parsed.
    pub events: AtomicU64,
    /// Lines that failed to parse.
    pub lines_failed: AtomicU64,
    /// Batches acknowledged.
    pub batches_acked: AtomicU64,
    /// Bytes acknowledged.
    pub bytes_acked: AtomicU64,
    /// Bytes given up (a collector counted past them after a lost checkpoint).
    pub bytes_given_up: AtomicU64,
    /// Event time of the newest acknowledged event, Unix ms, for lag in seconds.
    pub newest_acked_ms: AtomicU64,
}

/// Figures of every source, by source name.
#[derive(Debug, Default)]
pub struct AgentFigures {
    sources: Mutex<BTreeMap<String, Arc<SourceFigures>>>,
    /// Probe results dropped because shipping was behind for too long.
    pub probe_results_dropped: Arc<AtomicU64>,
}

impl AgentFigures {
    fn source(&self, name: &str) -> Arc<SourceFigures> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        type Field = (&'static str, &'static str, fn(&SourceFigures) -> &AtomicU64);
        let fields: [Field; 7] = [
            (
                "panorama_agent_lines_read_total",
                "Lines read from the source's files.",
                |f| &f.lines_read,
            ),
            (
                "panorama_agent_bytes_read_total",
                "Bytes read from the source's files.",
                |f| &f.bytes_read,
            ),
            ("panorama_agent_events_total", "Events parsed.", |f| {
                &f.events
            }),
            (
                "panorama_agent_lines_failed_total",
                "Lines that failed to parse.",
                |f| &f.lines_failed,
            ),
            (
                "panorama_agent_batches_acked_total",
                "Batches acknowledged by a collector.",
                |f| &f.batches_acked,
            ),
            (
                "panorama_agent_bytes_acked_total",
                "Bytes acknowledged by a collector.",
                |f| &f.bytes_acked,
            ),
            (
                "panorama_agent_bytes_given_up_total",
                "Bytes given up, never counted.",
                |f| &f.bytes_given_up,
            ),
        ];
        for (name, help, get) in fields {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (source, f) in &sources {
                out.push_str(&format!(
                    "{name}{{source=\"{source}\"}} {}\n",
                    get(f).load(Ordering::Relaxed)
                ));
            }
        }
        out.push_str("# HELP panorama_agent_lag_bytes Bytes read but not yet acknowledged.\n# TYPE panorama_agent_lag_bytes gauge\n");
        for (source, f) in &sources {
            let lag = f
                .bytes_read
                .load(Ordering::Relaxed)
                .saturating_sub(f.bytes_acked.load(Ordering::Relaxed));
            out.push_str(&format!(
                "panorama_agent_lag_bytes{{source=\"{source}\"}} {lag}\n"
            ));
        }
        out.push_str("# HELP panorama_agent_lag_seconds Age of the newest acknowledged event.\n# TYPE panorama_agent_lag_seconds gauge\n");
        let now = chrono::Utc::now().timestamp_millis() as u64;
        for (source, f) in &sources {
            let newest = f.newest_acked_ms.load(Ordering::Relaxed);
            let lag = if newest == 0 {
                0
            } else {
                now.saturating_sub(newest) / 1000
            };
            out.push_str(&format!(
                "panorama_agent_lag_seconds{{source=\"{source}\"}} {lag}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP panorama_agent_probe_results_dropped_total Probe runs whose results were dropped while shipping was behind.\n# TYPE panorama_agent_probe_results_dropped_total counter\npanorama_agent_probe_results_dropped_total {}\n",
            self.probe_results_dropped.load(Ordering::Relaxed)
        ));
        out
    }
}

/// Runs the agent until `stop` turns true, then checkpoints and returns.
///
/// # Errors
/// A source that cannot start (its checkpoint unreadable), or the metrics
/// address taken.
pub async fn run(
    cfg: AgentConfig,
    figures: Arc<AgentFigures>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for src in cfg.sources.clone() {
        let figs = figures.source(&src.tail.name);
        let (agent_id, host, ship, stop) = (
            cfg.agent_id.clone(),
            cfg.host.clone(),
            cfg.ship.clone(),
            stop.clone(),
        );
        let parse_threads = cfg.parse_threads;
        // The configured source's name on everything the task logs; its
        // events name the file they are about (`source` id and `path`),
        // which varies within the task.
        let span = tracing::info_span!("source", source = %src.tail.name);
        tasks.spawn(
            async move {
                let name = src.tail.name.clone();
                source_task(agent_id, host, src, ship, parse_threads, figs, stop)
                    .await
                    .map_err(|e| anyhow::anyhow!("source {name}: {e}"))
            }
            .instrument(span),
        );
    }
    if let Some((interval, service)) = cfg.host_metrics.clone() {
        let sampler = HostSampler::new(
            crate::host::DEFAULT_PROC_ROOT.into(),
            cfg.host.clone(),
            service.clone(),
        );
        let task = HostTask {
            agent_id: cfg.agent_id.clone(),
            host: cfg.host.clone(),
            service,
            interval,
            ship: cfg.ship.clone(),
            all: figures.clone(),
        };
        let stop = stop.clone();
        tasks.spawn(async move { task.run(sampler, stop).await });
    }
    if !cfg.probes.is_empty() {
        let runners = cfg
            .probes
            .iter()
            .map(|p| {
                crate::probe::schedule::Runner::new(p.clone())
                    .map_err(|e| anyhow::anyhow!("probe {}@{}: {e}", p.kind.word(), p.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shipper = Shipper::new(cfg.ship.clone())?;
        let dropped = figures.probe_results_dropped.clone();
        tasks.spawn(crate::probe::schedule::run(
            cfg.agent_id.clone(),
            cfg.host.clone(),
            runners,
            cfg.data_dir.join("probes"),
            shipper,
            dropped,
            stop.clone(),
        ));
    }
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let figs = figures.clone();
        let mut stop = stop.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let figs = figs.clone();
                async move { figs.render() }
            }),
        );
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "agent task failed");
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("agent task panicked: {e}"));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn source_task(
    agent_id: String,
    host: String,
    src: SourceConfig,
    ship: ShipConfig,
    parse_threads: usize,
    figs: Arc<SourceFigures>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tail_cfg = src.tail.clone();
    // Checkpoint before handing chunks out, so that a resend after kill -9
    // repeats exactly the ranges sent before and never straddles what a
    // collector counted.
    tail_cfg.checkpoint_interval = Duration::ZERO;
    let mut parsing = Parsing::new(agent_id, &host, &src, parse_threads, ship.zstd_level())?;
    let parse_threads = parsing.idle.len();
    // The catch-up read size is shared between the threads, so that the
    // lines and events being parsed at once (and the agent's memory) stay
    // as with one: more threads parse smaller chunks side by side.
    tail_cfg.max_read_chunk_bytes =
        (tail_cfg.max_read_chunk_bytes / parse_threads).max(tail_cfg.read_chunk_bytes);
    let mut tailer = Tailer::new(tail_cfg)?;
    let max_in_flight = ship.max_in_flight.max(1);
    let mut flight = Flight::new(Shipper::new(ship)?);
    // Chunks read and not yet being parsed, and batches parsed and not yet
    // sent, both in file order.
    let mut todo = std::collections::VecDeque::new();
    let mut ready = std::collections::VecDeque::new();
    loop {
        while flight.len() < max_in_flight
            && let Some(slot) = ready.pop_front()
        {
            flight.push(slot);
        }
        // Parsing runs ahead of shipping by at most one batch per thread.
        while parsing.idle()
            && flight.len() + ready.len() + parsing.running() < max_in_flight + parse_threads
            && let Some(chunk) = todo.pop_front()
        {
            parsing.start(chunk, &mut tailer, &figs);
        }
        let next = tokio::select! {
            c = tailer.next_chunks(), if todo.is_empty() && flight.len() + ready.len() < max_in_flight => Next::Chunks(c),
            p = parsing.next_done(), if parsing.running() > 0 => Next::Parsed(p),
            Some(r) = flight.tasks.join_next(), if !flight.tasks.is_empty() => Next::Shipped(r),
            _ = stop.changed() => Next::Stop,
        };
        match next {
            Next::Chunks(c) => todo.extend(c),
            Next::Parsed(p) => ready.push_back(parsing.done(p?, &mut tailer)),
            Next::Shipped(r) => flight.answered(r, &mut tailer, &figs)?,
            Next::Stop => break,
        }
    }
    // Whatever is in flight is not acknowledged: the checkpoint keeps its
    // chunk ends, and the restart resends the same ranges. Chunks still
    // being parsed finish on their threads and are dropped.
    flight.tasks.abort_all();
    tailer.checkpoint()?;
    Ok(())
}

enum Next {
    Chunks(Vec<Chunk>),
    Parsed(Result<Box<Parsed>, tokio::task::JoinError>),
    Shipped(Result<(u64, Tried), tokio::task::JoinError>),
    Stop,
}

/// One source's chunks being parsed and encoded, each on a blocking
/// thread of its own, up to one per parser; they are taken back in the
/// order they started, so batches still go out (and are acknowledged and
/// checkpointed) in file order.
///
/// Parsing a chunk is the agent's main cost, and it is independent of
/// the chunks around it except for the series cap, which the parsers
/// share ([`crate::parse::Pipeline::share_cap_of`]). A multi-line format
/// has one parser: a record cut by a read goes back to the tailer before
/// the next chunk may start.
struct Parsing {
    idle: Vec<SourceParser>,
    running: std::collections::VecDeque<tokio::task::JoinHandle<Box<Parsed>>>,
    zstd_level: Option<i32>,
    /// Tests hold the next parse back until told, so that a later chunk
    /// finishes first.
    #[cfg(test)]
    hold_next: Option<std::sync::mpsc::Receiver<()>>,
}

/// A chunk parsed: its parser and buffer to reuse, and its batch, encoded.
struct Parsed {
    parser: SourceParser,
    chunk: Chunk,
    slot: Slot,
}

impl Parsing {
    fn new(
        agent_id: String,
        host: &str,
        src: &SourceConfig,
        threads: usize,
        zstd_level: Option<i32>,
    ) -> Result<Parsing, crate::parse::SpecError> {
        let first = SourceParser::new(agent_id.clone(), host, src)?;
        let threads = if first.multi_line { 1 } else { threads.max(1) };
        let mut idle = Vec::with_capacity(threads);
        for _ in 1..threads {
            let mut p = SourceParser::new(agent_id.clone(), host, src)?;
            p.pipeline.share_cap_of(&first.pipeline);
            idle.push(p);
        }
        idle.push(first);
        Ok(Parsing {
            idle,
            running: Default::default(),
            zstd_level,
            #[cfg(test)]
            hold_next: None,
        })
    }

    fn idle(&self) -> bool {
        !self.idle.is_empty()
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    /// Starts parsing `chunk` on an idle parser's thread.
    fn start(&mut self, mut chunk: Chunk, tailer: &mut Tailer, figs: &Arc<SourceFigures>) {
        let mut parser = self.idle.pop().expect("an idle parser");
        if !parser.keep_whole_records(tailer, &mut chunk) {
            tailer.recycle(chunk);
            self.idle.push(parser);
            return;
        }
        let (figs, zstd_level) = (figs.clone(), self.zstd_level);
        #[cfg(test)]
        let hold = self.hold_next.take();
        let task = move || {
            #[cfg(test)]
            if let Some(hold) = hold {
                let _ = hold.recv();
            }
            let mut batch = parser.parse(&chunk, &figs);
            let newest = batch.events.iter().map(|e| e.ts_ms).max();
            // Encoded here, beside the parse; its events go straight back
            // to the parser and its lines to the tailer: only the
            // compressed bytes wait for the acknowledgement.
            let body = Encoded::new(&batch, zstd_level);
            parser.pipeline.recycle(&mut batch.events);
            let slot = Slot::new(&chunk, newest, body);
            Box::new(Parsed {
                parser,
                chunk,
                slot,
            })
        };
        let span = tracing::Span::current();
        self.running
            .push_back(tokio::task::spawn_blocking(move || span.in_scope(task)));
    }

    /// The oldest chunk's parse, once done. Cancel safe: the handle stays
    /// in place until it answers.
    async fn next_done(&mut self) -> Result<Box<Parsed>, tokio::task::JoinError> {
        let front = std::future::poll_fn(|cx| match self.running.front_mut() {
            Some(h) => std::pin::Pin::new(h).poll(cx),
            None => std::task::Poll::Pending,
        })
        .await;
        self.running.pop_front();
        front
    }

    /// Takes back what a parse used and hands out its batch.
    fn done(&mut self, p: Box<Parsed>, tailer: &mut Tailer) -> Slot {
        tailer.recycle(p.chunk);
        self.idle.push(p.parser);
        p.slot
    }
}

/// The batches of one source task between parsing and acknowledgement,
/// oldest first; at most [`ShipConfig::max_in_flight`] of them.
///
/// Each file (source id) is a chain: its first batch goes through
/// [`Shipper::ship_encoded`], which never gives up, and each later one is
/// tried once, chained to the one before it, while that one is on its way
/// or acknowledged. The collector counts a chained batch only right after
/// its predecessor and refuses it if the predecessor is refused; so a
/// batch that is not acknowledged (refused, failed, or answered with an
/// overlap) takes every later one of its file back to waiting, and they
/// go again, in order, once it is the first. Acknowledgements are settled
/// strictly in order: the tailer's checkpoint moves only over a
/// contiguous prefix of acknowledged batches, exactly as with one batch at
/// a time.
struct Flight {
    shipper: Arc<Shipper>,
    slots: std::collections::VecDeque<Slot>,
    /// Shipping tasks, each answering with its launch number.
    tasks: tokio::task::JoinSet<(u64, Tried)>,
    launches: u64,
}

/// A batch on its way, and what its acknowledgement settles.
struct Slot {
    source_id: String,
    start: u64,
    end: u64,
    newest: Option<i64>,
    body: Encoded,
    state: SlotState,
}

enum SlotState {
    /// Not sent, or to be sent again (not before `after`); `resend` after
    /// it failed (not after it was only taken back behind one that did).
    Waiting {
        after: Option<Duration>,
        resend: bool,
    },
    /// On its way, as launch number `launch`.
    Sending {
        launch: u64,
        abort: tokio::task::AbortHandle,
        /// Sent as the first of its file after a failure: its successors
        /// wait for its acknowledgement instead of going along.
        resend: bool,
    },
    /// The collector's answer.
    Done(Delivery),
}

impl Slot {
    fn new(chunk: &Chunk, newest: Option<i64>, body: Encoded) -> Slot {
        Slot {
            source_id: chunk.source_id.clone(),
            start: chunk.start_offset,
            end: chunk.end_offset,
            newest,
            body,
            state: SlotState::Waiting {
                after: None,
                resend: false,
            },
        }
    }
}

impl Flight {
    fn new(shipper: Shipper) -> Flight {
        Flight {
            shipper: Arc::new(shipper),
            slots: Default::default(),
            tasks: tokio::task::JoinSet::new(),
            launches: 0,
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// A new batch, after every batch already here.
    fn push(&mut self, slot: Slot) {
        self.slots.push_back(slot);
        self.launch();
    }

    /// A shipping task answered: record it, settle what is acknowledged
    /// from the front, and send what may go now.
    ///
    /// # Errors
    /// The shipping task panicked.
    fn answered(
        &mut self,
        joined: Result<(u64, Tried), tokio::task::JoinError>,
        tailer: &mut Tailer,
        figs: &SourceFigures,
    ) -> anyhow::Result<()> {
        let (launch, tried) = match joined {
            Ok(answer) => answer,
            // Aborted by `rewind_after`: its slot went back to waiting.
            Err(e) if e.is_cancelled() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(i) = self
            .slots
            .iter()
            .position(|s| matches!(s.state, SlotState::Sending { launch: l, .. } if l == launch))
        else {
            // A task aborted after it had already answered.
            return Ok(());
        };
        match tried {
            Tried::Delivered(d) => {
                self.slots[i].state = SlotState::Done(d);
                if matches!(d, Delivery::Overlap { .. }) {
                    // Chained behind a batch the collector did not count:
                    // they go again after it.
                    self.rewind_after(i);
                }
            }
            Tried::Failed { after } => {
                self.slots[i].state = SlotState::Waiting {
                    after,
                    resend: true,
                };
                self.rewind_after(i);
            }
        }
        while matches!(self.slots.front(), Some(s) if matches!(s.state, SlotState::Done(_))) {
            let slot = self.slots.pop_front().expect("a front slot");
            let SlotState::Done(d) = slot.state else {
                unreachable!("checked above");
            };
            settle(tailer, figs, &slot, d);
        }
        self.launch();
        Ok(())
    }

    /// Takes the batches of slot `i`'s file after it back to waiting,
    /// cancelling their requests: the collector refuses them anyway.
    fn rewind_after(&mut self, i: usize) {
        let id = self.slots[i].source_id.clone();
        for s in self.slots.iter_mut().skip(i + 1) {
            if s.source_id != id {
                continue;
            }
            if let SlotState::Sending { abort, .. } = &s.state {
                abort.abort();
                s.state = SlotState::Waiting {
                    after: None,
                    resend: false,
                };
            }
        }
    }

    /// Sends every waiting batch that may go: the first of its file
    /// alone, a later one chained while its predecessor is on its way
    /// (and not resent after a failure) or acknowledged. A batch that
    /// failed goes again only as the first of its file, through the
    /// shipper's retries and back-off, so a collector refusing it is not
    /// asked again at once.
    fn launch(&mut self) {
        for i in 0..self.slots.len() {
            let SlotState::Waiting { after, resend } = self.slots[i].state else {
                continue;
            };
            let id = &self.slots[i].source_id;
            let before = self.slots.iter().take(i).rev().find(|s| &s.source_id == id);
            let chained = match before.map(|s| &s.state) {
                None => false,
                Some(SlotState::Sending { resend: false, .. })
                | Some(SlotState::Done(Delivery::Acked))
                    if !resend =>
                {
                    true
                }
                Some(_) => continue,
            };
            self.launches += 1;
            let launch = self.launches;
            let (shipper, body) = (self.shipper.clone(), self.slots[i].body.clone());
            let task = async move {
                if chained {
                    return (launch, shipper.try_chained(&body).await);
                }
                if let Some(after) = after {
                    tokio::time::sleep(after).await;
                }
                (launch, Tried::Delivered(shipper.ship_encoded(&body).await))
            };
            let abort = self.tasks.spawn(task.in_current_span());
            self.slots[i].state = SlotState::Sending {
                launch,
                abort,
                resend,
            };
        }
    }
}

/// The collector acknowledged a batch: its range is acknowledged to the
/// tailer.
fn settle(tailer: &mut Tailer, figs: &SourceFigures, slot: &Slot, delivery: Delivery) {
    if let Delivery::Overlap { counted } = delivery {
        let lost = slot.end.saturating_sub(counted.max(slot.start));
        figs.bytes_given_up.fetch_add(lost, Ordering::Relaxed);
        tracing::error!(source = %slot.source_id, counted, end = slot.end, lost, "collector counted into this batch; its uncounted bytes are given up");
    }
    tailer.ack(&slot.source_id, slot.end);
    figs.batches_acked.fetch_add(1, Ordering::Relaxed);
    figs.bytes_acked
        .fetch_add(slot.end - slot.start, Ordering::Relaxed);
    if let Some(ts) = slot.newest {
        figs.newest_acked_ms
            .fetch_max(ts.max(0) as u64, Ordering::Relaxed);
    }
}

/// One source's chunks parsed into the batches that carry their ranges.
///
/// A batch covers exactly the bytes of its chunk, and its events are every
/// record those bytes hold: a MySQL slow-log record (many lines, nothing
/// marking its end) is never split between two batches. When a read cut
/// a record in two, the record's lines go back to the tailer
/// ([`Tailer::give_back`]) and come again, whole, at the start of the next
/// chunk; so a checkpoint never passes a record that was not shipped, and
/// a resend after a crash repeats the same ranges.
pub(crate) struct SourceParser {
    agent_id: String,
    pipeline: Pipeline,
    multi_line: bool,
}

impl SourceParser {
    pub(crate) fn new(
        agent_id: String,
        host: &str,
        src: &SourceConfig,
    ) -> Result<SourceParser, crate::parse::SpecError> {
        Ok(SourceParser {
            agent_id,
            pipeline: Pipeline::new(src.parse.clone(), host)?,
            multi_line: src.parse.format == Format::MysqlSlow,
        })
    }

    /// Parses `chunk` into its batch, after handing back to `tailer` a
    /// record the chunk holds only the beginning of. `None` when nothing is
    /// left to ship (the chunk was all one unfinished record).
    #[cfg(test)]
    pub(crate) fn batch(
        &mut self,
        tailer: &mut Tailer,
        chunk: &mut Chunk,
        figs: &SourceFigures,
    ) -> Option<Batch> {
        if !self.keep_whole_records(tailer, chunk) {
            return None;
        }
        Some(self.parse(chunk, figs))
    }

    /// Hands back to `tailer` a record `chunk` holds only the beginning
    /// of: one a read cut in two, or one at the end of a file still being
    /// written that does not end the way the format ends its records (the
    /// writer's write was caught half-copied). `false` when nothing is
    /// left (the chunk was all one unfinished record).
    pub(crate) fn keep_whole_records(&mut self, tailer: &mut Tailer, chunk: &mut Chunk) -> bool {
        if !self.multi_line || !(chunk.cut_by_read_size() || chunk.at_open_end()) {
            return true;
        }
        match self.pipeline.open_record(chunk.lines()) {
            Some(open) if chunk.cut_by_read_size() || !open.looks_whole => {
                tailer.give_back(chunk, open.start);
                chunk.line_count() > 0
            }
            _ => true,
        }
    }

    /// Parses every record of `chunk` (whole ones: see
    /// [`SourceParser::keep_whole_records`]) into the batch covering it.
    pub(crate) fn parse(&mut self, chunk: &Chunk, figs: &SourceFigures) -> Batch {
        let pipeline = &mut self.pipeline;
        let before = pipeline.stats();
        let mut events = Vec::with_capacity(chunk.line_count());
        match chunk.text_lines() {
            Some(lines) => {
                for line in lines {
                    // A failure is counted and kept by the pipeline.
                    let _ = pipeline.feed_str(line, &mut events);
                }
            }
            None => {
                for line in chunk.lines() {
                    let _ = pipeline.feed(line, &mut events);
                }
            }
        }
        if self.multi_line {
            // What is left is a complete record: one cut by the read, or
            // caught half-written, went back to the tailer above.
            pipeline.flush(&mut events);
        }
        pipeline.parse_error_events(chrono::Utc::now().timestamp_millis(), &mut events);
        let failed = pipeline.stats().failed - before.failed;
        let lines = chunk.line_count() as u64;
        figs.lines_read.fetch_add(lines, Ordering::Relaxed);
        figs.bytes_read
            .fetch_add(chunk.end_offset - chunk.start_offset, Ordering::Relaxed);
        figs.events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        figs.lines_failed.fetch_add(failed, Ordering::Relaxed);
        Batch {
            meta: BatchMeta {
                agent_id: self.agent_id.clone(),
                source_id: chunk.source_id.clone(),
                start_offset: chunk.start_offset,
                end_offset: chunk.end_offset,
                lines_read: lines,
                lines_failed: failed,
            },
            events,
        }
    }
}

/// The agent's own figures as infra events, so the collector's charts and
/// rules see an agent falling behind or giving bytes up: counters as the
/// increase since the previous sample, lags as they are now.
fn figure_events(
    all: &AgentFigures,
    previous: &mut BTreeMap<String, [u64; 5]>,
    at_ms: i64,
    host: &str,
    service: &str,
) -> Vec<panorama_model::Event> {
    let sources = all
        .sources
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut out = Vec::new();
    let now = chrono::Utc::now().timestamp_millis() as u64;
    for (name, f) in sources {
        if name == "host-metrics" {
            continue;
        }
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let current = [
            g(&f.lines_read),
            g(&f.bytes_read),
            g(&f.lines_failed),
            g(&f.bytes_acked),
            g(&f.bytes_given_up),
        ];
        let before = previous.insert(name.clone(), current).unwrap_or([0; 5]);
        let newest = g(&f.newest_acked_ms);
        let metrics = [
            (
                agent::LINES_READ,
                current[0].saturating_sub(before[0]) as f64,
            ),
            (
                agent::BYTES_READ,
                current[1].saturating_sub(before[1]) as f64,
            ),
            (
                agent::LINES_FAILED,
                current[2].saturating_sub(before[2]) as f64,
            ),
            (
                agent::BYTES_ACKED,
                current[3].saturating_sub(before[3]) as f64,
            ),
            (
                agent::BYTES_GIVEN_UP,
                current[4].saturating_sub(before[4]) as f64,
            ),
            (
                agent::LAG_BYTES,
                current[1].saturating_sub(current[3]) as f64,
            ),
            (
                agent::LAG_SECONDS,
                if newest == 0 {
                    0.0
                } else {
                    now.saturating_sub(newest) as f64 / 1000.0
                },
            ),
        ];
        for (metric, value) in metrics {
            let mut e = panorama_model::Event::new(
                at_ms,
                Layer::Infra,
                service,
                host,
                agent::source_series(&name, metric),
            );
            e.value = Some(value);
            out.push(e);
        }
    }
    out
}

struct HostTask {
    agent_id: String,
    host: String,
    service: String,
    interval: Duration,
    ship: ShipConfig,
    all: Arc<AgentFigures>,
}

impl HostTask {
    async fn run(
        self,
        sampler: HostSampler,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let HostTask {
            agent_id,
            host,
            service,
            interval,
            ship,
            all,
        } = self;
        let figs = all.source("host-metrics");
        let shipper = Shipper::new(ship)?;
        let (tx, mut rx) = mpsc::channel(4);
        let sampling = tokio::spawn(crate::host::run(sampler, interval, tx));
        let mut previous = BTreeMap::new();
        loop {
            let mut events = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => break },
                _ = stop.changed() => break,
            };
            let at_ms = events
                .iter()
                .map(|e| e.ts_ms)
                .max()
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            events.extend(figure_events(&all, &mut previous, at_ms, &host, &service));
            // Samples have no file offsets; the sample time stands in, so a
            // resend of the same sample is recognised and a new one is new.
            let at = events.iter().map(|e| e.ts_ms).max().unwrap_or(0).max(0) as u64;
            let n = events.len() as u64;
            let batch = Batch {
                meta: BatchMeta {
                    agent_id: agent_id.clone(),
                    source_id: "host-metrics".into(),
                    start_offset: at,
                    end_offset: at + 1,
                    lines_read: 0,
                    lines_failed: 0,
                },
                events,
            };
            tokio::select! {
                _ = shipper.ship(&batch) => {}
                _ = stop.changed() => break,
            }
            figs.events.fetch_add(n, Ordering::Relaxed);
            figs.batches_acked.fetch_add(1, Ordering::Relaxed);
        }
        sampling.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ParseSpec;
    use crate::tail::TailConfig;

    #[test]
    fn figures_become_infra_events_with_increases_and_lags() {
        let all = AgentFigures::default();
        let f = all.source("nginx");
        f.lines_read.store(100, Ordering::Relaxed);
        f.bytes_read.store(10_000, Ordering::Relaxed);
        f.bytes_acked.store(9_000, Ordering::Relaxed);
        let mut prev = BTreeMap::new();
        let first = figure_events(&all, &mut prev, 60_000, "web1", "host");
        let value = |evs: &[panorama_model::Event], name: &str| {
            evs.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value)
                .unwrap()
        };
        assert_eq!(value(&first, "agent.nginx.lines_read"), 100.0);
        assert_eq!(value(&first, "agent.nginx.lag_bytes"), 1_000.0);
        assert!(
            first
                .iter()
                .all(|e| e.layer == Layer::Infra && e.host == "web1")
        );
        f.lines_read.store(130, Ordering::Relaxed);
        let second = figure_events(&all, &mut prev, 70_000, "web1", "host");
        assert_eq!(
            value(&second, "agent.nginx.lines_read"),
            30.0,
            "the increase since the last sample"
        );
        assert!(figure_events(&AgentFigures::default(), &mut prev, 0, "h", "s").is_empty());
    }

    /// Tails `text` as one file read `read_chunk_bytes` at a time and
    /// parses it as `spec`, acknowledging every batch: the batches, in order.
    /// The clock moves on half a second whenever a round has nothing, so a
    /// record held back at the end of the file comes once it has waited.
    fn batches(text: &[u8], spec: &ParseSpec, read_chunk_bytes: usize) -> Vec<Batch> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.log");
        std::fs::write(&path, text).unwrap();
        let mut tail = TailConfig::new("db", vec![path.display().to_string()]);
        tail.read_chunk_bytes = read_chunk_bytes;
        tail.poll_interval = Duration::ZERO;
        let src = SourceConfig {
            tail: tail.clone(),
            parse: spec.clone(),
        };
        let mut tailer = Tailer::new(tail).unwrap();
        let mut parser = SourceParser::new("a1".into(), "db1", &src).unwrap();
        let figs = SourceFigures::default();
        let mut now = std::time::Instant::now();
        let mut out = Vec::new();
        for _ in 0..10 * text.len() {
            let chunks = tailer.poll_at(now);
            if chunks.is_empty() {
                now += Duration::from_millis(500);
            }
            for mut chunk in chunks {
                if let Some(batch) = parser.batch(&mut tailer, &mut chunk, &figs) {
                    assert!(tailer.ack(&chunk.source_id, batch.meta.end_offset));
                    out.push(batch);
                }
            }
            if out
                .last()
                .is_some_and(|b| b.meta.end_offset == text.len() as u64)
            {
                break;
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_parsed_side_by_side_come_back_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let line = "10.0.0.1 - - [22/Nov/2026:13:00:01 +0000] \"GET /api/x HTTP/1.1\" 200 5 \"-\" \"t\" 0.002\n";
        std::fs::write(&path, line.repeat(400)).unwrap();
        let mut tail = TailConfig::new("web", vec![path.display().to_string()]);
        tail.read_chunk_bytes = line.len() * 150;
        tail.poll_interval = Duration::ZERO;
        let src = SourceConfig {
            tail: tail.clone(),
            parse: ParseSpec::new(Format::Combined, "web"),
        };
        let mut tailer = Tailer::new(tail).unwrap();
        let figs = Arc::new(SourceFigures::default());
        let mut parsing = Parsing::new("a1".into(), "web1", &src, 2, Some(1)).unwrap();
        let (release, hold) = std::sync::mpsc::channel();
        parsing.hold_next = Some(hold);
        let now = std::time::Instant::now();
        let first = tailer.poll_at(now).pop().unwrap();
        let second = tailer.poll_at(now).pop().unwrap();
        assert_eq!(first.end_offset, second.start_offset);
        parsing.start(first, &mut tailer, &figs);
        parsing.start(second, &mut tailer, &figs);
        assert!(!parsing.idle(), "two parsers, both busy");
        // The second chunk's parse finishes while the first's is held back.
        let t0 = std::time::Instant::now();
        while !parsing.running[1].is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "second parse never finished"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!parsing.running[0].is_finished());
        release.send(()).unwrap();
        let a = parsing.next_done().await.unwrap();
        let a = parsing.done(a, &mut tailer);
        let b = parsing.next_done().await.unwrap();
        let b = parsing.done(b, &mut tailer);
        assert_eq!((a.start, a.end, b.start), (0, b.start, a.end), "file order");
        assert_eq!(b.end, (line.len() * 300) as u64);
        assert_eq!(figs.lines_read.load(Ordering::Relaxed), 300);
        assert!(parsing.idle() && parsing.running() == 0);
    }

    /// Events without their parse-error times (the wall clock).
    fn events(batches: &[Batch]) -> Vec<panorama_model::Event> {
        batches
            .iter()
            .flat_map(|b| b.events.iter().cloned())
            .map(|mut e| {
                if e.name == PARSE_ERROR_SERIES {
                    e.ts_ms = 0;
                }
                e
            })
            .collect()
    }

    #[test]
    fn slow_log_records_split_at_any_read_boundary_parse_as_whole() {
        let text = include_bytes!("../tests/fixtures/parse/mysql_slow.log");
        let spec = ParseSpec::new(Format::MysqlSlow, "db");
        let whole = batches(text, &spec, 1 << 20);
        assert_eq!(whole.len(), 1);
        assert_eq!(events(&whole).len(), 4, "the fixture's four records");
        assert_eq!(whole[0].meta.lines_failed, 0);
        for k in 1..text.len() {
            let split = batches(text, &spec, k);
            let mut at = 0;
            for b in &split {
                assert_eq!(
                    b.meta.start_offset, at,
                    "read size {k}: ranges follow each other"
                );
                at = b.meta.end_offset;
            }
            assert_eq!(
                at,
                text.len() as u64,
                "read size {k}: the whole file shipped"
            );
            assert_eq!(events(&split), events(&whole), "read size {k}");
            let sum = |f: fn(&BatchMeta) -> u64| split.iter().map(|b| f(&b.meta)).sum::<u64>();
            assert_eq!(
                (sum(|m| m.lines_read), sum(|m| m.lines_failed)),
                (whole[0].meta.lines_read, 0),
                "read size {k}"
            );
        }
    }

    /// A writer's record read while only its first half is in the file
    /// (a write caught half-copied, or a writer writing line by line): the
    /// half is held back, not shipped as a record of its own with the rest
    /// failing later; a record that ends like mysqld ends them goes at once;
    /// one abandoned half-written goes when the file has been quiet for
    /// `partial_line_flush`.
    #[test]
    fn a_slow_log_record_half_written_at_the_end_of_the_file_waits_for_its_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.log");
        let head = "# Time: 2026-11-22T13:00:01Z\n# User@Host: app[app] @ web1 []  Id: 1\n\
            # Query_time: 2.5  Lock_time: 0.0 Rows_sent: 1  Rows_examined: 9\nuse shop;\n\
            SET timestamp=1795438801;\nSELECT *\n";
        let rest = "FROM orders\nWHERE id = 7;\n";
        std::fs::write(&path, head).unwrap();
        let mut tail = TailConfig::new("db", vec![path.display().to_string()]);
        tail.poll_interval = Duration::ZERO;
        let src = SourceConfig {
            tail: tail.clone(),
            parse: ParseSpec::new(Format::MysqlSlow, "db"),
        };
        let mut tailer = Tailer::new(tail.clone()).unwrap();
        let mut parser = SourceParser::new("a1".into(), "db1", &src).unwrap();
        let figs = SourceFigures::default();
        let t0 = std::time::Instant::now();
        let mut round = |tailer: &mut Tailer, now| {
            let mut out = Vec::new();
            for mut chunk in tailer.poll_at(now) {
                if let Some(b) = parser.batch(tailer, &mut chunk, &figs) {
                    assert!(tailer.ack(&chunk.source_id, b.meta.end_offset));
                    out.push(b);
                }
            }
            out
        };
        let append = |text: &str| {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };

        assert!(round(&mut tailer, t0).is_empty(), "the half is held");
        assert_eq!(tailer.stats().records_held, 1);
        assert!(
            round(&mut tailer, t0 + Duration::from_secs(1)).is_empty(),
            "nothing new: still held, and not read again"
        );
        append(rest);
        let b = round(&mut tailer, t0 + Duration::from_secs(2));
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].meta.start_offset, b[0].meta.end_offset),
            (0, (head.len() + rest.len()) as u64)
        );
        assert_eq!((b[0].meta.lines_read, b[0].meta.lines_failed), (8, 0));
        assert_eq!(b[0].events.len(), 1, "one record, whole: {:?}", b[0].events);
        assert_eq!(b[0].events[0].latency_ms, Some(2500.0));

        // A whole record is not held: it ends the way mysqld ends them.
        let whole = "# Time: 2026-11-22T13:00:02Z\n# Query_time: 1.0  Lock_time: 0.0\nSELECT 2;\n";
        append(whole);
        let b = round(&mut tailer, t0 + Duration::from_secs(3));
        assert_eq!((b.len(), b[0].events.len()), (1, 1));
        assert_eq!(tailer.stats().records_held, 1);

        // Abandoned half-written: shipped once the file was quiet.
        append("# Time: 2026-11-22T13:00:03Z\n# Query_time: 4.0  Lock_time: 0.0\nSELECT\n");
        assert!(round(&mut tailer, t0 + Duration::from_secs(4)).is_empty());
        assert!(round(&mut tailer, t0 + Duration::from_secs(8)).is_empty());
        let b = round(&mut tailer, t0 + Duration::from_secs(10));
        assert_eq!(
            b.len(),
            1,
            "quiet for partial_line_flush (5 s): shipped as it is"
        );
        assert_eq!((b[0].meta.lines_failed, b[0].events.len()), (0, 1));
        assert_eq!(b[0].events[0].latency_ms, Some(4000.0));
        assert_eq!(
            b[0].meta.end_offset,
            std::fs::metadata(&path).unwrap().len()
        );
    }

    /// A record abandoned half-written that is longer than a read: once
    /// the file has been quiet, it goes as it is, however many reads it
    /// takes to come back whole (it is not held again at each one).
    #[test]
    fn an_abandoned_record_longer_than_a_read_is_shipped_once_the_file_is_quiet() {
        let mut text = String::from(
            "# Time: 2026-11-22T13:00:01Z\n# Query_time: 3.0  Lock_time: 0.0\nSELECT *\n",
        );
        for i in 0..20 {
            text.push_str(&format!("  FROM t{i} JOIN u{i} ON t{i}.id = u{i}.id\n"));
        }
        let spec = ParseSpec::new(Format::MysqlSlow, "db");
        for read in [16, 64, 200] {
            let b = batches(text.as_bytes(), &spec, read);
            assert_eq!(
                b.last().map(|b| b.meta.end_offset),
                Some(text.len() as u64),
                "read size {read}: shipped"
            );
            let evs = events(&b);
            assert_eq!(evs.len(), 1, "read size {read}: one record: {evs:?}");
            assert_eq!(evs[0].latency_ms, Some(3000.0));
            assert_eq!(b.iter().map(|b| b.meta.lines_failed).sum::<u64>(), 0);
        }
    }

    #[test]
    fn a_resend_after_a_crash_repeats_the_range_a_record_was_cut_back_to() {
        let text = include_bytes!("../tests/fixtures/parse/mysql_slow.log");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.log");
        std::fs::write(&path, text).unwrap();
        let mut tail = TailConfig::new("db", vec![path.display().to_string()]);
        // The first read ends inside the first record's query.
        tail.read_chunk_bytes = 400;
        tail.checkpoint_path = Some(dir.path().join("checkpoint.json"));
        tail.checkpoint_interval = Duration::ZERO;
        let src = SourceConfig {
            tail: tail.clone(),
            parse: ParseSpec::new(Format::MysqlSlow, "db"),
        };
        let figs = SourceFigures::default();
        let first_batch = || {
            let mut tailer = Tailer::new(tail.clone()).unwrap();
            let mut parser = SourceParser::new("a1".into(), "db1", &src).unwrap();
            let mut chunk = tailer.poll().remove(0);
            let batch = parser.batch(&mut tailer, &mut chunk, &figs).unwrap();
            // Shipped, and killed before the acknowledgement.
            (batch.meta.start_offset, batch.meta.end_offset, batch.events)
        };
        let before = first_batch();
        assert_eq!(
            (before.0, before.1, before.2.len()),
            (0, 181, 0),
            "the banner alone: the record it cut went back"
        );
        assert_eq!(first_batch(), before, "the resend is the same range");
    }

    #[test]
    fn a_slow_log_record_without_time_is_a_parse_error_event() {
        // The second record has neither `# Time:` nor `SET timestamp=`.
        let text = b"# Time: 2026-11-22T13:00:01Z\n# Query_time: 1.0  Lock_time: 0.0\nSELECT 1;\n\
            # User@Host: app[app] @ web1 []  Id: 1\n# Query_time: 2.0  Lock_time: 0.0\nSELECT 2;\n\
            junk before any record? no: still the record\n";
        let spec = ParseSpec::new(Format::MysqlSlow, "db");
        let b = batches(text, &spec, 1 << 20);
        // The last record does not end with `;`: held back until the file
        // had been quiet for a while, then shipped as it is.
        assert_eq!(b.len(), 2);
        assert_eq!(b.iter().map(|b| b.meta.lines_failed).sum::<u64>(), 1);
        let errors: Vec<_> = b
            .iter()
            .flat_map(|b| &b.events)
            .filter(|e| e.name == PARSE_ERROR_SERIES)
            .collect();
        assert_eq!(errors.len(), 1, "a counted failure is an event too");
        assert_eq!(errors[0].layer, Layer::Component);
        assert!(!errors[0].outcome.is_ok());
        let raw = errors[0].raw.as_deref().unwrap();
        assert!(raw.starts_with("# User@Host: app[app]"), "{raw}");
        assert!(raw.contains("SET timestamp="), "{raw}");
    }

    #[test]
    fn failed_lines_become_parse_error_events_with_a_few_samples() {
        let mut text = String::new();
        for i in 0..8 {
            text.push_str(&format!("not json {i}\n"));
        }
        text.push_str("{\"ts\":\"2026-11-22T13:00:01Z\",\"name\":\"login\"}\n");
        let spec = ParseSpec::new(Format::Json, "login");
        let b = batches(text.as_bytes(), &spec, 1 << 20);
        assert_eq!((b[0].meta.lines_read, b[0].meta.lines_failed), (9, 8));
        let errors: Vec<_> = b[0]
            .events
            .iter()
            .filter(|e| e.name == PARSE_ERROR_SERIES)
            .collect();
        assert_eq!(errors.len(), 8);
        assert!(errors.iter().all(|e| e.layer == Layer::Business));
        let raws: Vec<&str> = errors.iter().filter_map(|e| e.raw.as_deref()).collect();
        assert_eq!(raws.len(), crate::parse::MAX_FAILED_SAMPLES);
        assert!(raws[0].starts_with("not json 0  ["), "{}", raws[0]);
    }
}
