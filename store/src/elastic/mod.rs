//! Elasticsearch backend (being written).
