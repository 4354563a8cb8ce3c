//! The built-in controllers the simulator runs: Deployments and garbage collection.
//! Both are synchronous passes over the store, run on every change and on a timer.

pub mod deployment;
pub mod gc;
