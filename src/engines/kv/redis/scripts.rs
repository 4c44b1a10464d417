//! The commands Redis runs as one Lua script, and the scripts.
//!
//! # What holds
//!
//! - Each script is atomic because Redis runs a script without
//!   interleaving any other command.
//! - Every key a script touches is one of its `KEYS`, prefixed with the
//!   store's `key_prefix` like every other key; values are `ARGV`.
//! - A command alone runs its script by `EVALSHA`, loading it on
//!   `NOSCRIPT`; a pipeline sends `EVAL` with the source (one reply, no
//!   `NOSCRIPT` round trip).

use bb8_redis::redis::{Cmd, Script, cmd};

/// The compare-and-delete of a lock release.
/// KEYS: lock. ARGV: expected value.
pub(super) const COMPARE_AND_DELETE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The scripts, each one [`Command`](crate::engines::kv::Command)'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lua {
    CompareAndDelete,
}

impl Lua {
    /// Every script, in the order of [`Scripts`].
    const ALL: [Lua; 1] = [Lua::CompareAndDelete];

    /// The script's source.
    pub(super) fn source(self) -> &'static str {
        match self {
            Lua::CompareAndDelete => COMPARE_AND_DELETE,
        }
    }
}

/// Every script with its SHA1, for `EVALSHA`, computed once per store.
#[derive(Debug, Clone)]
pub(super) struct Scripts([Script; Lua::ALL.len()]);

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts(Lua::ALL.map(|lua| Script::new(lua.source())))
    }

    pub(super) fn get(&self, lua: Lua) -> &Script {
        &self.0[lua as usize]
    }
}

/// One run of a script: which one, its (prefixed) keys and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScriptCall {
    pub(super) lua: Lua,
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
}

impl ScriptCall {
    pub(super) fn new(lua: Lua) -> Self {
        ScriptCall {
            lua,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key(mut self, key: String) -> Self {
        self.keys.push(key);
        self
    }

    pub(super) fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    /// The script as one `EVAL`: what a pipeline sends (one reply, no
    /// `NOSCRIPT` round trip).
    pub(super) fn eval(&self) -> Cmd {
        let mut c = cmd("EVAL");
        c.arg(self.lua.source()).arg(self.keys.len());
        for key in &self.keys {
            c.arg(key);
        }
        for arg in &self.args {
            c.arg(arg.as_slice());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_listed_once_in_order() {
        for (i, lua) in Lua::ALL.into_iter().enumerate() {
            assert_eq!(lua as usize, i, "{lua:?}");
        }
        let scripts = Scripts::new();
        assert_eq!(
            scripts.get(Lua::CompareAndDelete).get_hash(),
            Script::new(COMPARE_AND_DELETE).get_hash()
        );
    }
}
