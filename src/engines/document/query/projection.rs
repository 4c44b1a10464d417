//! Find projections.
//!
//! # Contracts
//!
//! - A projection is inclusion (`{a: 1, "b.c": 1}`) or exclusion
//!   (`{a: 0}`); `_id` is included unless `_id: 0`, in either mode. Mixing
//!   the two (other than `_id`) or naming a path and a path inside it
//!   (`a` and `a.b`) is `InvalidInput`. An empty projection returns the whole
//!   document.
//! - Flags are `true`/`false` or numbers (zero excludes, any other number
//!   includes, as MongoDB reads them). Projection operators (`$slice`,
//!   `$elemMatch`, `$meta`, the positional `a.$`) and expression values are
//!   `Unsupported`, named. A nested document of flags (`{a: {b: 1}}`) means
//!   `"a.b": 1`.
//! - Dot paths keep the document's structure: an included `a.b` keeps `a` as
//!   a document holding only `b`, applies to every document of an array at
//!   `a` (dropping the array's non-document elements), and leaves out `a`
//!   when it is a scalar. Fields keep the document's order.

use bson::{Bson, Document};

use crate::error::{Error, Result};

use super::compare::decimal_to_f64;
use super::path::check_path;

/// A parsed projection: inclusion or exclusion, `_id` on by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// `None` for the empty projection (whole document).
    mode: Option<Mode>,
    include_id: bool,
    tree: Tree,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Include,
    Exclude,
}

/// Paths by component; a leaf is a projected field.
#[derive(Debug, Clone, PartialEq, Default)]
struct Tree {
    children: Vec<(String, Node)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf,
    Branch(Tree),
}

impl Tree {
    fn get(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, n)| n)
    }

    /// Adds a path; a path that is, or lies inside, or contains another is
    /// a collision.
    fn insert(&mut self, parts: &[&str], full: &str) -> Result<()> {
        let collision = || {
            Err(Error::invalid(format!("projection path collision at `{full}`")).with_field(full))
        };
        let Some((first, rest)) = parts.split_first() else {
            return Ok(());
        };
        let pos = self.children.iter().position(|(k, _)| k == first);
        match (pos, rest.is_empty()) {
            (None, true) => {
                self.children.push((first.to_string(), Node::Leaf));
                Ok(())
            }
            (None, false) => {
                let mut sub = Tree::default();
                sub.insert(rest, full)?;
                self.children.push((first.to_string(), Node::Branch(sub)));
                Ok(())
            }
            (Some(i), false) => match self.children.get_mut(i) {
                Some((_, Node::Branch(sub))) => sub.insert(rest, full),
                _ => collision(),
            },
            (Some(_), true) => collision(),
        }
    }
}

impl Projection {
    /// Parses `{field: 0 | 1 | true | false}`; mixing inclusion and
    /// exclusion (other than `_id`) is `InvalidInput`.
    pub fn parse(projection: &Document) -> Result<Projection> {
        let mut flat = Vec::new();
        flatten(projection, "", &mut flat)?;
        let mut mode = None;
        let mut include_id = true;
        let mut id_flag = None;
        let mut tree = Tree::default();
        for (path, include) in flat {
            if path == "_id" {
                include_id = include;
                id_flag = Some(include);
                continue;
            }
            let this = if include {
                Mode::Include
            } else {
                Mode::Exclude
            };
            match mode {
                None => mode = Some(this),
                Some(m) if m != this => {
                    let (what, kind) = if include {
                        ("inclusion", "exclusion")
                    } else {
                        ("exclusion", "inclusion")
                    };
                    return Err(Error::invalid(format!(
                        "Cannot do {what} on field `{path}` in {kind} projection"
                    ))
                    .with_field(path));
                }
                Some(_) => {}
            }
            let parts: Vec<&str> = path.split('.').collect();
            tree.insert(&parts, &path)?;
        }
        // Only `_id` named: its flag decides the mode.
        if mode.is_none() {
            mode = id_flag.map(|f| if f { Mode::Include } else { Mode::Exclude });
        }
        Ok(Projection {
            mode,
            include_id,
            tree,
        })
    }

    /// The projected document.
    pub fn apply(&self, doc: &Document) -> Document {
        match self.mode {
            None => doc.clone(),
            Some(Mode::Include) => {
                let mut out = Document::new();
                for (k, v) in doc {
                    if k == "_id" {
                        if self.include_id {
                            out.insert(k.clone(), v.clone());
                        }
                        continue;
                    }
                    if let Some(node) = self.tree.get(k)
                        && let Some(kept) = include_value(v, node)
                    {
                        out.insert(k.clone(), kept);
                    }
                }
                out
            }
            Some(Mode::Exclude) => {
                let mut out = exclude_doc(doc, &self.tree);
                if !self.include_id {
                    out.remove("_id");
                }
                out
            }
        }
    }
}

