//! `[[triggers.http]]`, `[[triggers.event]]`, `[[triggers.schedule]]`: the ways in besides
//! the API. Names, topics, cron expressions and zones are checked as they are read (an
//! error names the line); references to flows and the uniqueness of names and routes are
//! checked against the whole file, still naming the line of the value at fault.
//!
//! ```toml
//! [[triggers.http]]
//! name = "quote"
//! path = "/hooks/quote"      # method POST by default
//! flow = "pricer"
//! mode = "high"              # normal | high
//! wait = "10s"               # then 202 with the instance's Location
//! permission = "start:pricer"   # the default; or public = true
//!
//! [[triggers.event]]
//! name = "on-order"
//! topic = "orders"
//! flow = "fulfil"
//!
//! [[triggers.schedule]]
//! name = "nightly"
//! cron = "0 2 * * *"
//! zone = "Europe/Zurich"
//! flow = "report"
//! input = { kind = "daily" }
//! missed = "run-once"        # skip | run-once | run-all (within catch-up)
//! catch-up = "6h"
//! overlap = "skip"           # skip | buffer-one | allow
//! ```

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::FlowConfig;
use crate::model::{HumanDuration, Permission, Priority, TopicName, TriggerName};

/// Routes of the node's own API that a URL trigger may not take.
const RESERVED_PATHS: &[&str] = &["/v1", "/metrics", "/healthz", "/readyz"];

/// `[triggers]`: every trigger of the node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TriggersSection {
    /// URL triggers: an HTTP request starts a flow and is answered with its output.
    #[serde(default)]
    pub http: Vec<HttpTriggerConfig>,
    /// Event triggers: every event on a topic starts one instance of a flow.
    #[serde(default)]
    pub event: Vec<EventTriggerConfig>,
    /// Schedule triggers: a cron expression in a time zone starts a flow.
    #[serde(default)]
    pub schedule: Vec<ScheduleTriggerConfig>,
}

/// How urgently a trigger's instances run (the seeds' *Execute Mode*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecuteMode {
    /// Normal priority.
    #[default]
    Normal,
    /// High priority: the `high-priority` pool when it exists, else ahead of the queue.
    High,
}

impl From<ExecuteMode> for Priority {
    fn from(mode: ExecuteMode) -> Self {
        match mode {
            ExecuteMode::Normal => Priority::Normal,
            ExecuteMode::High => Priority::High,
        }
    }
}

/// An HTTP method a URL trigger answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET` (the input is `null`: a GET has no body).
    Get,
    /// `POST`, the default.
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        })
    }
}

/// `[[triggers.http]]`: a path and method mapped to a flow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpTriggerConfig {
    /// Unique among all triggers.
    pub name: Spanned<TriggerName>,
    /// The URL path, e.g. `/hooks/quote`; not under `/v1` nor one of the node's own routes.
    pub path: Spanned<String>,
    /// The method (default `POST`).
    #[serde(default)]
    pub method: HttpMethod,
    /// The flow started, with the request body as its input.
    pub flow: Spanned<String>,
    /// `normal` or `high`.
    #[serde(default)]
    pub mode: ExecuteMode,
    /// How long the request waits for the flow's outcome before it is answered 202.
    #[serde(default = "default_wait")]
    pub wait: HumanDuration,
    /// Anyone may call it, without a token. Must be said explicitly.
    #[serde(default)]
    pub public: bool,
    /// The permission a caller's token needs (default `start:<flow>`).
    #[serde(default)]
    pub permission: Option<Spanned<String>>,
}

fn default_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl HttpTriggerConfig {
    /// The permission a caller needs; `None` for a public trigger.
    pub fn needed(&self) -> Option<Permission> {
        if self.public {
            return None;
        }
        Some(match &self.permission {
            Some(p) => p
                .get_ref()
                .parse()
                .unwrap_or(Permission::Start(Some(self.flow.get_ref().clone()))),
            None => Permission::Start(Some(self.flow.get_ref().clone())),
        })
    }
}

