//! Validation of EVE records against pinwatch's own schema
//! (`docs/eve-schema.json`, every record) and Suricata's
//! (`../shared/peers/suricata/eve-schema.json`, Suricata 9.0.0-dev
//! `etc/schema.json`, for the keys pinwatch shares with Suricata).
//!
//! Suricata's schema allows no key it does not know at the top level, so
//! the pinwatch-owned top-level objects (`handshake`, `flow_end`, `tls_failure`,
//! `path`, `mobile`, `an1725`, `evidence`) are taken out before a record
//! is checked against it; inside `tls`, `quic`, `alert` and `flow` nothing
//! is taken out: those must be Suricata's objects exactly. pinwatch's
//! `stats` object has its own counters: only the keys Suricata's `stats`
//! also has are checked (same name, same type).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Top-level keys that are pinwatch's own.
pub const PINWATCH_KEYS: &[&str] = &["handshake", "tls_failure", "path", "mobile", "an1725", "evidence", "flow_end"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where Suricata's schema is expected: `PINWATCH_SURICATA_SCHEMA`, else
/// `<workspace>/../shared/peers/suricata/eve-schema.json`.
pub fn suricata_schema_path() -> PathBuf {
    match std::env::var_os("PINWATCH_SURICATA_SCHEMA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("../shared/peers/suricata/eve-schema.json"),
    }
}

pub struct Schemas {
    ours: jsonschema::Validator,
    suricata: Option<(jsonschema::Validator, Value)>,
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Schemas {
    /// Ours always (it ships with the repo); Suricata's when it is there,
    /// else `SKIPPED` is printed once and only ours is checked.
    pub fn load() -> Schemas {
        let ours_v = load(&workspace_root().join("docs/eve-schema.json"));
        let ours = jsonschema::validator_for(&ours_v).expect("docs/eve-schema.json is a valid schema");
        let sp = suricata_schema_path();
        let suricata = if sp.is_file() {
            let v = load(&sp);
            Some((jsonschema::validator_for(&v).expect("Suricata's schema compiles"), v))
        } else {
            println!("SKIPPED: Suricata's schema not found at {} (checked against docs/eve-schema.json only)", sp.display());
            None
        };
        Schemas { ours, suricata }
    }

    pub fn has_suricata(&self) -> bool {
        self.suricata.is_some()
    }

    /// Every problem of one record: `ours: ...` and `suricata: ...`.
    pub fn check(&self, record: &Value) -> Vec<String> {
        let mut out: Vec<String> = self.ours.iter_errors(record).map(|e| format!("ours: {} at {}", e, e.instance_path)).collect();
        if let Some((v, schema)) = &self.suricata {
            let shared = shared_part(record, schema);
            out.extend(v.iter_errors(&shared).map(|e| format!("suricata: {} at {}", e, e.instance_path)));
        }
        out
    }
}

/// The part of a record Suricata's schema judges: without pinwatch's
/// top-level objects, and with only the `stats` keys Suricata also has.
pub fn shared_part(record: &Value, suricata: &Value) -> Value {
    let Some(obj) = record.as_object() else { return record.clone() };
    let mut out = Map::new();
    for (k, v) in obj {
        if PINWATCH_KEYS.contains(&k.as_str()) {
            continue;
        }
        if k == "stats" {
            out.insert(k.clone(), keep_known(v, &suricata["properties"]["stats"]));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// `v` with only the object keys `schema` names, recursively.
fn keep_known(v: &Value, schema: &Value) -> Value {
    match (v, schema.get("properties").and_then(Value::as_object)) {
        (Value::Object(o), Some(props)) => {
            Value::Object(o.iter().filter_map(|(k, x)| props.get(k).map(|s| (k.clone(), keep_known(x, s)))).collect())
        }
        _ => v.clone(),
    }
}

/// Check every line of an EVE output; problems as `label: line N: ...`,
/// at most `max` of them.
pub fn check_output(schemas: &Schemas, label: &str, eve: &[u8], max: usize, problems: &mut Vec<String>) -> usize {
    let mut n = 0;
    for (i, line) in String::from_utf8_lossy(eve).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{label}: line {}: not JSON: {e}", i + 1));
                continue;
            }
        };
        for p in schemas.check(&v) {
            if problems.len() < max {
                problems.push(format!("{label}: line {}: {p}", i + 1));
            }
        }
    }
    n
}
