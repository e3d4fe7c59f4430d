//! The agent's hot path on one file, for `bench/agent.sh`: tail + parse +
//! route normalization + binary batch encoding (and zstd with `--zstd`),
//! exactly the code the agent runs per chunk, minus the network.
//!
//!     cargo run --release -p panorama-agent --example throughput -- FILE [--zstd]

use std::time::Instant;

use panorama_agent::parse::{Format, ParseSpec, Pipeline};
use panorama_agent::tail::{TailConfig, Tailer};
use panorama_model::wire::binary::{self, Batch, BatchMeta};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: throughput FILE [--zstd]"))?;
    let zstd = args.any(|a| a == "--zstd");
    let size = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let mut tail = TailConfig::new("bench", vec![path.clone()]);
    tail.checkpoint_path = None;
    let mut tailer = Tailer::new(tail)?;
    let mut pipeline = Pipeline::new(ParseSpec::new(Format::Combined, "bench"), "bench-host")?;
    let (mut lines, mut events_total, mut encoded, mut acked) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut events = Vec::with_capacity(4096);
    while acked < size {
        let chunks = tailer.poll();
        for chunk in chunks {
            match chunk.text_lines() {
                Some(lines) => {
                    for line in lines {
                        let _ = pipeline.feed_str(line, &mut events);
                    }
                }
                None => {
                    for line in chunk.lines() {
                        let _ = pipeline.feed(line, &mut events);
                    }
                }
            }
            lines += chunk.line_count() as u64;
            events_total += events.len() as u64;
            let batch = Batch {
                meta: BatchMeta {
                    agent_id: "bench".into(),
                    source_id: chunk.source_id.clone(),
                    start_offset: chunk.start_offset,
                    end_offset: chunk.end_offset,
                    lines_read: chunk.line_count() as u64,
                    lines_failed: 0,
                },
                events: std::mem::take(&mut events),
            };
            buf.clear();
            binary::encode(&batch, &mut buf);
            encoded += if zstd {
                zstd::bulk::compress(&buf, 1)?.len() as u64
            } else {
                buf.len() as u64
            };
            events = batch.events;
            pipeline.recycle(&mut events);
            tailer.ack(&chunk.source_id, chunk.end_offset);
            acked = chunk.end_offset;
            tailer.recycle(chunk);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = pipeline.stats();
    println!(
        "{lines} lines, {events_total} events, {} failed, {:.0} lines/s, {:.1} MB encoded{}, {:.2} s, peak RSS {:.1} MB",
        stats.failed,
        lines as f64 / secs,
        encoded as f64 / 1e6,
        if zstd { " (zstd)" } else { "" },
        secs,
        peak_rss_mb()
    );
    Ok(())
}
