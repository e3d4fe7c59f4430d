//! End-to-end and fault-injection tests across real processes: a real
//! Elasticsearch, a real SMTP server, real agents and collectors. Nothing
//! depends on this crate; its tests live in `tests/tests/`.
