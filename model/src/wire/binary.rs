//! The agent's binary batch encoding (being written).