/// `[[triggers.event]]`: a topic's events each start one instance of a flow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventTriggerConfig {
    /// Unique among all triggers.
    pub name: Spanned<TriggerName>,
    /// The topic it subscribes to.
    pub topic: TopicName,
    /// The flow started with each event's payload as its input.
    pub flow: Spanned<String>,
    /// `normal` or `high`.
    #[serde(default)]
    pub mode: ExecuteMode,
}

/// What a schedule does about fires it missed while the node was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedRun {
    /// Forget them; the next fire is the next one due.
    #[default]
    Skip,
    /// Run once for all of them (the latest missed fire within the catch-up window).
    RunOnce,
    /// Run each missed fire within the catch-up window.
    RunAll,
}

/// What a schedule does when a fire comes while its previous run has not ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Skip the fire.
    #[default]
    Skip,
    /// Keep one fire waiting; it starts when the previous run ends (later fires meanwhile
    /// are skipped).
    BufferOne,
    /// Start it anyway.
    Allow,
}

/// A cron expression, parsed (five fields, or an alias like `@hourly`).
#[derive(Debug, Clone)]
pub struct CronExpr {
    /// As written.
    pub text: String,
    /// Parsed.
    pub cron: croner::Cron,
}

impl Serialize for CronExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let cron = croner::Cron::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a cron expression ({e}); write five fields, like \"0 2 * * *\""
            ))
        })?;
        Ok(CronExpr { text, cron })
    }
}

/// A time zone of the IANA database, like `Europe/Zurich` or `UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(pub chrono_tz::Tz);

impl Default for Zone {
    fn default() -> Self {
        Zone(chrono_tz::UTC)
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<chrono_tz::Tz>().map(Zone).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not a time zone; write an IANA name like \"Europe/Zurich\" or \"UTC\""
            ))
        })
    }
}

/// `[[triggers.schedule]]`: a flow started on a timetable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleTriggerConfig {
    /// Unique among all triggers.
    pub name: Spanned<TriggerName>,
    /// When it fires.
    pub cron: CronExpr,
    /// The zone the expression is read in (default UTC).
    #[serde(default)]
    pub zone: Zone,
    /// The flow started at each fire.
    pub flow: Spanned<String>,
    /// Its input (any TOML value, given to the flow as JSON; default `null`).
    #[serde(default)]
    pub input: Option<toml::Value>,
    /// Fires missed while the node was down: `skip`, `run-once` or `run-all`.
    #[serde(default)]
    pub missed: MissedRun,
    /// How far back missed fires count (default 1h).
    #[serde(default = "default_catch_up")]
    pub catch_up: HumanDuration,
    /// A fire while the previous run goes on: `skip`, `buffer-one` or `allow`.
    #[serde(default)]
    pub overlap: Overlap,
    /// `normal` or `high`.
    #[serde(default)]
    pub mode: ExecuteMode,
}

fn default_catch_up() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

impl ScheduleTriggerConfig {
    /// The input as JSON bytes.
    pub fn input_json(&self) -> Vec<u8> {
        match &self.input {
            None => b"null".to_vec(),
            Some(value) => serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()),
        }
    }
}

/// A value of the file and its place: `line L, column C (`the line`)`.
fn at<T>(value: &Spanned<T>, text: &str) -> String {
    let span = value.span();
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line}, column {column} (`{source}`)")
}

