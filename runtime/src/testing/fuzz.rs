//! Fuzz bodies: what each target in `fuzz/` feeds its bytes to. Each asserts that no input
//! panics and, where a value can be written back, that it round-trips. They live in the
//! library so the fuzz crate and the test suite's smoke run (the tests below) run the same
//! code.

use std::path::Path;

use serde_json::Value;

use crate::config::NodeConfig;
use crate::model::{StartMeta, json_of, printed_output};
use crate::operator::Export;
use crate::replay::calls::{self, Exchanged, Kind, Opened};
use crate::store::{Payload, decode};
use crate::testing::scenario::Scenario;

/// A fuzz body: takes any bytes, panics only on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (as in `fuzz/fuzz_targets/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("node_config", node_config),
    ("scenario", scenario),
    ("journal_export", journal_export),
    ("stored_record", crate::store::fuzzing::stored_record),
    ("guest_output", guest_output),
];

/// A node config file (`NodeConfig::parse`): parses or errs; a config that parses is
/// written out as TOML and parses again to the same config.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, base) = (
        Path::new("fuzz.toml"),
        Path::new("/nonexistent/sluice-fuzz"),
    );
    let config = match NodeConfig::parse(text, path, base) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("config fuzz.toml: "), "{e}");
            return;
        }
    };
    for flow in &config.flows {
        let _ = config.flow_settings(flow);
    }
    let written = toml::to_string(&config)
        .unwrap_or_else(|e| panic!("a parsed config does not serialize: {e}\n{text}"));
    let again = NodeConfig::parse(&written, path, base)
        .unwrap_or_else(|e| panic!("a written config does not parse: {e}\n{written}"));
    let rewritten = toml::to_string(&again).expect("a parsed config serializes");
    assert_eq!(rewritten, written, "the config did not round-trip");
}

/// A scenario file (`Scenario::parse`): parses or errs naming the file.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse(text, Path::new("fuzz.toml")) {
        Ok(s) => drop(s.script.answer("hello", &s.input)),
        Err(e) => assert!(e.to_string().starts_with("scenario fuzz.toml: "), "{e}"),
    }
}

/// A journal export (what `sluice replay` reads): parses or errs; one that parses is
/// written and read back the same, and every entry's answer reads as its call's hosts read it.
pub fn journal_export(data: &[u8]) {
    let Ok(export) = serde_json::from_slice::<Export>(data) else {
        return;
    };
    let written = serde_json::to_string(&export).expect("an export serializes");
    let again: Export = serde_json::from_str(&written)
        .unwrap_or_else(|e| panic!("a written export does not parse: {e}\n{written}"));
    assert_eq!(again, export, "the export did not round-trip");
    let record = &export.record;
    let _ = record.outcome();
    if let Some(meta) = StartMeta::parse(&record.meta) {
        let _ = meta.invocation(&record.id, &record.flow, "replay");
    }
    for entry in &export.journal {
        let _ = crate::replay::recorder::describe(&entry.call, &entry.args);
        if let Some(kind) = Kind::from_name(&entry.call) {
            read_answer(kind, &entry.result);
        }
    }
}

/// Read a journaled answer as the hosts read `kind`'s: errors are fine, panics are not.
fn read_answer(kind: Kind, answer: &Value) {
    match kind {
        Kind::Start => drop(decode::<Result<String, crate::model::FlowError>>(answer)),
        Kind::Join | Kind::Call => drop(calls::outcome_from_json(answer)),
        Kind::Parallel => drop(calls::outcomes_from_json(answer)),
        Kind::Cancel => drop(decode::<Result<(), crate::model::FlowError>>(answer)),
        Kind::Now | Kind::Random | Kind::Sleep => drop(decode::<u64>(answer)),
        Kind::Progress | Kind::Publish => drop(decode::<()>(answer)),
        Kind::WaitEvent => drop(decode::<Option<u64>>(answer)),
        Kind::TakeEvent => drop(decode::<Option<Payload>>(answer)),
        Kind::Session => drop(decode::<Opened>(answer)),
        Kind::Initiator => drop(decode::<Option<Opened>>(answer)),
        Kind::Send | Kind::Receive => drop(decode::<Exchanged>(answer)),
    }
}

/// A guest's raw output as `sluice run` shows it: JSON output is printed as the same JSON
/// value; other text as a JSON string holding exactly that text.
pub fn guest_output(data: &[u8]) {
    let printed = printed_output(data);
    let shown: Value = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("`sluice run` printed what is not JSON: {e}\n{printed}"));
    assert_eq!(
        shown,
        json_of(data),
        "the printed output reads back otherwise"
    );
    match serde_json::from_slice::<Value>(data) {
        Ok(value) => assert_eq!(shown, value, "JSON output printed as another value"),
        Err(_) => match std::str::from_utf8(data) {
            Ok(text) => assert_eq!(shown, Value::String(text.into()), "text output changed"),
            Err(_) => assert!(shown.is_string(), "binary output not shown as text"),
        },
    }
}

#[cfg(test)]
mod tests {
    //! The smoke run of every fuzz body: its seeds (`fuzz/seeds/<target>/`), then a few
    //! thousand inputs made from them by proptest (bytes changed, cut, spliced) and random
    //! bytes. Seconds, in the stable suite, so the bodies keep compiling and running; the
    //! long runs are `cargo fuzz`'s (fuzz/README.md).

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::TARGETS;

    /// The seeds of `target`, as committed.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no seeds for {target} in {}: {e}", dir.display()))
            .map(|f| std::fs::read(f.expect("a seed file").path()).expect("a seed reads"))
            .collect();
        seeds.sort();
        seeds
    }

    /// A seed with some bytes overwritten, a cut and a random tail: near-valid inputs reach
    /// deeper than random bytes.
    fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6);
        let tail = prop::collection::vec(any::<u8>(), 0..32);
        (
            prop::sample::select(seeds),
            edits,
            any::<prop::sample::Index>(),
            tail,
        )
            .prop_map(|(mut input, edits, cut, tail)| {
                if !input.is_empty() {
                    for (at, byte) in edits {
                        let at = at.index(input.len());
                        input[at] = byte;
                    }
                    input.truncate(cut.index(input.len() + 1).max(input.len() / 2));
                }
                input.extend(tail);
                input
            })
    }

    fn smoke(target: &str) {
        let (_, body) = TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .unwrap_or_else(|| panic!("no fuzz target {target}"));
        let seeds = seeds(target);
        for seed in &seeds {
            body(seed);
        }
        let config = Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        };
        let inputs = prop_oneof![
            3 => mutated(seeds),
            1 => prop::collection::vec(any::<u8>(), 0..256),
        ];
        TestRunner::new(config)
            .run(&inputs, |input| {
                body(&input);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("fuzz target {target}: {e}"));
    }

    #[test]
    fn node_config_smoke() {
        smoke("node_config");
    }

    #[test]
    fn scenario_smoke() {
        smoke("scenario");
    }

    #[test]
    fn journal_export_smoke() {
        smoke("journal_export");
    }

    #[test]
    fn stored_record_smoke() {
        smoke("stored_record");
    }

    #[test]
    fn guest_output_smoke() {
        smoke("guest_output");
    }

    #[test]
    fn the_export_seed_is_an_export() {
        let seed = &seeds("journal_export")[0];
        let export: crate::operator::Export =
            serde_json::from_slice(seed).expect("the seed parses");
        assert_eq!(export.journal.len(), 8);
    }
}
