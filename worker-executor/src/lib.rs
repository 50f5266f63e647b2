
pub mod runtime;
