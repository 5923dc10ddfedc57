//! Per-flow resource limits: node-wide defaults in `[limits]`, overridden per flow.
//!
//! Each limit, when exceeded, ends only the offending instance, with a [`LimitExceeded`]
//! error naming the limit and its value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::units::{EPOCH_TICK, HumanDuration};

/// Limits as written in `[limits]` or a flow's `limits = { … }`: every key optional.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Linear memory of one instance, e.g. "64 MiB".
    pub memory: Option<Bytes>,
    /// Elements of any one table.
    pub table_elements: Option<u32>,
    /// Longest stretch of guest code without a host call, e.g. "2s".
    pub cpu_slice: Option<HumanDuration>,
    /// Guest code time of one instance in total, e.g. "5m".
    pub cpu_total: Option<HumanDuration>,
    /// Largest input payload, e.g. "1 MiB".
    pub input: Option<Bytes>,
    /// Largest output payload.
    pub output: Option<Bytes>,
    /// Most subflows one instance may start.
    pub children: Option<u32>,
    /// Most journaled host calls (subflow starts and results, time, randomness, sleeps,
    /// progress) one instance may make.
    pub journal: Option<u32>,
}

/// The limits in force for one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory bytes.
    pub memory: u64,
    /// Table elements.
    pub table_elements: u32,
    /// Guest code without a host call.
    pub cpu_slice: Duration,
    /// Guest code in total.
    pub cpu_total: Duration,
    /// Input payload bytes.
    pub input: u64,
    /// Output payload bytes.
    pub output: u64,
    /// Subflows started.
    pub children: u32,
    /// Journaled host calls.
    pub journal: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            table_elements: 20_000,
            cpu_slice: Duration::from_secs(5),
            cpu_total: Duration::from_secs(300),
            input: 1 << 20,
            output: 1 << 20,
            children: 10_000,
            journal: 1_000_000,
        }
    }
}

impl Limits {
    /// These limits with every key `config` sets replaced.
    pub fn overridden_by(self, config: &LimitsConfig) -> Limits {
        Limits {
            memory: config.memory.map_or(self.memory, |b| b.0),
            table_elements: config.table_elements.unwrap_or(self.table_elements),
            cpu_slice: config.cpu_slice.map_or(self.cpu_slice, |d| d.0),
            cpu_total: config.cpu_total.map_or(self.cpu_total, |d| d.0),
            input: config.input.map_or(self.input, |b| b.0),
            output: config.output.map_or(self.output, |b| b.0),
            children: config.children.unwrap_or(self.children),
            journal: config.journal.unwrap_or(self.journal),
        }
    }

    /// Check ranges; `at` names where the limits were written (`limits`, `flows[2].limits`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        let bytes = |key: &str, v: u64, min: u64, max: u64| {
            if v < min || v > max {
                Err(format!(
                    "{at}.{key} = {}: must be between {} and {}",
                    ByteSize(v),
                    ByteSize(min),
                    ByteSize(max)
                ))
            } else {
                Ok(())
            }
        };
        bytes("memory", self.memory, 1 << 20, 4 << 30)?;
        bytes("input", self.input, 1, 1 << 30)?;
        bytes("output", self.output, 1, 1 << 30)?;
        if self.journal == 0 {
            return Err(format!("{at}.journal = 0: must be at least 1"));
        }
        if self.table_elements == 0 {
            return Err(format!("{at}.table-elements = 0: must be at least 1"));
        }
        if self.cpu_slice < EPOCH_TICK {
            return Err(format!(
                "{at}.cpu-slice: must be at least {:?}, the epoch tick",
                EPOCH_TICK
            ));
        }
        if self.cpu_total < self.cpu_slice {
            return Err(format!(
                "{at}.cpu-total: must not be shorter than cpu-slice"
            ));
        }
        Ok(())
    }
}

/// A byte count written like `64 MiB`, `512KiB`, `1 MB` or `1048576`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u64::try_from(n)
                .map(Bytes)
                .map_err(|_| serde::de::Error::custom(format!("{n}: a size cannot be negative"))),
            Raw::Text(text) => ByteSize::from_str(text.trim())
                .map(|b| Bytes(b.0))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not a size ({e}); write it like \"64 MiB\" or \"512KiB\""
                    ))
                }),
        }
    }
}

