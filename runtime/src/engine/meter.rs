//! One instance's use of its limits: memory and tables (as the store's resource limiter),
//! guest CPU time (counted in epoch ticks), children started, output size.

use std::time::Duration;

use crate::model::{EPOCH_TICK, LimitExceeded, Limits};

/// Tracks an instance against its [`Limits`]; remembers the first limit it broke.
#[derive(Debug)]
pub struct Meter {
    limits: Limits,
    exceeded: Option<LimitExceeded>,
    children: u32,
    journal: u32,
    slice_ticks: u32,
    total_ticks: u32,
}

fn ticks(d: Duration) -> u32 {
    u32::try_from(d.as_millis() / EPOCH_TICK.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Meter {
    /// A fresh meter for `limits`.
    pub fn new(limits: Limits) -> Self {
        Meter {
            limits,
            exceeded: None,
            children: 0,
            journal: 0,
            slice_ticks: 0,
            total_ticks: 0,
        }
    }

    /// The first limit this instance broke, if any.
    pub fn exceeded(&self) -> Option<&LimitExceeded> {
        self.exceeded.as_ref()
    }

    /// Note a broken limit (the first one is the one reported) and return it.
    fn exceed(&mut self, e: LimitExceeded) -> LimitExceeded {
        self.exceeded.get_or_insert_with(|| e.clone());
        e
    }

    /// The guest called the host: its current stretch of uninterrupted guest code ends.
    pub fn host_call(&mut self) {
        self.slice_ticks = 0;
    }

    /// An epoch tick passed while guest code ran. Time is counted in whole ticks, so it may
    /// overcount by at most one tick per stretch of guest code.
    pub fn tick(&mut self) -> Result<(), LimitExceeded> {
        self.slice_ticks += 1;
        self.total_ticks += 1;
        if self.total_ticks >= ticks(self.limits.cpu_total) {
            return Err(self.exceed(LimitExceeded::CpuTotal {
                limit: self.limits.cpu_total,
            }));
        }
        if self.slice_ticks >= ticks(self.limits.cpu_slice) {
            return Err(self.exceed(LimitExceeded::CpuSlice {
                limit: self.limits.cpu_slice,
            }));
        }
        Ok(())
    }

    /// The guest made a host call that the journal records (`entries` of them at once for
    /// a fan-out). Its current stretch of uninterrupted guest code ends too.
    pub fn journaled(&mut self, entries: usize) -> Result<(), LimitExceeded> {
        self.host_call();
        let entries = u32::try_from(entries).unwrap_or(u32::MAX);
        if self.journal.saturating_add(entries) > self.limits.journal {
            return Err(self.exceed(LimitExceeded::Journal {
                limit: self.limits.journal,
            }));
        }
        self.journal += entries;
        Ok(())
    }

    /// The instance wants to start one more subflow.
    pub fn child_started(&mut self) -> Result<(), LimitExceeded> {
        if self.children >= self.limits.children {
            return Err(self.exceed(LimitExceeded::Children {
                limit: self.limits.children,
            }));
        }
        self.children += 1;
        Ok(())
    }

    /// The instance returned `size` bytes of output.
    pub fn check_output(&mut self, size: usize) -> Result<(), LimitExceeded> {
        let size = size as u64;
        if size > self.limits.output {
            return Err(self.exceed(LimitExceeded::Output {
                limit: self.limits.output,
                size,
            }));
        }
        Ok(())
    }
}

impl wasmtime::ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory {
            let e = self.exceed(LimitExceeded::Memory {
                limit: self.limits.memory,
                wanted: desired as u64,
            });
            return Err(wasmtime::Error::msg(e.to_string()));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > u64::from(self.limits.table_elements) {
            let e = self.exceed(LimitExceeded::TableElements {
                limit: self.limits.table_elements,
                wanted: desired as u64,
            });
            return Err(wasmtime::Error::msg(e.to_string()));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn cpu_slice_resets_at_host_calls_but_total_does_not() {
        let limits = Limits {
            cpu_slice: EPOCH_TICK * 3,
            cpu_total: EPOCH_TICK * 5,
            ..Limits::default()
        };
        let mut m = Meter::new(limits);
        m.tick().unwrap();
        m.tick().unwrap();
        m.host_call();
        m.tick().unwrap();
        m.tick().unwrap();
        assert_eq!(
            m.tick(),
            Err(LimitExceeded::CpuTotal {
                limit: EPOCH_TICK * 5
            })
        );
        let mut m = Meter::new(limits);
        m.tick().unwrap();
        m.tick().unwrap();
        assert_eq!(
            m.tick(),
            Err(LimitExceeded::CpuSlice {
                limit: EPOCH_TICK * 3
            })
        );
        assert_eq!(
            m.exceeded(),
            Some(&LimitExceeded::CpuSlice {
                limit: EPOCH_TICK * 3
            })
        );
    }

    #[test]
    fn memory_children_and_output() {
        let mut m = Meter::new(Limits {
            memory: 2 << 20,
            children: 1,
            output: 10,
            ..Limits::default()
        });
        assert!(m.memory_growing(0, 1 << 20, None).unwrap());
        let e = m
            .memory_growing(1 << 20, 3 << 20, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "limit exceeded: memory = 2.0 MiB (tried to grow to 3.0 MiB)"
        );
        let e = m.table_growing(10, 20_001, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "limit exceeded: table-elements = 20000 (tried to grow to 20001)"
        );
        m.child_started().unwrap();
        assert_eq!(m.child_started(), Err(LimitExceeded::Children { limit: 1 }));
        assert_eq!(
            m.check_output(11),
            Err(LimitExceeded::Output {
                limit: 10,
                size: 11
            })
        );
        let mut j = Meter::new(Limits {
            journal: 3,
            ..Limits::default()
        });
        j.journaled(2).unwrap();
        assert_eq!(j.journaled(2), Err(LimitExceeded::Journal { limit: 3 }));
        // The first limit broken is the one reported.
        assert!(matches!(m.exceeded(), Some(LimitExceeded::Memory { .. })));
    }
}