/// Flattens `{a: {b: 1}}` to `("a.b", true)` and checks every value.
fn flatten(projection: &Document, prefix: &str, out: &mut Vec<(String, bool)>) -> Result<()> {
    for (key, value) in projection {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        check_path(&path)?;
        if let Some(part) = path.split('.').find(|p| p.starts_with('$')) {
            return Err(Error::unsupported(format!(
                "unsupported projection operator `{part}` in `{path}`"
            ))
            .with_field(path));
        }
        let include = match value {
            Bson::Boolean(b) => *b,
            Bson::Int32(i) => *i != 0,
            Bson::Int64(i) => *i != 0,
            Bson::Double(d) => *d != 0.0,
            Bson::Decimal128(d) => decimal_to_f64(d) != 0.0,
            Bson::Document(d) => match d.keys().next() {
                Some(op) if op.starts_with('$') => {
                    return Err(Error::unsupported(format!(
                        "unsupported projection operator `{op}` for field `{path}`"
                    ))
                    .with_field(path));
                }
                Some(_) => {
                    flatten(d, &path, out)?;
                    continue;
                }
                None => {
                    return Err(Error::invalid(format!(
                        "an empty object is not a valid value for projection field `{path}`"
                    ))
                    .with_field(path));
                }
            },
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported projection expression `{other}` for field `{path}` (only 0/1/true/false)"
                ))
                .with_field(path));
            }
        };
        out.push((path, include));
    }
    Ok(())
}

fn include_value(value: &Bson, node: &Node) -> Option<Bson> {
    match node {
        Node::Leaf => Some(value.clone()),
        Node::Branch(sub) => match value {
            Bson::Document(d) => Some(Bson::Document(include_doc(d, sub))),
            Bson::Array(items) => Some(Bson::Array(
                items
                    .iter()
                    .filter_map(|e| include_value(e, node))
                    .collect(),
            )),
            _ => None,
        },
    }
}

fn include_doc(doc: &Document, tree: &Tree) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        if let Some(node) = tree.get(k)
            && let Some(kept) = include_value(v, node)
        {
            out.insert(k.clone(), kept);
        }
    }
    out
}

fn exclude_doc(doc: &Document, tree: &Tree) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        match tree.get(k) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            Some(Node::Leaf) => {}
            Some(Node::Branch(sub)) => {
                out.insert(k.clone(), exclude_value(v, sub));
            }
        }
    }
    out
}

fn exclude_value(value: &Bson, tree: &Tree) -> Bson {
    match value {
        Bson::Document(d) => Bson::Document(exclude_doc(d, tree)),
        Bson::Array(items) => Bson::Array(items.iter().map(|e| exclude_value(e, tree)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::doc;

    fn p(spec: Document, d: Document) -> Document {
        Projection::parse(&spec).unwrap().apply(&d)
    }

    fn sample() -> Document {
        doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "arr": [{"x": 1, "y": 2}, 5, {"y": 3}], "s": "str"}
    }

    #[test]
    fn empty_projection_is_whole_document() {
        assert_eq!(p(doc! {}, sample()), sample());
    }

    #[test]
    fn inclusion_keeps_id_and_structure() {
        assert_eq!(p(doc! {"a": 1}, sample()), doc! {"_id": 1, "a": 1});
        assert_eq!(p(doc! {"a": true, "_id": 0}, sample()), doc! {"a": 1});
        assert_eq!(p(doc! {"b.c": 1}, sample()), doc! {"_id": 1, "b": {"c": 2}});
        assert_eq!(
            p(doc! {"b": {"d": 1}}, sample()),
            doc! {"_id": 1, "b": {"d": 3}}
        );
        assert_eq!(
            p(doc! {"arr.y": 1}, sample()),
            doc! {"_id": 1, "arr": [{"y": 2}, {"y": 3}]}
        );
        assert_eq!(p(doc! {"s.x": 1, "zz": 1}, sample()), doc! {"_id": 1});
        assert_eq!(p(doc! {"b.zz": 1}, sample()), doc! {"_id": 1, "b": {}});
        // Document order, not projection order.
        assert_eq!(
            p(doc! {"s": 1, "a": 1}, sample()),
            doc! {"_id": 1, "a": 1, "s": "str"}
        );
        assert_eq!(p(doc! {"_id": 1}, sample()), doc! {"_id": 1});
        assert_eq!(p(doc! {"a": 5}, sample()), doc! {"_id": 1, "a": 1});
    }

    #[test]
    fn exclusion_removes_paths() {
        assert_eq!(
            p(doc! {"b": 0, "arr": 0, "s": false}, sample()),
            doc! {"_id": 1, "a": 1}
        );
        assert_eq!(
            p(doc! {"b.c": 0, "arr.x": 0, "_id": 0}, sample()),
            doc! {"a": 1, "b": {"d": 3}, "arr": [{"y": 2}, 5, {"y": 3}], "s": "str"}
        );
        assert_eq!(p(doc! {"_id": 0}, doc! {"_id": 1, "a": 1}), doc! {"a": 1});
        assert_eq!(
            p(doc! {"a": 0, "_id": 1}, doc! {"_id": 1, "a": 1}),
            doc! {"_id": 1}
        );
    }

    #[test]
    fn invalid_and_unsupported_projections() {
        let e = Projection::parse(&doc! {"a": 1, "b": 0}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("b"));
        let e = Projection::parse(&doc! {"a": 1, "a.b": 1}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Projection::parse(&doc! {"a.b": 1, "a": 1}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        for (spec, name) in [
            (doc! {"a": {"$slice": 2}}, "$slice"),
            (doc! {"a": {"$elemMatch": {"b": 1}}}, "$elemMatch"),
            (doc! {"a": {"$meta": "textScore"}}, "$meta"),
            (doc! {"a.$": 1}, "$"),
            (doc! {"a": "$b"}, "$b"),
            (doc! {"a": {"$add": [1, 2]}}, "$add"),
        ] {
            let e = Projection::parse(&spec).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{spec}");
            assert!(e.message().contains(name), "{}", e.message());
        }
    }
}
