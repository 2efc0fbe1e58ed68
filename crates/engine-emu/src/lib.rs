//! placeholder

pub mod irq;
