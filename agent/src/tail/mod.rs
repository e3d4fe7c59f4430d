//! tail (being written).
