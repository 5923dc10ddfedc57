//! Names people write in configs and URLs: event topics and triggers. Checked once, where
//! they come in (the config, an API path), so nothing further down needs to.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest topic name.
pub const MAX_TOPIC: usize = 128;
/// Longest trigger name: short, because event-trigger instance ids contain it.
pub const MAX_TRIGGER_NAME: usize = 64;

/// Whether `topic` is a topic name: 1 to 128 of `A-Z a-z 0-9 . _ - :`, not starting with
/// a punctuation mark.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC
        && topic.as_bytes()[0].is_ascii_alphanumeric()
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a topic name: use 1 to {MAX_TOPIC} of A-Z a-z 0-9 . _ - :, starting with a letter or digit",
            topic.chars().take(MAX_TOPIC + 8).collect::<String>()
        ))
    }
}

/// Whether `name` is a trigger name: 1 to 64 of `a-z A-Z 0-9 -`, starting with a letter or
/// digit (no `_` or `.`: a trigger's instance ids are `t_<trigger>_<event id>`).
pub fn check_trigger_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TRIGGER_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a trigger name: use 1 to {MAX_TRIGGER_NAME} of a-z A-Z 0-9 -, starting with a letter or digit"
        ))
    }
}

/// A checked topic name (see [`check_topic`]); a config with a bad one fails to load at the
/// line that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TopicName(String);

impl TopicName {
    /// `topic` if it is a topic name.
    pub fn new(topic: &str) -> Result<Self, String> {
        check_topic(topic)?;
        Ok(TopicName(topic.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TopicName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicName::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A checked trigger name (see [`check_trigger_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TriggerName(String);

impl TriggerName {
    /// `name` if it is a trigger name.
    pub fn new(name: &str) -> Result<Self, String> {
        check_trigger_name(name)?;
        Ok(TriggerName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TriggerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TriggerName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TriggerName::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Longest instance id the API takes.
const MAX_ID: usize = 256;

/// The id of the instance event trigger `trigger` starts for event `event`: the same on
/// every delivery of that event, so a redelivery (after a crash) attaches instead of
/// starting a second one. `t_<trigger>_<event id>`, or, past 256 characters (an event of an
/// instance with a long caller-chosen id), `t_<trigger>_x<digest of the event id>` (no event id has that form).
pub fn trigger_instance_id(trigger: &str, event: &str) -> String {
    let id = format!("t_{trigger}_{event}");
    if id.len() <= MAX_ID {
        return id;
    }
    let digest = Sha256::digest(event.as_bytes());
    format!("t_{trigger}_x{}", hex::encode(&digest[..16]))
}

/// The id of the instance schedule trigger `trigger` starts for its fire at `at_ms`.
pub fn fire_instance_id(trigger: &str, at_ms: u64) -> String {
    format!("s_{trigger}_{at_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_trigger_names_are_checked() {
        assert!(check_topic("prices").is_ok());
        assert!(check_topic("orders.eu:v2").is_ok());
        for bad in ["", ".x", "a b", "a/b", "ü", &"x".repeat(129)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
        assert!(check_trigger_name("on-price").is_ok());
        for bad in ["", "-x", "a_b", "a.b", &"x".repeat(65)] {
            assert!(check_trigger_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(trigger_instance_id("t1", "01AB.3"), "t_t1_01AB.3");
        let long = format!("{}.3", "a".repeat(300));
        let id = trigger_instance_id("t1", &long);
        assert!(id.len() <= 256 && id.starts_with("t_t1_x"), "{id}");
        assert_eq!(id, trigger_instance_id("t1", &long));
    }
}
