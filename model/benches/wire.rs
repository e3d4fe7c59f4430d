//! Throughput of the wire encodings, in events per second on one core.
//!
//! `cargo bench -p panorama-model --bench wire`. A plain timing loop (no
//! harness): the targets are ≥ 1,000,000 events/s for decoding the agent's
//! batches and ≥ 200,000 events/s for parsing NDJSON.

use std::hint::black_box;
use std::time::{Duration, Instant};

use panorama_model::wire::{binary, ndjson};
use panorama_model::{Event, Layer, Outcome};

/// A batch shaped like a parsed access log: a few services and hosts, a
/// few hundred routes, 2 % errors carrying their raw line.
fn access_log_batch(n: usize) -> binary::Batch {
    let events = (0..n)
        .map(|i| {
            let mut e = Event::new(
                1_795_352_401_234 + (i as i64) * 3,
                Layer::Url,
                ["login", "pay", "api"][i % 3],
                format!("web{}", i % 4),
                format!("GET /api/v1/items/:id/part{}", i % 300),
            );
            e.latency_ms = Some((i % 997) as f64 * 0.731);
            if i % 50 == 0 {
                e.outcome = Outcome::Error(Some("500".into()));
                e.raw = Some(format!(
                    "10.0.0.{} - - [22/Nov/2026:13:00:01 +0000] \"GET /api/v1/items/{i}/part HTTP/1.1\" 500 12 \"-\" \"curl/8\"",
                    i % 250
                ));
            }
            if i % 2 == 0 {
                e.dims.insert("channel".into(), ["ios", "android"][i % 4 / 2].into());
            }
            e
        })
        .collect();
    binary::Batch {
        meta: binary::BatchMeta {
            agent_id: "agent-web1".into(),
            source_id: "3f9a2c4d5e6f7a8b".into(),
            start_offset: 0,
            end_offset: (n * 120) as u64,
            lines_read: n as u64,
            lines_failed: 0,
        },
        events,
    }
}

/// Runs `f` (which handles `per_call` events) for about a second and
/// prints events per second.
fn measure(label: &str, per_call: usize, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f();
        calls += 1;
    }
    let rate = (calls as f64 * per_call as f64) / start.elapsed().as_secs_f64();
    println!("{label:<28} {:>12.0} events/s", rate);
}

fn main() {
    let n = 8192;
    let batch = access_log_batch(n);
    let mut bytes = Vec::new();
    binary::encode(&batch, &mut bytes);
    println!(
        "binary batch: {n} events, {} bytes ({:.1} bytes/event)",
        bytes.len(),
        bytes.len() as f64 / n as f64
    );

    let mut out = Vec::with_capacity(bytes.len());
    measure("binary encode", n, || {
        out.clear();
        binary::encode(black_box(&batch), &mut out);
        black_box(&out);
    });
    measure("binary decode", n, || {
        black_box(binary::decode(black_box(&bytes)).expect("valid batch"));
    });
    // As the collector decodes: into a batch that held one before.
    let mut reused = binary::Batch::default();
    measure("binary decode_into, reused", n, || {
        binary::decode_into(black_box(&bytes), &mut reused).expect("valid batch");
        black_box(&reused);
    });

    let body: String = batch
        .events
        .iter()
        .map(|e| ndjson::to_line(e) + "\n")
        .collect();
    println!("ndjson body: {n} events, {} bytes", body.len());
    measure("ndjson parse_body", n, || {
        let ok = ndjson::parse_body(black_box(body.as_bytes()), "10.0.0.9")
            .filter(Result::is_ok)
            .count();
        assert_eq!(ok, n);
    });
    measure("ndjson to_line", n, || {
        for e in &batch.events {
            black_box(ndjson::to_line(e));
        }
    });
}
