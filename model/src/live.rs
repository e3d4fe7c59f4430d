//! What a collector knows about the last few minutes before they are in the
//! store, shared by the collector (which keeps it) and the rules engine
//! (which reads it), so that neither crate depends on the other.
//!
//! The collector counts every durable batch into fine slices of event time
//! (a few seconds wide) for the minutes still open. A slice is a
//! [`Rollup`] like any other — count, errors, latency histogram, gauge —
//! so slices merge with each other and with whole-minute rollups from the
//! store, and a p99 over the last 60 seconds is as exact as over a minute.

use crate::{Layer, Rollup, SeriesKey};

/// One slice of one series: the events with event time in
/// `[start_ms, start_ms + width)`, where the width is
/// [`LiveView::slice_ms`]. The rollup's `minute_ms` is the minute holding
/// the slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Start of the slice, Unix ms, a multiple of the width.
    pub start_ms: i64,
    /// What was counted in it.
    pub rollup: Rollup,
}

/// One collector's recent events, in slices, and a way to be told when
/// more arrive.
///
/// Implementations are called from async code and from the ingest path:
/// every method must be quick and must not block on I/O.
pub trait LiveView: Send + Sync {
    /// The collector whose documents these slices stand for: a reader
    /// takes this collector's recent minutes from here and every other
    /// collector's from the store.
    fn collector(&self) -> &str;

    /// Width of a slice, ms (divides a minute).
    fn slice_ms(&self) -> i64;

    /// From which event time on (a multiple of the slice width) the slices
    /// hold everything this collector counted, when asked at `now_ms`:
    /// older slices are dropped, and a view started recently has not seen
    /// what came before it.
    fn covers_from(&self, now_ms: i64) -> i64;

    /// False from a restart until what the collector replayed from its
    /// write-ahead log is in the store again: until then the store's
    /// minutes of this collector from before [`covers_from`](Self::covers_from)
    /// are stale (they lack what was durable but not yet flushed when the
    /// process died), and a window read from them would dip and resolve
    /// alerts that still fire.
    fn settled(&self) -> bool {
        true
    }

    /// The slices of `layer`'s series for which `keep` is true, starting in
    /// `[from_ms, to_ms)`.
    fn slices(
        &self,
        layer: Layer,
        keep: &dyn Fn(&SeriesKey) -> bool,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<Slice>;

    /// The series that received events since the last call, each once.
    fn take_touched(&self) -> Vec<SeriesKey>;

    /// Registers `wake`, called (from the ingest path, so it must be
    /// cheap) after each durable batch that touched a series.
    fn on_touch(&self, wake: Box<dyn Fn() + Send + Sync>);
}