impl TriggersSection {
    /// Whether there is any trigger.
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.event.is_empty() && self.schedule.is_empty()
    }

    /// Check what serde could not: each flow is a `[[flows]]` entry, names are unique,
    /// each URL route is free and unique, permissions parse. `text` is the file, so each
    /// error names the line of the value at fault.
    pub fn check(&self, flows: &[FlowConfig], text: &str) -> Result<(), String> {
        let known: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
        let flow_known = |flow: &Spanned<String>, key: &str| -> Result<(), String> {
            if known.contains(&flow.get_ref().as_str()) {
                return Ok(());
            }
            let listed = if known.is_empty() {
                "none is registered".to_string()
            } else {
                format!("registered: {}", known.join(", "))
            };
            Err(format!(
                "{}: {key} = \"{}\": no [[flows]] entry has this name ({listed})",
                at(flow, text),
                flow.get_ref()
            ))
        };
        let mut names = HashSet::new();
        let mut name_free = |name: &Spanned<TriggerName>, key: &str| -> Result<(), String> {
            if names.insert(name.get_ref().as_str().to_string()) {
                return Ok(());
            }
            Err(format!(
                "{}: {key} = \"{}\": duplicate trigger name",
                at(name, text),
                name.get_ref()
            ))
        };
        let mut routes = HashSet::new();
        for (i, t) in self.http.iter().enumerate() {
            let key = format!("triggers.http[{i}]");
            name_free(&t.name, &format!("{key}.name"))?;
            flow_known(&t.flow, &format!("{key}.flow"))?;
            check_path(t.path.get_ref()).map_err(|why| {
                format!(
                    "{}: {key}.path = \"{}\": {why}",
                    at(&t.path, text),
                    t.path.get_ref()
                )
            })?;
            if !routes.insert((t.path.get_ref().clone(), t.method)) {
                return Err(format!(
                    "{}: {key}.path = \"{}\": another URL trigger already answers {} on it",
                    at(&t.path, text),
                    t.path.get_ref(),
                    t.method
                ));
            }
            if let Some(p) = &t.permission {
                if t.public {
                    return Err(format!(
                        "{}: {key}.permission: a public trigger needs no permission; drop one of `public` and `permission`",
                        at(p, text)
                    ));
                }
                p.get_ref()
                    .parse::<Permission>()
                    .map_err(|e| format!("{}: {key}.permission: {e}", at(p, text)))?;
            }
            if t.wait.0 > Duration::from_secs(3600) {
                return Err(format!("{key}.wait: at most 1h"));
            }
        }
        for (i, t) in self.event.iter().enumerate() {
            let key = format!("triggers.event[{i}]");
            name_free(&t.name, &format!("{key}.name"))?;
            flow_known(&t.flow, &format!("{key}.flow"))?;
        }
        for (i, t) in self.schedule.iter().enumerate() {
            let key = format!("triggers.schedule[{i}]");
            name_free(&t.name, &format!("{key}.name"))?;
            flow_known(&t.flow, &format!("{key}.flow"))?;
        }
        Ok(())
    }
}

