//! An engine's world in one tempdir: a rules directory, a state directory
//! and a real SQLite store, with the engine driven on synthetic times.

use std::path::PathBuf;
use std::sync::Arc;

use panorama_model::Rollup;
use panorama_rules::engine::{Engine, EngineConfig};
use panorama_store::Store;
use panorama_store::sqlite::SqliteStore;

/// A rules directory, a state directory and a store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
}

impl Env {
    /// `rules` as `rules/rules.toml`, and an empty store.
    pub fn new(rules: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::write(dir.path().join("rules/rules.toml"), rules).expect("rule file");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("data")).expect("sqlite store"));
        Env { dir, store }
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    pub fn write_rules(&self, file: &str, text: &str) {
        std::fs::write(self.rules_dir().join(file), text).expect("rule file");
    }

    /// Opens an engine on these directories (again, after a "restart"),
    /// and checks that the rules loaded.
    pub async fn open(&self) -> Engine {
        let engine = self.open_as_is();
        let v = engine.view(0).await;
        assert!(
            v.rule_errors.is_empty(),
            "test rules do not load: {:?}",
            v.rule_errors
        );
        assert!(!v.rules.is_empty(), "no rules loaded");
        engine
    }

    /// Opens an engine whatever the state of the rules directory.
    pub fn open_as_is(&self) -> Engine {
        let mut cfg = EngineConfig::new(self.rules_dir(), self.dir.path().join("state"));
        // Synthetic times step just past minute starts, with the data
        // already written: no ingest lag to wait out.
        cfg.open_minute_lag_ms = 0;
        Engine::open(cfg, self.store.clone()).expect("engine")
    }

    /// Writes rollups and makes them visible.
    pub async fn write(&self, rollups: &[Rollup]) {
        self.store.write_rollups(rollups).await.expect("write");
        self.store.sync().await.expect("sync");
    }
}
