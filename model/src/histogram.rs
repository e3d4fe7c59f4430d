use serde::{Deserialize, Serialize};

/// Relative accuracy of every quantile the histogram reports.
///
/// The contract is 2 %; we bucket at 1 % so that the bound still holds after
/// the estimate is clamped to the exact min and max.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Smallest latency told apart from zero, in milliseconds (1 µs).
pub const MIN_TRACKABLE_MS: f64 = 0.001;

/// Largest latency kept at full accuracy, in milliseconds (about 11.6 days).
/// Larger values are clamped: a request that slow is an outage, not a percentile.
pub const MAX_TRACKABLE_MS: f64 = 1e9;

/// A mergeable, log-bucketed latency histogram in milliseconds.
///
/// Bucket `i` holds values in `(γ^(i-1), γ^i]` with `γ = (1+α)/(1-α)`, and
/// reports `2γ^i/(γ+1)`, which is within α of anything in the bucket. Buckets
/// are absolute, not relative to the data, so two histograms merge by adding
/// counts: merge is associative and commutative, and a merged histogram is
/// exactly the one built from all values at once. Counts are stored densely
/// between the lowest and highest used bucket; a minute of one route rarely
/// spans more than a few hundred buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Values below [`MIN_TRACKABLE_MS`], including zero.
    #[serde(default, rename = "z")]
    zero: u64,
    /// Index of `counts[0]`.
    #[serde(default, rename = "o")]
    offset: i32,
    /// Dense counts; never starts or ends with a zero, so equal histograms
    /// have equal representations. Stored with runs of empty buckets
    /// folded ([`zero_runs`]).
    #[serde(default, rename = "c", with = "zero_runs")]
    counts: Vec<u64>,
}

/// Most buckets a histogram spans (checked by [`Histogram::validate`], and
/// while decoding, so a hostile run length allocates nothing).
const MAX_BUCKETS: usize = 1 << 16;

/// The stored form of the dense counts: a run of `k ≥ 2` empty buckets is
/// written as the one number `-k`. A minute of one route fills a few dozen
/// of the hundred-odd buckets between its fastest and slowest request, so
/// the dense array was mostly zeros: folded, a url rollup's body is about
/// a third smaller and decodes with a fifth of the numbers (what the
/// hourly compactor spends most of its time on). Counts are never negative,
/// so an array written before folding (all counts, zeros spelled out)
/// reads back unchanged.
mod zero_runs {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, Serializer};

    pub(super) fn serialize<S: Serializer>(counts: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let mut cells = 0;
        let mut zeros = 0usize;
        for &c in counts {
            if c == 0 {
                zeros += 1;
                continue;
            }
            cells += usize::from(zeros > 0) + 1;
            zeros = 0;
        }
        cells += usize::from(zeros > 0);
        let mut seq = s.serialize_seq(Some(cells))?;
        let mut zeros = 0usize;
        let flush = |seq: &mut S::SerializeSeq, zeros: usize| match zeros {
            0 => Ok(()),
            1 => seq.serialize_element(&0u64),
            k => seq.serialize_element(&-(k as i64)),
        };
        for &c in counts {
            if c == 0 {
                zeros += 1;
                continue;
            }
            flush(&mut seq, zeros)?;
            zeros = 0;
            seq.serialize_element(&c)?;
        }
        flush(&mut seq, zeros)?;
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        d.deserialize_seq(Cells)
    }

    struct Cells;

    impl<'de> Visitor<'de> for Cells {
        type Value = Vec<u64>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of bucket counts, with -k for k empty buckets")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(super::MAX_BUCKETS));
            while let Some(cell) = seq.next_element::<Cell>()? {
                let grow = match cell {
                    Cell::Count(c) => {
                        out.push(c);
                        continue;
                    }
                    Cell::Zeros(k) => k,
                };
                if grow > super::MAX_BUCKETS.saturating_sub(out.len()) {
                    return Err(A::Error::custom("histogram spans too many buckets"));
                }
                out.resize(out.len() + grow, 0);
            }
            if out.len() > super::MAX_BUCKETS {
                return Err(A::Error::custom("histogram spans too many buckets"));
            }
            Ok(out)
        }
    }

    /// One number of the stored form.
    enum Cell {
        Count(u64),
        Zeros(usize),
    }

    impl<'de> serde::Deserialize<'de> for Cell {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
            d.deserialize_i64(CellVisitor)
        }
    }

    struct CellVisitor;

    impl Visitor<'_> for CellVisitor {
        type Value = Cell;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a bucket count or -k for k empty buckets")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<Cell, E> {
            Ok(Cell::Count(v))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<Cell, E> {
            if v >= 0 {
                return Ok(Cell::Count(v as u64));
            }
            usize::try_from(v.unsigned_abs())
                .map(Cell::Zeros)
                .map_err(|_| E::custom("histogram spans too many buckets"))
        }
    }
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn ln_gamma() -> f64 {
    gamma().ln()
}

