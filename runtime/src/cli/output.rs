//! How client verbs print: tables for people, JSON for scripts.

use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

/// A table with `header`, sized to the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

/// A JSON field as a table cell: strings bare, absent as empty.
pub fn cell(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Print an outcome (`OutcomeView`): the output JSON, or `error:` and a failure exit code.
pub fn outcome(view: &Value, json: bool) -> anyhow::Result<ExitCode> {
    let completed = view["status"] == "completed";
    if json {
        println!("{view}");
    } else if completed {
        println!("{}", serde_json::to_string_pretty(&view["output"])?);
    } else {
        eprintln!(
            "error: instance {} {}: {}",
            cell(view, "id"),
            cell(view, "status"),
            cell(view, "error")
        );
    }
    Ok(if completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
