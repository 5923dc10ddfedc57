//! Scenario files: a flow's test in TOML, the same for a build in any language.
//!
//! ```toml
//! name = "fans out to two"          # optional; the file name otherwise
//! input = { n = 2 }
//! initiator = "PartyA"              # optional: run as the responder to PartyA's session
//!
//! [[subflow]]                       # scripted subflows, first match wins
//! flow = "hello"
//! input = { name = "child-0" }      # optional: only this input
//! output = { greeting = "hi 0" }    # or: error = "…" | rejected = "…" | timed-out = true | cancelled = true
//!
//! [[message]]                       # what a counterparty sends, in order per party
//! from = "PartyB"
//! payload = { price = 40 }          # or: ends = "why"  (its flow ended: receive fails)
//!
//! [[event]]                         # events that arrive, in order per topic
//! topic = "trades"
//! payload = { item = "bond" }
//!
//! [expect]
//! output = { results = [{ greeting = "hi 0" }] }   # or: error = "part of the message"
//! calls = ['start("hello", {"name":"child-0"})', "join(child-1)"]   # optional, exact
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::{FlowTest, Rule, Script, TestRun};
use crate::model::FlowError;

/// A scenario file that cannot be used, with the file, line and key.
#[derive(Debug, Error)]
#[error("scenario {}: {message}", path.display())]
pub struct ScenarioError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, and where.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioFile {
    name: Option<String>,
    flow: Option<String>,
    #[serde(default)]
    input: Option<toml::Value>,
    seed: Option<u64>,
    clock: Option<u64>,
    initiator: Option<String>,
    #[serde(default)]
    subflow: Vec<SubflowEntry>,
    #[serde(default)]
    message: Vec<MessageEntry>,
    #[serde(default)]
    event: Vec<EventEntry>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MessageEntry {
    from: String,
    payload: Option<toml::Value>,
    ends: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EventEntry {
    topic: String,
    payload: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SubflowEntry {
    flow: String,
    input: Option<toml::Value>,
    output: Option<toml::Value>,
    error: Option<String>,
    rejected: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(default)]
    cancelled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Expect {
    output: Option<toml::Value>,
    error: Option<String>,
    calls: Option<Vec<String>>,
}

/// What a scenario expects of the flow's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// This output.
    Output(Value),
    /// A failure whose message contains this text.
    Error(String),
}

/// One parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// The flow name the instance runs under, when not the component's file name.
    pub flow: Option<String>,
    /// The flow's input.
    pub input: Value,
    /// Scripted subflows.
    pub script: Script,
    /// Start of the virtual clock.
    pub clock: Option<u64>,
    /// Seed of the host's randomness.
    pub seed: Option<u64>,
    /// The expected end.
    pub expected: Expected,
    /// The exact calls expected, when given.
    pub calls: Option<Vec<String>>,
}

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Why it failed, with a diff; `None` when it passed.
    pub failure: Option<String>,
    /// Wall-clock time of the run.
    pub took: Duration,
    /// Virtual time the flow slept.
    pub slept: Duration,
}

