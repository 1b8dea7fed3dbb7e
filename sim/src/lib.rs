//! weave-sim: a deterministic multi-host network simulator driving the real router core.
//!
//! One single-threaded discrete-event loop owns virtual time, every random stream (derived
//! from one seed) and every delivery. The same scenario, seed and build give the same event
//! trace, bit for bit. See `docs/scenarios.md` for the scenario format.

pub mod check;
pub mod explore;
pub mod lan;
pub mod net;
pub mod queue;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod share;
pub mod stats;
pub mod trace;
pub mod world;

pub use run::{run, run_reported, Outcome};
pub use scenario::Scenario;
pub use trace::Trace;
pub use world::World;
