//! Scenario files live beside this crate; its tests run every one of them.