/// A URL trigger's path: `/` then segments of `A-Z a-z 0-9 . _ ~ -`, off the node's own
/// routes.
fn check_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with `/`".into());
    };
    let ok = !rest.is_empty()
        && path.len() <= 256
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        });
    if !ok {
        return Err(
            "use segments of A-Z a-z 0-9 . _ ~ - separated by single slashes, like \"/hooks/order\""
                .into(),
        );
    }
    for reserved in RESERVED_PATHS {
        if path == *reserved || path.starts_with(&format!("{reserved}/")) {
            return Err(format!("`{reserved}` belongs to the node's own API"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::NodeConfig;

    const FLOWS: &str = "[[flows]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\n";

    fn parse(text: &str) -> Result<NodeConfig, String> {
        NodeConfig::parse(
            &format!("{FLOWS}{text}"),
            Path::new("node.toml"),
            Path::new("."),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn triggers_parse_with_their_defaults() {
        let c = parse(
            "[[triggers.http]]\nname = \"greet\"\npath = \"/hooks/greet\"\nflow = \"hello\"\n\
             [[triggers.event]]\nname = \"on-name\"\ntopic = \"names\"\nflow = \"hello\"\nmode = \"high\"\n\
             [[triggers.schedule]]\nname = \"nightly\"\ncron = \"0 2 * * *\"\nzone = \"Europe/Zurich\"\nflow = \"hello\"\ninput = { name = \"night\" }\nmissed = \"run-all\"\noverlap = \"buffer-one\"\n",
        )
        .unwrap();
        let http = &c.triggers.http[0];
        assert_eq!(http.method, super::HttpMethod::Post);
        assert_eq!(http.wait.0, std::time::Duration::from_secs(30));
        assert_eq!(
            http.needed(),
            Some(crate::model::Permission::Start(Some("hello".into())))
        );
        assert_eq!(c.triggers.event[0].mode, super::ExecuteMode::High);
        let s = &c.triggers.schedule[0];
        assert_eq!(s.zone.0, chrono_tz::Europe::Zurich);
        assert_eq!(s.input_json(), br#"{"name":"night"}"#);
        assert_eq!(s.missed, super::MissedRun::RunAll);
        assert_eq!(s.overlap, super::Overlap::BufferOne);
    }

    #[test]
    fn an_unknown_flow_names_file_line_and_key() {
        let e = parse("[[triggers.event]]\nname = \"e\"\ntopic = \"t\"\nflow = \"nope\"\n")
            .unwrap_err();
        assert!(e.contains("node.toml"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("triggers.event[0].flow = \"nope\""), "{e}");
        assert!(e.contains("registered: hello"), "{e}");
    }

    #[test]
    fn bad_cron_zone_topic_and_names_name_the_line() {
        let e =
            parse("[[triggers.schedule]]\nname = \"s\"\ncron = \"61 * * * *\"\nflow = \"hello\"\n")
                .unwrap_err();
        assert!(
            e.contains("node.toml")
                && e.contains("line 6")
                && e.contains("cron")
                && e.contains("not a cron expression"),
            "{e}"
        );
        let e = parse(
            "[[triggers.schedule]]\nname = \"s\"\ncron = \"* * * * *\"\nzone = \"Mars/Olympus\"\nflow = \"hello\"\n",
        )
        .unwrap_err();
        assert!(e.contains("line 7") && e.contains("not a time zone"), "{e}");
        let e = parse("[[triggers.event]]\nname = \"e\"\ntopic = \"a b\"\nflow = \"hello\"\n")
            .unwrap_err();
        assert!(
            e.contains("line 6") && e.contains("not a topic name"),
            "{e}"
        );
        let e = parse("[[triggers.event]]\nname = \"e_1\"\ntopic = \"t\"\nflow = \"hello\"\n")
            .unwrap_err();
        assert!(
            e.contains("line 5") && e.contains("not a trigger name"),
            "{e}"
        );
        let twice = "[[triggers.event]]\nname = \"e\"\ntopic = \"t\"\nflow = \"hello\"\n";
        let e = parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(
            e.contains("line 9") && e.contains("triggers.event[1].name = \"e\": duplicate"),
            "{e}"
        );
    }

    #[test]
    fn url_trigger_paths_and_permissions_are_checked() {
        let http = |rest: &str| {
            parse(&format!(
                "[[triggers.http]]\nname = \"h\"\nflow = \"hello\"\n{rest}"
            ))
        };
        for (path, why) in [
            ("/v1/flows", "node's own API"),
            ("/metrics", "node's own API"),
            ("hooks", "must start with"),
            ("/a//b", "single slashes"),
            ("/a/{id}", "single slashes"),
        ] {
            let e = http(&format!("path = \"{path}\"\n")).unwrap_err();
            assert!(
                e.contains("line 7") && e.contains("triggers.http[0].path") && e.contains(why),
                "{path}: {e}"
            );
        }
        let e = http("path = \"/h\"\npermission = \"admin\"\n").unwrap_err();
        assert!(
            e.contains("line 8") && e.contains("not a permission"),
            "{e}"
        );
        let e = http("path = \"/h\"\npublic = true\npermission = \"read\"\n").unwrap_err();
        assert!(e.contains("public trigger needs no permission"), "{e}");
        let c = http("path = \"/h\"\npublic = true\n").unwrap();
        assert_eq!(c.triggers.http[0].needed(), None);
    }
}
