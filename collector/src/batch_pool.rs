//! Decoded batches kept between requests.
//!
//! An agent's batch carries tens of thousands of events, each with at least
//! three strings. Decoding every request into a fresh batch, only to free it
//! once counted, made allocation a fifth of the collector's time; decoding
//! into a batch that already held one of a similar shape reuses its strings
//! instead (see [`binary::decode_into`]).
//!
//! A batch goes back only once nothing reads it any more: ingest returns it
//! after it is appended to the WAL (which gets the request's own bytes, not
//! the batch), counted and settled. Whatever keeps something of an event
//! (the aggregator's samples, the live view) copies it, since it only ever
//! borrows the events.

use std::sync::{Mutex, PoisonError};

use panorama_model::wire::binary::{self, Batch, DecodeError};

/// Batches kept at most: enough for the requests a two-core collector
/// decodes at once; more in flight simply allocate as before.
const KEEP: usize = 4;

/// A batch of more events than this is freed rather than kept: agents cut
/// far smaller ones, and one oversized request must not leave its memory
/// resident for good.
const KEEP_EVENTS: usize = 1 << 16;

/// The free batches; see the module docs.
#[derive(Default)]
pub(crate) struct BatchPool {
    free: Mutex<Vec<Batch>>,
}

impl BatchPool {
    /// Decodes `bytes` like [`binary::decode`], into a batch from the pool
    /// when one is free.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Batch, DecodeError> {
        let mut batch = self.lock().pop().unwrap_or_default();
        match binary::decode_into(bytes, &mut batch) {
            Ok(()) => Ok(batch),
            Err(e) => {
                self.give(batch);
                Err(e)
            }
        }
    }

    /// Takes `batch` back for a later [`BatchPool::decode`], or frees it
    /// when the pool is full or the batch too large.
    pub(crate) fn give(&self, batch: Batch) {
        if batch.events.capacity() > KEEP_EVENTS {
            return;
        }
        let mut free = self.lock();
        if free.len() < KEEP {
            free.push(batch);
            return;
        }
        // Freeing tens of thousands of strings is not work to do under the lock.
        drop(free);
        drop(batch);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Batch>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use panorama_model::wire::binary::BatchMeta;
    use panorama_model::{Event, Layer};

    use super::*;

    fn encoded(names: &[&str]) -> Vec<u8> {
        let batch = Batch {
            meta: BatchMeta {
                agent_id: "a".into(),
                source_id: "s".into(),
                start_offset: 0,
                end_offset: names.len() as u64,
                lines_read: names.len() as u64,
                lines_failed: 0,
            },
            events: names
                .iter()
                .map(|n| Event::new(1_000, Layer::Url, "svc", "web1", *n))
                .collect(),
        };
        let mut out = Vec::new();
        binary::encode(&batch, &mut out);
        out
    }

    #[test]
    fn a_returned_batch_is_decoded_into_again() {
        let pool = BatchPool::default();
        let first = pool.decode(&encoded(&["GET /a", "GET /b"])).unwrap();
        let ptr = first.events.as_ptr();
        pool.give(first);
        let bytes = encoded(&["GET /c"]);
        let second = pool.decode(&bytes).unwrap();
        assert_eq!(
            second.events.as_ptr(),
            ptr,
            "the pooled batch was not reused"
        );
        assert_eq!(second, binary::decode(&bytes).unwrap());
    }

    #[test]
    fn a_failed_decode_keeps_the_batch_and_the_next_one_is_exact() {
        let pool = BatchPool::default();
        pool.give(pool.decode(&encoded(&["GET /a", "GET /b"])).unwrap());
        // The last event's layer code (each event here is six bytes) made
        // unknown, behind a valid checksum: decoding fails after
        // overwriting the first events of the pooled batch.
        let mut broken = encoded(&["GET /x", "GET /y", "GET /z"]);
        let n = broken.len();
        broken[n - 9] = 99;
        let crc = crc32fast::hash(&broken[..n - 4]);
        broken[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            pool.decode(&broken),
            Err(DecodeError::BadLayer { code: 99, .. })
        ));
        assert_eq!(pool.lock().len(), 1);
        let bytes = encoded(&["GET /c"]);
        assert_eq!(
            pool.decode(&bytes).unwrap(),
            binary::decode(&bytes).unwrap()
        );
    }

    #[test]
    fn keeps_a_bounded_number_of_batches() {
        let pool = BatchPool::default();
        for _ in 0..KEEP + 3 {
            pool.give(Batch::default());
        }
        assert_eq!(pool.lock().len(), KEEP);
        let mut big = Batch::default();
        big.events.reserve_exact(KEEP_EVENTS + 1);
        pool.lock().clear();
        pool.give(big);
        assert!(pool.lock().is_empty());
    }
}