fn index_of(ms: f64) -> i32 {
    (ms.ln() / ln_gamma()).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (g + 1.0)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one latency in milliseconds. NaN and negative values count as
    /// zero rather than being lost: the event still happened.
    pub fn record(&mut self, ms: f64) {
        self.record_n(ms, 1);
    }

    /// Records `n` occurrences of the same latency.
    pub fn record_n(&mut self, ms: f64, n: u64) {
        if n == 0 {
            return;
        }
        if ms.is_nan() || ms < MIN_TRACKABLE_MS {
            self.zero += n;
            return;
        }
        let idx = index_of(ms.min(MAX_TRACKABLE_MS));
        self.add_at(idx, n);
    }

    fn add_at(&mut self, idx: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
        }
        self.counts[pos] += n;
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        self.zero += other.zero;
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add_at(other.offset + i as i32, c);
            }
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.zero + self.counts.iter().sum::<u64>()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.zero == 0 && self.counts.is_empty()
    }

    /// The value at quantile `q` (0.0 ..= 1.0), within [`RELATIVE_ACCURACY`]
    /// of the true value at the lower rank `⌊q·(n-1)⌋`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (n - 1) as f64).floor() as u64;
        if rank < self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(value_of(self.offset + i as i32));
            }
        }
        // Unreachable while counts sum to n; answer the top bucket regardless.
        self.counts
            .len()
            .checked_sub(1)
            .map(|last| value_of(self.offset + last as i32))
    }

    /// The `(bucket value, count)` pairs, lowest first, zero bucket as `0.0`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let zero = (self.zero > 0).then_some((0.0, self.zero));
        zero.into_iter().chain(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &c)| (value_of(self.offset + i as i32), c)),
        )
    }

    /// Checks a histogram read from storage or the wire: the dense form must
    /// not start or end with an empty bucket, and the span must fit in i32.
    /// Returns a description of the first problem.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.counts.first() == Some(&0) || self.counts.last() == Some(&0) {
            return Err("histogram counts start or end with zero");
        }
        if self.counts.len() > MAX_BUCKETS {
            return Err("histogram spans too many buckets");
        }
        if i64::from(self.offset) + self.counts.len() as i64 > i64::from(i32::MAX) {
            return Err("histogram bucket index overflows");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    fn build(values: &[f64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    /// Latencies spread log-uniformly from 1 µs to 1 h.
    fn latency() -> impl Strategy<Value = f64> {
        (-3.0f64..6.556).prop_map(|e| 10f64.powf(e))
    }

    #[test]
    fn empty_has_no_quantiles() {
        assert_eq!(Histogram::new().quantile(0.5), None);
        assert!(Histogram::new().is_empty());
    }

    #[test]
    fn zero_and_negative_are_counted() {
        let h = build(&[0.0, -1.0, f64::NAN, 5.0]);
        assert_eq!(h.count(), 4);
        assert_eq!(h.quantile(0.0), Some(0.0));
    }

    #[test]
    fn serde_form_is_compact_and_round_trips() {
        let h = build(&[1.0, 1.0, 2.0]);
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.starts_with("{\"z\":0,\"o\":"), "{json}");
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(back.validate().is_ok());
    }

    #[test]
    fn runs_of_empty_buckets_are_folded_and_the_dense_form_still_reads() {
        let h = build(&[1.0, 1.0, 2.0, 100.0]);
        let json = serde_json::to_string(&h).unwrap();
        let c: serde_json::Value = serde_json::from_str(&json).unwrap();
        let cells: Vec<i64> = c["c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let dense = h.counts.len() as i64;
        assert!(cells.len() <= 5, "{json}");
        assert_eq!(
            cells
                .iter()
                .map(|&v| if v < 0 { -v } else { 1 })
                .sum::<i64>(),
            dense,
            "{json}"
        );
        let spelled = serde_json::json!({"z": 0, "o": h.offset, "c": h.counts});
        let old: Histogram = serde_json::from_value(spelled).unwrap();
        assert_eq!(old, h, "a body written before folding reads the same");
        let single = serde_json::to_string(&Histogram {
            zero: 0,
            offset: 3,
            counts: vec![1, 0, 2],
        })
        .unwrap();
        assert!(single.ends_with("\"c\":[1,0,2]}"), "{single}");
    }

    #[test]
    fn a_hostile_run_length_is_an_error_not_an_allocation() {
        for c in ["[1,-9223372036854775807,1]", "[1,-65536,1]", "[1,\"x\"]"] {
            let json = format!("{{\"z\":0,\"o\":0,\"c\":{c}}}");
            assert!(serde_json::from_str::<Histogram>(&json).is_err(), "{c}");
        }
        let ok: Histogram = serde_json::from_str("{\"z\":0,\"o\":0,\"c\":[1,-3,2]}").unwrap();
        assert_eq!(ok.counts, vec![1, 0, 0, 0, 2]);
    }

    proptest! {
        #[test]
        fn folded_form_round_trips(values in prop::collection::vec(latency(), 0..200)) {
            let h = build(&values);
            let back: Histogram = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
            prop_assert_eq!(back, h);
        }

        #[test]
        fn quantiles_within_two_percent(values in prop::collection::vec(latency(), 1..400), q in 0.0f64..=1.0) {
            let h = build(&values);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let exact = exact_quantile(&sorted, q);
            let est = h.quantile(q).unwrap();
            prop_assert!((est - exact).abs() <= 0.02 * exact, "q={q} exact={exact} est={est}");
        }

        #[test]
        fn every_single_value_within_bound(v in latency()) {
            let est = build(&[v]).quantile(0.5).unwrap();
            prop_assert!((est - v).abs() <= RELATIVE_ACCURACY * v * 1.000_001);
        }

        #[test]
        fn merge_equals_building_at_once(a in prop::collection::vec(latency(), 0..100), b in prop::collection::vec(latency(), 0..100)) {
            let mut merged = build(&a);
            merged.merge(&build(&b));
            let all: Vec<f64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged, build(&all));
        }

        #[test]
        fn merge_is_commutative_and_associative(
            a in prop::collection::vec(latency(), 0..60),
            b in prop::collection::vec(latency(), 0..60),
            c in prop::collection::vec(latency(), 0..60),
        ) {
            let (ha, hb, hc) = (build(&a), build(&b), build(&c));
            let mut ab = ha.clone();
            ab.merge(&hb);
            let mut ba = hb.clone();
            ba.merge(&ha);
            prop_assert_eq!(&ab, &ba);

            let mut ab_c = ab.clone();
            ab_c.merge(&hc);
            let mut bc = hb.clone();
            bc.merge(&hc);
            let mut a_bc = ha.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(ab_c.clone(), a_bc);
            prop_assert!(ab_c.validate().is_ok());
        }
    }
}
