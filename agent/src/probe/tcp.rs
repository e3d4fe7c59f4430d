//! `tcp`: how long a TCP connect takes, or why it fails.

use std::time::Instant;

use super::Report;

/// Connects to `target` and closes at once.
pub async fn run(target: &str) -> Report {
    let started = Instant::now();
    let result = super::connect(target).await.map(drop);
    Report {
        operation: "connect".into(),
        result,
        latency: started.elapsed(),
        figures: Vec::new(),
    }
}
