//! `STRATA_*` environment variables as a figment provider.
//!
//! - `STRATA_SECTION__KEY=value` sets `section.key`, `__` nesting further;
//!   `STRATA_DATA_DIR` sets the top-level `data_dir`. Names are read in any
//!   case.
//! - Every top-level key of [`super::Config`] is a section, so a section
//!   added later is settable at once.
//! - A variable whose first part is not a section is not configuration and
//!   is left alone (`STRATA_PROFILE`, `STRATA_CONFIG_DIR`, `STRATA_LOG`,
//!   `STRATA_TEST_FULL`, `STRATA_SERVICES_DIR`), unless its name has `__`:
//!   that form is only ever configuration, so an unknown section there
//!   (`STRATA_KVV__URL`) is an error, as an unknown key is.
//! - Values stay the text they are (`007` stays `007`, a password of
//!   digits stays a string); numeric and boolean keys read numbers and
//!   booleans from text themselves.
//!
//! The environment comes from the process, or is given (tests), so that
//! nothing has to change the process environment to try a variable.

use std::ffi::OsString;
use std::fmt;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::error::{Error, ErrorKind, Result};

/// The prefix of every configuration variable.
pub const PREFIX: &str = "STRATA_";

/// The name figment's metadata carries for values set by a variable.
pub(super) const SOURCE_NAME: &str = "environment variable";

/// Where `STRATA_*` variables are read from.
#[derive(Clone, Default)]
pub enum Environment {
    /// The process's own environment.
    #[default]
    Process,
    /// Exactly these variables (tests; empty for none).
    Vars(Vec<(OsString, OsString)>),
}

impl Environment {
    /// No variables at all.
    pub fn none() -> Self {
        Environment::Vars(Vec::new())
    }

    /// Exactly `vars`.
    pub fn vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        Environment::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    fn read(&self) -> Vec<(OsString, OsString)> {
        match self {
            Environment::Process => std::env::vars_os().collect(),
            Environment::Vars(vars) => vars.clone(),
        }
    }
}

/// Names only: values may be secrets.
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environment::Process => f.write_str("Process"),
            Environment::Vars(vars) => f
                .debug_tuple("Vars")
                .field(&vars.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The configuration variables of an environment, read once: the values
/// nested by key, and which variable set which key.
pub(super) struct EnvLayer {
    values: Dict,
    /// (variable name, key path), in the order read.
    names: Vec<(String, Vec<String>)>,
}

impl fmt::Debug for EnvLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvLayer")
            .field("variables", &self.names)
            .finish_non_exhaustive()
    }
}

impl EnvLayer {
    /// Reads the configuration variables of `environment`; `sections` are
    /// the top-level keys of the configuration.
    pub(super) fn read(environment: &Environment, sections: &[String]) -> Result<EnvLayer> {
        let mut layer = EnvLayer {
            values: Dict::new(),
            names: Vec::new(),
        };
        let mut vars = environment.read();
        // The process environment has no order; errors must not depend on it.
        vars.sort();
        for (name, value) in vars {
            let lossy = name.to_string_lossy();
            let Some(key) = strip_prefix_ignore_case(&lossy, PREFIX) else {
                continue;
            };
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            let known = sections.iter().any(|s| *s == path[0]);
            // `STRATA_LOG` is the log filter (tracing's directives), not
            // the `log` section, which is set key by key (`STRATA_LOG__FORMAT`).
            if (!known || path[0] == "log") && path.len() == 1 {
                continue;
            }
            let name = lossy.into_owned();
            let fail = |what: String| Err(Error::new(ErrorKind::Config, format!("{name}: {what}")));
            if !known {
                return fail(format!(
                    "`{}` is not a configuration section (sections: {})",
                    path[0],
                    sections.join(", ")
                ));
            }
            if path.iter().any(String::is_empty) {
                return fail("empty key between `__` separators".to_owned());
            }
            let Ok(value) = value.into_string() else {
                return fail(format!(
                    "the value of {} is not valid UTF-8",
                    path.join(".")
                ));
            };
            if let Some((other, _)) = layer
                .names
                .iter()
                .find(|(_, p)| p.starts_with(&path) || path.starts_with(p))
            {
                return fail(format!("sets `{}`, which {other} sets too", path.join(".")));
            }
            insert(&mut layer.values, &path, Value::from(value));
            layer.names.push((name, path));
        }
        Ok(layer)
    }

