//! Where configuration comes from: files and directories (JSON or HCL), `-hcl` fragments, and the command line.
//!
//! Each source is parsed and decoded on its own, so a mistake is reported with the file (and line, where the parser
//! gives one) and the key's path: `a.hcl:ports.htp: unknown configuration key`. Decoded sources are then merged as
//! Consul merges them: objects key by key, lists appended, scalars overwritten by the later source.

use super::file::Config;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use weft_types::lenient::decode_value;
use weft_types::{CheckDefinition, ServiceDefinition};

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Hcl,
}

impl Format {
    /// `json` or `hcl`, for `-config-format`.
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => Err(format!(
                "-config-format: {other:?} is not a format (json or hcl)"
            )),
        }
    }

    /// The format a file's extension names, or the forced one.
    fn of(path: &Path, forced: Option<Format>) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("hcl") => Some(Format::Hcl),
            _ => forced,
        }
    }
}

/// One source decoded: its settings, and its services and checks (kept apart, since lists of definitions append
/// rather than merge).
#[derive(Debug, Default)]
pub struct Decoded {
    pub value: Map<String, Value>,
    pub services: Vec<ServiceDefinition>,
    pub checks: Vec<CheckDefinition>,
}

/// The files `-config-file` and `-config-dir` name, in the order they are read: every directory's `.json` and
/// `.hcl` files in lexical order, then the named files in the order given. Files of other types in a directory are
/// skipped (Consul skips them too), unless `-config-format` says how to read them.
pub fn list_files(
    files: &[PathBuf],
    dirs: &[PathBuf],
    forced: Option<Format>,
) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: cannot read config dir: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && Format::of(p, forced).is_some())
            .collect();
        found.sort();
        paths.extend(found);
    }
    paths.extend(files.iter().cloned());
    Ok(paths)
}

/// Reads and decodes one file.
pub fn read_file(path: &Path, forced: Option<Format>) -> Result<Decoded, Vec<String>> {
    let name = path.display().to_string();
    let Some(format) = Format::of(path, forced) else {
        return Err(vec![format!(
            "{name}: cannot tell the file's format: name it .json or .hcl, or pass -config-format"
        )]);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{name}: cannot read config file: {e}")])?;
    decode_text(&name, &text, format)
}

/// Parses and decodes one source's text.
pub fn decode_text(name: &str, text: &str, format: Format) -> Result<Decoded, Vec<String>> {
    let value = match format {
        Format::Json => serde_json::from_str::<Value>(text).map_err(|e| {
            vec![format!(
                "{name}:{}:{}: invalid JSON: {e}",
                e.line(),
                e.column()
            )]
        })?,
        Format::Hcl => weft_types::hcl::parse(text)
            .map_err(|e| vec![format!("{name}:{}:{}: {}", e.line, e.column, e.message)])?,
    };
    decode_value_source(name, value)
}

/// Decodes one source already parsed into JSON (the command line's flags come this way).
pub fn decode_value_source(name: &str, value: Value) -> Result<Decoded, Vec<String>> {
    let Value::Object(mut map) = value else {
        return Err(vec![format!(
            "{name}: the top level must be an object of settings"
        )]);
    };
    let mut errors = Vec::new();
    let mut decoded = Decoded::default();
    // Definitions are decoded here, named by their source and index, and left out of the merge.
    for key in ["service", "services"] {
        for (i, item) in one_or_many(map.remove(key)).into_iter().enumerate() {
            match decode_value::<ServiceDefinition>(item) {
                Ok(def) => decoded.services.push(def),
                Err(e) => errors.push(format!("{name}:{key}[{i}]: {e}")),
            }
        }
    }
    for key in ["check", "checks"] {
        for (i, item) in one_or_many(map.remove(key)).into_iter().enumerate() {
            match decode_value::<CheckDefinition>(item) {
                Ok(def) => decoded.checks.push(def),
                Err(e) => errors.push(format!("{name}:{key}[{i}]: {e}")),
            }
        }
    }
    if let Err(e) = decode_config(name, Value::Object(map.clone())) {
        errors.push(e);
    }
    decoded.value = map;
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(errors)
    }
}

fn one_or_many(value: Option<Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(one) => vec![one],
    }
}

/// Decodes settings into the schema; the error names the source and the key's path.
pub fn decode_config(name: &str, value: Value) -> Result<Config, String> {
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // The path already ends in the unknown key itself; serde's "expected one of ..." list is noise here.
        if message.starts_with("unknown field `") {
            return format!("{name}:{path}: unknown configuration key");
        }
        let at = if path == "." { String::new() } else { path };
        format!("{name}:{at}: {message}")
    })
}

/// Merges `later` over `earlier` as Consul does: objects key by key, lists appended, anything else replaced.
pub fn merge(earlier: &mut Map<String, Value>, later: Map<String, Value>) {
    for (key, value) in later {
        match (earlier.get_mut(&key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (_, value) => {
                earlier.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(text: &str, format: Format) -> Vec<String> {
        decode_text("a.conf", text, format).unwrap_err()
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        assert_eq!(
            errors(r#"{"ports": {"htp": 1}}"#, Format::Json),
            ["a.conf:ports.htp: unknown configuration key"]
        );
        assert_eq!(
            errors("bogus = 1\n", Format::Hcl),
            ["a.conf:bogus: unknown configuration key"]
        );
    }

    #[test]
    fn wrong_types_name_the_key_and_the_expected_type() {
        let e = errors(r#"{"ports": {"http": "x"}}"#, Format::Json);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a.conf:ports.http: invalid type"), "{e:?}");
        assert!(e[0].contains("i32"), "{e:?}");
        let e = errors("server = \"yes\"\n", Format::Hcl);
        assert!(e[0].starts_with("a.conf:server: invalid type"), "{e:?}");
        let e = errors(r#"{"reconnect_timeout": "soon"}"#, Format::Json);
        assert!(
            e[0].contains("reconnect_timeout: invalid duration"),
            "{e:?}"
        );
    }

    #[test]
    fn parse_errors_carry_the_line() {
        let e = errors("{\n  \"datacenter\": \n}", Format::Json);
        assert!(e[0].starts_with("a.conf:3:1: invalid JSON"), "{e:?}");
        let e = errors("datacenter = \"x\"\nports {\n", Format::Hcl);
        assert!(e[0].starts_with("a.conf:"), "{e:?}");
    }

    #[test]
    fn every_problem_in_a_source_is_reported() {
        let e = errors(
            r#"{"bogus": 1, "services": [{"name": "a", "port": "x"}]}"#,
            Format::Json,
        );
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn merge_appends_lists_and_overwrites_scalars() {
        let mut a = json!({"datacenter": "a", "retry_join": ["x"], "ports": {"http": 1, "dns": 2}});
        let b = json!({"datacenter": "b", "retry_join": ["y"], "ports": {"http": 3}});
        let (Value::Object(a_map), Value::Object(b_map)) = (&mut a, b) else {
            unreachable!()
        };
        merge(a_map, b_map);
        assert_eq!(
            a,
            json!({"datacenter": "b", "retry_join": ["x", "y"], "ports": {"http": 3, "dns": 2}})
        );
    }
}
