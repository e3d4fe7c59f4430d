//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! Each case is a public async function taking a store that is empty as far
//! as the case can tell (backends isolate cases by directory or index
//! prefix). A backend's integration test expands [`conformance_tests!`] with
//! an opener, which yields one `#[tokio::test]` per case, so the test output
//! names every case for every backend.
//!
//! ```ignore
//! async fn open(case: &str) -> MyHarness { /* a fresh, isolated store */ }
//! panorama_store::conformance_tests!(open);
//! ```

use async_trait::async_trait;

use crate::Store;

/// A store opened for one case, and how to clean up after it.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn Store;
    /// Removes what the case wrote (called only when the case passed, so a
    /// failure leaves its data behind to look at).
    async fn teardown(self);
}

/// Expands to one `#[tokio::test]` per conformance case. `$open` is an async
/// fn `(case: &str) -> impl Harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@cases $open;
            writes_and_reads_series,
        );
    };
    (@cases $open:path; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                use $crate::conformance::Harness as _;
                let h = $open(stringify!($case)).await;
                $crate::conformance::$case(h.store()).await;
                h.teardown().await;
            }
        )*
    };
}

/// Rollups written are read back, per minute, as the points they make.
pub async fn writes_and_reads_series(store: &dyn Store) {
    let _ = store;
    todo!("conformance case being written")
}