    /// The variable that set the key at `path`, or the first that set a
    /// key under it.
    pub(super) fn variable_for(&self, path: &[&str]) -> Option<&str> {
        let matches =
            |p: &Vec<String>| p.len() >= path.len() && p.iter().zip(path).all(|(a, b)| a == b);
        self.names
            .iter()
            .find(|(_, p)| p.len() == path.len() && matches(p))
            .or_else(|| self.names.iter().find(|(_, p)| matches(p)))
            .map(|(name, _)| name.as_str())
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(SOURCE_NAME)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
        .filter(|rest| !rest.is_empty())
}

/// Puts `value` at `path`; paths were checked not to overlap, so every
/// step down is a table.
fn insert(dict: &mut Dict, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.clone(), value);
        return;
    }
    let entry = dict
        .entry(first.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections() -> Vec<String> {
        ["data_dir", "kv", "api"].map(String::from).to_vec()
    }

    #[test]
    fn sections_nest_others_are_ignored_and_values_stay_text() {
        let env = Environment::vars([
            ("STRATA_KV__KEY_PREFIX", "007"),
            ("strata_api__listen", "0.0.0.0:9"),
            ("STRATA_DATA_DIR", "/d"),
            ("STRATA_PROFILE", "full"),
            ("STRATA_TEST_FULL", "1"),
            ("PATH", "/bin"),
        ]);
        let layer = EnvLayer::read(&env, &sections()).unwrap();
        let kv = layer.values["kv"].as_dict().unwrap();
        assert_eq!(kv["key_prefix"].as_str(), Some("007"));
        assert_eq!(
            layer.values["api"].as_dict().unwrap()["listen"].as_str(),
            Some("0.0.0.0:9")
        );
        assert_eq!(layer.values.len(), 3, "{:?}", layer.values);
        assert_eq!(
            layer.variable_for(&["kv", "key_prefix"]),
            Some("STRATA_KV__KEY_PREFIX")
        );
        assert_eq!(layer.variable_for(&["api"]), Some("strata_api__listen"));
        assert_eq!(layer.variable_for(&["relational"]), None);
    }

    #[test]
    fn malformed_variables_are_errors_naming_them() {
        for (vars, needle) in [
            (vec![("STRATA_KVV__URL", "x")], "STRATA_KVV__URL"),
            (vec![("STRATA_KV____URL", "x")], "STRATA_KV____URL"),
            (vec![("STRATA_KV__", "x")], "STRATA_KV__"),
            (
                vec![("STRATA_KV", "x"), ("STRATA_KV__URL", "y")],
                "STRATA_KV__URL",
            ),
            (
                vec![("STRATA_KV__URL", "x"), ("strata_kv__url", "y")],
                "strata_kv__url",
            ),
        ] {
            let err = EnvLayer::read(&Environment::vars(vars.clone()), &sections()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{vars:?}");
            assert!(err.to_string().contains(needle), "{vars:?}: {err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let env = Environment::Vars(vec![(
            OsString::from("STRATA_KV__URL"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )]);
        let err = EnvLayer::read(&env, &sections()).unwrap_err();
        assert!(err.to_string().contains("STRATA_KV__URL"), "{err}");
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Environment::vars([("STRATA_RELATIONAL__PASSWORD", "hunter2")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("STRATA_RELATIONAL__PASSWORD") && !shown.contains("hunter2"));
    }
}
