//! The committed `schemas/` must be exactly what the code generates. `UPDATE_SCHEMAS=1` rewrites them.

use std::path::PathBuf;

#[test]
fn committed_schema_documents_match_the_code() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let docs = streamfleet_bus_schemas::schema_documents::all();
    let mut stale = Vec::new();
    for d in &docs {
        let path = root.join(&d.path);
        if update {
            std::fs::create_dir_all(path.parent().expect("documents live in folders"))
                .expect("mkdir");
            std::fs::write(&path, &d.text).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(d.text.as_str()) {
            stale.push(d.path.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ disagrees with the code for {stale:?}; run `UPDATE_SCHEMAS=1 cargo test -p streamfleet-bus-schemas` and commit"
    );
    // Nothing committed that the code no longer generates.
    let mut committed = Vec::new();
    for dir in ["commands", "events", "replies", "log"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("schemas/ folders exist") {
            let entry = entry.expect("dir entry");
            committed.push(format!("{dir}/{}", entry.file_name().to_string_lossy()));
        }
    }
    let generated: Vec<_> = docs.iter().map(|d| d.path.clone()).collect();
    let orphans: Vec<_> = committed
        .iter()
        .filter(|c| !generated.contains(c))
        .collect();
    assert!(
        orphans.is_empty(),
        "schemas/ holds documents the code no longer generates: {orphans:?}"
    );
}

#[test]
fn every_command_and_event_round_trips_through_its_envelope() {
    use streamfleet_bus_schemas::{Command, CommandEnvelope, PayloadError, SCHEMA_VERSION};
    let json = serde_json::json!({
        "id": "0192f0c4-7b1a-7cc0-8000-000000000001",
        "source": "test",
        "type": "ReportNodeFailure",
        "schemaversion": SCHEMA_VERSION,
        "data": { "node_id": "n1", "reason": "silent" }
    });
    let env: CommandEnvelope = serde_json::from_value(json).expect("envelope parses");
    let cmd = Command::from_parts(&env.command_type, env.data.clone()).expect("payload parses");
    assert_eq!(cmd.subject(), "sf.cmd.node.report-failure");
    assert_eq!(cmd.to_data(), env.data);
    let err =
        Command::from_parts("ReportNodeFailure", serde_json::json!({ "node_id": 5 })).unwrap_err();
    match err {
        PayloadError::Invalid { detail, .. } => {
            assert!(detail.contains("expected a string"), "{detail}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(
        Command::from_parts("Nope", serde_json::json!({})),
        Err(PayloadError::UnknownType("Nope".into()))
    );
}
