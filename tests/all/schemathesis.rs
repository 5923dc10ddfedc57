//! Schemathesis (property-based API testing, from PyPI) against the OpenAPI document a
//! served node publishes: generated requests for every operation, with a bounded number of
//! examples; no answer may be a 5xx, and every answer must match its documented status,
//! content type and schema.

use std::path::PathBuf;
use std::process::Command;

use crate::durable_node::show;
use crate::served::{serve, served_config};

/// The `st` binary `scripts/test-tools.sh` installs (or `SLUICE_SCHEMATHESIS`).
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SLUICE_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../.tools/schemathesis/bin/st"
            ))
        });
    assert!(
        path.exists(),
        "schemathesis is not installed at {}: run ./scripts/test-tools.sh (./scripts/test.sh does)",
        path.display()
    );
    path
}

#[test]
fn generated_requests_never_get_a_5xx_and_every_answer_matches_the_document() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = served_config(
        dir.path(),
        &["hello", "fanout", "sleeper"],
        "[limits]\ninput = \"4 KiB\"\n",
    );
    let node = serve(&config, &dir.path().join("data"), tokens);
    let out = Command::new(st)
        .current_dir(dir.path())
        .args(["run", &format!("{}/v1/openapi.json", node.url)])
        .args(["--header", &format!("Authorization: Bearer {}", node.tokens.all)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "20261130",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            // Draining would stop the node under test.
            "--exclude-path",
            "/v1/drain",
            // A topic's live stream never ends by itself (tests/all/triggers.rs follows one).
            "--exclude-path",
            "/v1/topics/{topic}/events",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{}",
        show(&out)
    );
}