fn json(v: toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Check the text of a scenario file; `path` names it in errors and, without a `name`,
    /// gives the scenario its name.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let err = |message: String| ScenarioError {
            path: path.into(),
            message,
        };
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| err(crate::config::one_line(&e, text)))?;
        let expected = match (file.expect.output, file.expect.error) {
            (Some(output), None) => Expected::Output(json(output)),
            (None, Some(error)) => Expected::Error(error),
            _ => {
                return Err(err(
                    "[expect]: give exactly one of `output` and `error`".into()
                ));
            }
        };
        let mut script = Script::default();
        for (i, entry) in file.subflow.into_iter().enumerate() {
            let given = (entry.output, entry.error, entry.rejected);
            let response = match (given, entry.timed_out, entry.cancelled) {
                ((Some(o), None, None), false, false) => Ok(json(o)),
                ((None, Some(e), None), false, false) => Err(FlowError::Failed(e)),
                ((None, None, Some(r)), false, false) => Err(FlowError::Rejected(r)),
                ((None, None, None), true, false) => Err(FlowError::TimedOut),
                ((None, None, None), false, true) => Err(FlowError::Cancelled),
                _ => {
                    return Err(err(format!(
                        "subflow[{i}] ({}): give exactly one of `output`, `error`, `rejected`, `timed-out`, `cancelled`",
                        entry.flow
                    )));
                }
            };
            let mut rule = Rule::subflow(&entry.flow);
            if let Some(input) = entry.input {
                rule = rule.with_input(json(input));
            }
            script.push(match response {
                Ok(output) => rule.returns(output),
                Err(e) => rule.fails_with(e),
            });
        }
        for (i, entry) in file.message.into_iter().enumerate() {
            match (entry.payload, entry.ends) {
                (Some(payload), None) => script.message(&entry.from, json(payload)),
                (None, Some(why)) => script.counterparty_ends(&entry.from, &why),
                _ => {
                    return Err(err(format!(
                        "message[{i}] (from {}): give exactly one of `payload` and `ends`",
                        entry.from
                    )));
                }
            }
        }
        for entry in file.event {
            script.event(&entry.topic, json(entry.payload));
        }
        if let Some(party) = &file.initiator {
            script.initiated_by(party);
        }
        let name = file.name.unwrap_or_else(|| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("scenario")
                .into()
        });
        Ok(Scenario {
            name,
            path: path.into(),
            flow: file.flow,
            input: file.input.map(json).unwrap_or(Value::Null),
            script,
            clock: file.clock,
            seed: file.seed,
            expected,
            calls: file.expect.calls,
        })
    }

    /// Run against the component of `test` (its own script is replaced by this scenario's).
    pub async fn run(&self, test: &FlowTest) -> ScenarioResult {
        let mut test = test.clone();
        test.script = self.script.clone();
        if let Some(flow) = &self.flow {
            test.named(flow);
        }
        if let Some(clock) = self.clock {
            test.clock_at(clock);
        }
        if let Some(seed) = self.seed {
            test.seed(seed);
        }
        let started = Instant::now();
        let run = test.run(self.input.clone()).await;
        ScenarioResult {
            name: self.name.clone(),
            path: self.path.clone(),
            failure: self.check(&run).err(),
            took: started.elapsed(),
            slept: run.slept,
        }
    }

    fn check(&self, run: &TestRun) -> Result<(), String> {
        match &self.expected {
            Expected::Output(output) => run.check_output(output)?,
            Expected::Error(part) => match &run.outcome {
                Err(e) if e.contains(part.as_str()) => {}
                Err(e) => return Err(format!("expected an error containing `{part}`, got: {e}")),
                Ok(v) => {
                    return Err(format!(
                        "expected an error containing `{part}`, got output {v}"
                    ));
                }
            },
        }
        if let Some(calls) = &self.calls {
            let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
            run.check_calls(&calls)?;
        }
        Ok(())
    }
}

/// A line diff of `expected` and `actual`, titled `what`: `-` expected, `+` actual.
pub fn diff(what: &str, expected: &str, actual: &str) -> String {
    let mut out = format!("{what} differ (- expected, + actual):\n");
    // Both sides end in a newline, so a last line is not told apart by its missing one.
    let (expected, actual) = (format!("{expected}\n"), format!("{actual}\n"));
    for change in similar::TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push(' ');
        out.push_str(change.value().trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Scenario, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        Scenario::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn a_scenario_parses_into_a_script_and_expectations() {
        let s = load(
            "input = { n = 1 }\n[[subflow]]\nflow = \"hello\"\noutput = { greeting = \"hi\" }\n\
             [[subflow]]\nflow = \"price\"\nrejected = \"closed\"\n[expect]\noutput = 3\ncalls = [\"now()\"]\n",
        )
        .unwrap();
        assert_eq!(s.name, "s");
        assert_eq!(s.input, serde_json::json!({ "n": 1 }));
        assert_eq!(s.expected, Expected::Output(serde_json::json!(3)));
        assert_eq!(s.calls, Some(vec!["now()".to_string()]));
        assert!(s.script.answer("price", &Value::Null).is_some());
    }

    #[test]
    fn bad_syntax_and_unknown_keys_name_file_line_and_key() {
        let e = load("input = { n = 1 \n[expect]\noutput = 1\n").unwrap_err();
        assert!(
            e.contains("s.toml") && e.contains("line 2, column 1"),
            "{e}"
        );
        let e = load("input = 1\n[expect]\noutput = 1\nretries = 3\n").unwrap_err();
        assert!(
            e.contains("line 4") && e.contains("unknown field `retries`"),
            "{e}"
        );
        let e =
            load("[[subflow]]\nflow = \"x\"\noutput = 1\nerror = \"y\"\n[expect]\noutput = 1\n")
                .unwrap_err();
        assert!(e.contains("subflow[0] (x): give exactly one of"), "{e}");
        let e = load("[[message]]\nfrom = \"B\"\n[expect]\noutput = 1\n").unwrap_err();
        assert!(
            e.contains("message[0] (from B): give exactly one of"),
            "{e}"
        );
        let e = load("[[event]]\ntopic = \"t\"\npayload = 1\nwhen = 3\n[expect]\noutput = 1\n")
            .unwrap_err();
        assert!(
            e.contains("line 4") && e.contains("unknown field `when`"),
            "{e}"
        );
        let e = load("[expect]\ncalls = []\n").unwrap_err();
        assert!(
            e.contains("[expect]: give exactly one of `output` and `error`"),
            "{e}"
        );
    }

    #[test]
    fn diffs_mark_expected_and_actual_lines() {
        let d = diff("calls", "now()\nsleep(5)", "now()\nsleep(6)");
        assert!(d.contains("  now()\n- sleep(5)\n+ sleep(6)"), "{d}");
    }
}