/// Which limit an instance exceeded, with the limit's value and what was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitExceeded {
    /// Linear memory would grow past `limit` bytes.
    Memory { limit: u64, wanted: u64 },
    /// A table would grow past `limit` elements.
    TableElements { limit: u32, wanted: u64 },
    /// Guest code ran `limit` without a host call.
    CpuSlice { limit: Duration },
    /// Guest code ran `limit` in total.
    CpuTotal { limit: Duration },
    /// The input was `size` bytes.
    Input { limit: u64, size: u64 },
    /// The output was `size` bytes.
    Output { limit: u64, size: u64 },
    /// One more subflow would pass `limit`.
    Children { limit: u32 },
    /// One more journaled host call would pass `limit`.
    Journal { limit: u32 },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            LimitExceeded::Memory { limit, wanted } => {
                write!(
                    f,
                    "limit exceeded: memory = {} (tried to grow to {})",
                    ByteSize(*limit),
                    ByteSize(*wanted)
                )
            }
            LimitExceeded::TableElements { limit, wanted } => {
                write!(
                    f,
                    "limit exceeded: table-elements = {limit} (tried to grow to {wanted})"
                )
            }
            LimitExceeded::CpuSlice { limit } => {
                write!(
                    f,
                    "limit exceeded: cpu-slice = {} (guest code ran that long without a host call)",
                    d(limit)
                )
            }
            LimitExceeded::CpuTotal { limit } => {
                write!(f, "limit exceeded: cpu-total = {}", d(limit))
            }
            LimitExceeded::Input { limit, size } => {
                write!(
                    f,
                    "limit exceeded: input = {} (the input is {})",
                    ByteSize(*limit),
                    ByteSize(*size)
                )
            }
            LimitExceeded::Output { limit, size } => {
                write!(
                    f,
                    "limit exceeded: output = {} (the output is {})",
                    ByteSize(*limit),
                    ByteSize(*size)
                )
            }
            LimitExceeded::Children { limit } => write!(f, "limit exceeded: children = {limit}"),
            LimitExceeded::Journal { limit } => {
                write!(f, "limit exceeded: journal = {limit} host calls")
            }
        }
    }
}

impl std::error::Error for LimitExceeded {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        limits: LimitsConfig,
    }

    fn parse(text: &str) -> Result<LimitsConfig, String> {
        toml::from_str::<Wrapper>(text)
            .map(|w| w.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        let c = parse("[limits]\nmemory = \"16 MiB\"\ninput = \"512KiB\"\noutput = 2048\ncpu-slice = \"250ms\"\n").unwrap();
        let l = Limits::default().overridden_by(&c);
        assert_eq!((l.memory, l.input, l.output), (16 << 20, 512 << 10, 2048));
        assert_eq!(l.cpu_slice, Duration::from_millis(250));
        assert_eq!(l.children, Limits::default().children);
    }

    #[test]
    fn bad_units_and_keys_are_named() {
        let e = parse("[limits]\nmemory = \"lots\"\n").unwrap_err();
        assert!(e.contains("`lots` is not a size"), "{e}");
        let e = parse("[limits]\nmemory = -1\n").unwrap_err();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = parse("[limits]\nfuel = 10\n").unwrap_err();
        assert!(e.contains("unknown field `fuel`"), "{e}");
    }

    #[test]
    fn ranges_are_checked() {
        let l = Limits {
            memory: 1024,
            ..Limits::default()
        };
        let e = l.validate("flows[0].limits").unwrap_err();
        assert!(
            e.starts_with("flows[0].limits.memory = 1.0 KiB: must be between"),
            "{e}"
        );
        let l = Limits {
            cpu_slice: Duration::from_millis(1),
            ..Limits::default()
        };
        assert!(l.validate("limits").unwrap_err().contains("cpu-slice"));
        let l = Limits {
            cpu_total: Duration::from_secs(1),
            cpu_slice: Duration::from_secs(2),
            ..Limits::default()
        };
        assert!(l.validate("limits").unwrap_err().contains("cpu-total"));
    }
}
