//! The configuration as a YAML tree, before it is typed: the file, then the `REGISTRY_*`
//! overrides written into it (remembering which variable set which key, for messages).

use serde_norway::{Mapping, Value};

/// Distribution's keys under `storage` that are not storage drivers.
pub(super) const STORAGE_PARAMETERS: &[&str] =
    &["delete", "maintenance", "redirect", "cache", "tag"];

/// The configuration tree.
#[derive(Debug, Default)]
pub(super) struct Tree {
    /// The merged configuration (a mapping).
    pub value: Value,
    /// Keys set from the environment: the key's path and the variable that set it.
    from_env: Vec<(Vec<String>, String)>,
}

impl Tree {
    /// A tree holding `value` (a mapping), with nothing from the environment yet.
    pub fn new(value: Value) -> Self {
        Tree {
            value,
            from_env: Vec::new(),
        }
    }

    /// Writes the `REGISTRY_*` variables among `env` into the tree, as Distribution reads
    /// them: `REGISTRY_STORAGE_DELETE_ENABLED=true` sets `storage.delete.enabled`, and
    /// `REGISTRY_STORAGE=s3` switches the storage driver.
    pub fn apply_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("REGISTRY_"))
            .collect();
        env.sort();
        for (name, value) in env {
            let parts: Vec<String> = name["REGISTRY_".len()..]
                .to_ascii_lowercase()
                .split('_')
                .map(str::to_string)
                .collect();
            if parts.iter().any(String::is_empty) {
                continue;
            }
            if parts == ["storage"] {
                // Distribution's way to switch drivers from the environment:
                // REGISTRY_STORAGE=s3 drops the file's other driver section.
                let driver = value.trim().to_ascii_lowercase();
                if driver.is_empty() {
                    continue;
                }
                self.select_driver(&driver);
                self.from_env.push((
                    vec!["storage".to_string(), driver],
                    format!("{name}={value}"),
                ));
                continue;
            }
            self.set(&parts, Value::String(value));
            self.from_env.push((parts, name));
        }
    }

    /// The variable that set `key` (dotted), or a key under it.
    pub fn set_under(&self, key: &str) -> Option<&str> {
        let key: Vec<&str> = key.split('.').collect();
        self.from_env
            .iter()
            .rev()
            .find(|(path, _)| path.len() >= key.len() && path.iter().zip(&key).all(|(a, b)| a == b))
            .map(|(_, name)| name.as_str())
    }

    /// The variable that set `key` (dotted).
    pub fn set_by(&self, key: &str) -> Option<&str> {
        self.from_env
            .iter()
            .rev()
            .find(|(path, _)| path.join(".") == key)
            .map(|(_, name)| name.as_str())
    }

    /// `REGISTRY_STORAGE=<driver>`, when it selected `driver`.
    pub fn selected_driver(&self, driver: &str) -> Option<&str> {
        self.from_env
            .iter()
            .find(|(path, var)| {
                path == &["storage", driver] && var.starts_with("REGISTRY_STORAGE=")
            })
            .map(|(_, var)| var.as_str())
    }

    /// The value at `path`, if present and not null.
    pub fn get(&self, path: &[impl AsRef<str>]) -> Option<&Value> {
        self.lookup(path).filter(|v| !v.is_null())
    }

    /// The value at `path`, if present (null included).
    pub fn lookup(&self, path: &[impl AsRef<str>]) -> Option<&Value> {
        let mut node = &self.value;
        for part in path {
            node = node.as_mapping()?.get(part.as_ref())?;
        }
        Some(node)
    }

    /// Keeps only `driver`'s section among the storage drivers (creating it if absent).
    fn select_driver(&mut self, driver: &str) {
        if let Some(Value::Mapping(storage)) = self
            .value
            .as_mapping_mut()
            .and_then(|m| m.get_mut("storage"))
        {
            storage.retain(|key, _| {
                key.as_str()
                    .is_none_or(|k| k == driver || STORAGE_PARAMETERS.contains(&k))
            });
        }
        if self.get(&["storage", driver]).is_none() {
            self.set(
                &["storage".to_string(), driver.to_string()],
                Value::Mapping(Mapping::new()),
            );
        }
    }

    /// Sets `key` (its path) to `value`, creating mappings on the way.
    fn set(&mut self, key: &[String], value: Value) {
        let mut node = &mut self.value;
        for part in key {
            if !node.is_mapping() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = node else { return };
            node = map
                .entry(Value::String(part.clone()))
                .or_insert(Value::Null);
        }
        *node = value;
    }
}

/// The leaves under `value` (found at `path`): each key path whose value is not a
/// non-empty mapping, with that value. A sequence is one leaf.
pub(super) fn leaves<'a>(path: &[String], value: &'a Value) -> Vec<(Vec<String>, &'a Value)> {
    fn walk<'a>(node: &'a Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
        match node {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.push(match k {
                        Value::String(s) => s.clone(),
                        other => super::file::describe(other),
                    });
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => out.push((path.clone(), node)),
        }
    }
    let mut out = Vec::new();
    walk(value, &mut path.to_vec(), &mut out);
    out
}
