//! `panorama`: collector, rules and dashboard in one process (being wired).
fn main() {}
