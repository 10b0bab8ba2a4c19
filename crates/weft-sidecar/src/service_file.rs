//! Service definition files, as Consul's `services register` and a task's sidecar read them.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// The service definitions a file declares: `{"service": {...}}`, `{"services": [...]}` or a bare definition.
pub fn definitions(path: &std::path::Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Error reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "hcl") {
        bail!(
            "{}: HCL service files are not supported yet; use JSON",
            path.display()
        );
    }
    parse_definitions(&text, &path.display().to_string())
}

/// The definitions a file or an inline value holds: a value starting with `{` is the JSON itself (a container
/// platform such as ECS passes a task's definition in its command, with no file to mount), anything else a path.
pub fn definitions_from(file_or_json: &str) -> Result<Vec<Value>> {
    if file_or_json.trim_start().starts_with('{') {
        parse_definitions(file_or_json, "the inline service definition")
    } else {
        definitions(std::path::Path::new(file_or_json))
    }
}

fn parse_definitions(text: &str, source: &str) -> Result<Vec<Value>> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{source}: invalid JSON"))?;
    let Value::Object(map) = value else {
        bail!("{source}: expected a JSON object")
    };
    let lower: Map<String, Value> = map
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    Ok(match (lower.get("service"), lower.get("services")) {
        (Some(s), _) => vec![s.clone()],
        (None, Some(Value::Array(list))) => list.clone(),
        _ => vec![Value::Object(map)],
    })
}

pub fn name_and_id(def: &Value) -> (String, String) {
    let get = |keys: &[&str]| -> String {
        def.as_object()
            .and_then(|m| {
                m.iter()
                    .find(|(k, _)| keys.contains(&k.to_ascii_lowercase().as_str()))
            })
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let name = get(&["name"]);
    let id = get(&["id"]);
    (name.clone(), if id.is_empty() { name } else { id })
}
