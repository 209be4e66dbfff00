//! Warehouse conformance suite (being written).
