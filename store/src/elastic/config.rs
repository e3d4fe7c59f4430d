use std::time::Duration;

/// How to reach Elasticsearch and how hard to try.
#[derive(Debug, Clone)]
pub struct ElasticConfig {
    /// Base URL, for example `http://127.0.0.1:9200`.
    pub url: String,
    /// Index names start with this, so several installations (or test cases)
    /// can share a cluster: `{prefix}-rollups-2026.11.22`.
    pub index_prefix: String,
    /// Primary shards per daily index. One is right for a minute-granularity
    /// rollup index up to tens of millions of documents a day.
    pub shards: u32,
    /// Replicas per daily index; 0 on a single node, where replicas could
    /// never be assigned and the cluster would stay yellow.
    pub replicas: u32,
    /// At most this many documents per bulk request.
    pub bulk_max_docs: usize,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Backoff for writes that failed for a reason that may pass.
    pub retry: RetryPolicy,
}

impl ElasticConfig {
    /// Defaults for a cluster at `url`.
    pub fn new(url: impl Into<String>) -> ElasticConfig {
        ElasticConfig {
            url: url.into(),
            index_prefix: "panorama".into(),
            shards: 1,
            replicas: 0,
            bulk_max_docs: 5_000,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }

    /// Same, with another index prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> ElasticConfig {
        self.index_prefix = prefix.into();
        self
    }
}

/// Exponential backoff with jitter for writes.
///
/// Writes are idempotent by document id, so retrying a request that may have
/// half-succeeded is always safe; the only question is how long to keep the
/// caller waiting before handing the data back.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First wait.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up (with [`crate::StoreError::Unavailable`]) after this long;
    /// `None` retries until the cluster answers. The collector keeps the data
    /// in its WAL either way, so a bound only decides who waits.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Some(Duration::from_secs(60)),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): exponential, capped,
    /// with "equal jitter" (half fixed, half random) so that many writers
    /// coming back from the same outage do not hit the cluster in lockstep,
    /// yet each still backs off.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.min(20));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_elapsed: None,
        };
        for attempt in 0..30 {
            let b = p.backoff(attempt);
            let cap = Duration::from_millis(100 << attempt.min(4)).min(Duration::from_secs(1));
            assert!(
                b >= cap / 2 && b <= cap,
                "attempt {attempt}: {b:?} vs cap {cap:?}"
            );
        }
    }
}
