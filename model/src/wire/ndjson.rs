//! NDJSON events for third parties (being written).
