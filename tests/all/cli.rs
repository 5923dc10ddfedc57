//! The `sluice` binary: bad input gets a one-line error and a non-zero exit, never a panic.
