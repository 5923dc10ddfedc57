//! Units written by people: durations like `30s`, and the engine's time slice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often the engine's epoch advances: the time slice of a CPU-bound guest, and the
/// granularity of CPU limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A duration written like `30s`, `500ms` or `2m`, never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HumanDuration(#[serde(serialize_with = "serialize_duration")] pub Duration);

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write it like \"30s\", \"500ms\" or \"2m\""
            ))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a duration must be longer than zero",
            ));
        }
        Ok(HumanDuration(duration))
    }
}

/// Now, in unix milliseconds: the one clock of journaled times (deadlines, timestamps).
pub fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
