//! The parts of the `weave` binary that tests drive directly.

pub mod control;
pub mod eventloop;
pub mod outlet;
pub mod segment;
pub mod stack;
pub mod sys;
pub mod vnet;
