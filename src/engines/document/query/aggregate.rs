//! Aggregation pipelines.
//!
//! # Contracts
//!
//! - Stages: `$match $project $addFields $set $group $sort $skip $limit
//!   $unwind $lookup $count $replaceRoot $replaceWith $facet $sortByCount`.
//!   Accumulators of `$group`: `$sum $avg $min $max $count $push $addToSet
//!   $first $last`. Expressions as in [`super::expr`]. Any other stage,
//!   accumulator, operator or `$lookup` option (`pipeline`, `let`) is
//!   `Unsupported`, named, at parse time (inside `$facet` too); malformed
//!   stages are `InvalidInput`.
//! - `$group` emits groups in order of first appearance in its input
//!   (MongoDB promises no order; this one is deterministic). Keys that are
//!   numerically equal (`1`, `1.0`, `1i64`) form one group, keyed by the
//!   first value seen. `$sum` ignores non-numbers (an array too) and gives
//!   int32 while the total fits, then int64, then double; `$avg` of no
//!   numbers is null; `$min`/`$max` ignore null and missing; `$push`/
//!   `$addToSet` skip missing values; `$first`/`$last` give null for a
//!   missing value.
//! - `$project` is inclusion (with computed fields) or exclusion; `_id` is
//!   kept unless excluded and comes first. `$addFields` evaluates every
//!   expression against the stage's input document; a nested object merges
//!   into an existing embedded document; a value that evaluates to missing
//!   (`$$REMOVE`) removes the field. A computed field at a dotted path is
//!   set in each element of an array on the way, and whatever else is in
//!   the way (a scalar, nothing) becomes a document holding it, an empty
//!   one when the value is missing: `{"a.b": "$$REMOVE"}` projects `{a: {}}`.
//! - `$unwind` follows MongoDB: `includeArrayIndex` is an int64 (null for
//!   a non-array value), `preserveNullAndEmptyArrays` keeps documents whose
//!   path is null, missing or `[]` (the empty array's field removed).
//! - `$lookup` joins on the values of `localField` as MongoDB collects them
//!   (`visitAllValuesAtPath`): arrays on the path are traversed, an array at
//!   its end gives its elements, missing branches give nothing, and no value
//!   at all (a missing field, `[]`, only branches without it) joins as null.
//!   The values then match `foreignField` as `{foreignField: {$in: values}}`
//!   would, with the query array rule: null matches a null or missing
//!   foreign field (not `[]`), an array value matches an equal array or one
//!   holding it.
//! - `$replaceRoot: {newRoot: e}` and `$replaceWith: e` replace each
//!   document by `e`, which must evaluate to a document (`InvalidInput`
//!   otherwise, naming the stage).
//! - `$facet` runs each non-empty sub-pipeline over the same input and
//!   outputs exactly one document, `{name: [results], ...}`, also for no
//!   input. `$facet` inside `$facet`, an empty sub-pipeline and an output
//!   name that is empty, starts with `$` or holds a `.` are `InvalidInput`.
//! - `$sortByCount: e` (a `$` path or an operator object) is `$group` by `e`
//!   with `count: {$sum: 1}` then a sort by `count` descending; equal counts
//!   keep the order of first appearance (MongoDB leaves it open).
//! - `$count` outputs nothing for an empty input, as MongoDB does.

use std::collections::HashMap;
use std::fmt::Write as _;

use bson::{Bson, Document};

use crate::error::{Error, Result};

use super::arith::Sum;
use super::compare::{Num, as_num, bson_equal, compare_bson};
use super::expr::Expr;
use super::filter::Filter;
use super::path::{array_index, check_path, remove_path, set_path, type_name};
use super::projection::Projection;
use super::sort::SortSpec;

/// A parsed, validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Match(Filter),
    Project(ProjectStage),
    AddFields(Vec<(String, Expr)>),
    Group(GroupStage),
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Unwind {
        path: String,
        index: Option<String>,
        preserve: bool,
    },
    Lookup {
        from: String,
        local: String,
        foreign: String,
        as_field: String,
    },
    Count(String),
    /// `$replaceRoot: {newRoot: e}` or `$replaceWith: e` (the stage's name,
    /// for errors).
    ReplaceRoot(&'static str, Expr),
    Facet(Vec<(String, Pipeline)>),
    SortByCount(Expr),
}

#[derive(Debug, Clone, PartialEq)]
enum ProjectStage {
    Exclude(Projection),
    Include {
        /// `None` when only computed fields (and maybe `_id`) are kept.
        kept: Option<Projection>,
        include_id: bool,
        computed: Vec<(String, Expr)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct GroupStage {
    id: Expr,
    fields: Vec<(String, Accumulator, Expr)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Accumulator {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Push,
    AddToSet,
    First,
    Last,
}

impl Pipeline {
    /// Parses the stages; `Unsupported` names an unknown stage, accumulator
    /// or expression operator.
    pub fn parse(stages: &[Document]) -> Result<Pipeline> {
        let stages = stages
            .iter()
            .map(|s| parse_stage(s, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pipeline { stages })
    }

    /// Collections that `$lookup` stages read (inside `$facet` too), so the
    /// store can load them.
    pub fn foreign_collections(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.collect_foreign(&mut out);
        out
    }

    fn collect_foreign(&self, out: &mut Vec<String>) {
        for stage in &self.stages {
            match stage {
                Stage::Lookup { from, .. } if !out.contains(from) => out.push(from.clone()),
                Stage::Facet(facets) => facets.iter().for_each(|(_, p)| p.collect_foreign(out)),
                _ => {}
            }
        }
    }

    /// Runs the pipeline over `input`. `collection` returns the documents of
    /// a collection named by `$lookup` (empty when it does not exist).
    pub fn run(
        &self,
        input: Vec<Document>,
        collection: &mut dyn FnMut(&str) -> Result<Vec<Document>>,
    ) -> Result<Vec<Document>> {
        let mut docs = input;
        for stage in &self.stages {
            docs = run_stage(stage, docs, collection)?;
        }
        Ok(docs)
    }
}

fn stage_error(stage: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{stage}: {message}")).with_field(stage.to_string())
}

/// Parses one stage; `in_facet` when it belongs to a `$facet` sub-pipeline,
/// where `$facet` itself is not allowed.
fn parse_stage(stage: &Document, in_facet: bool) -> Result<Stage> {
    if stage.len() != 1 {
        return Err(Error::invalid(
            "A pipeline stage specification object must contain exactly one field.",
        ));
    }
    let Some((name, spec)) = stage.iter().next() else {
        return Err(Error::invalid("empty pipeline stage"));
    };
    let name = name.as_str();
    let spec_doc = || match spec {
        Bson::Document(d) => Ok(d),
        _ => Err(stage_error(
            name,
            "the stage's specification must be an object",
        )),
    };
    Ok(match name {
        "$match" => Stage::Match(Filter::parse(spec_doc()?)?),
        "$project" => Stage::Project(parse_project(spec_doc()?)?),
        "$addFields" | "$set" => {
            let mut fields = Vec::new();
            flatten_fields(name, spec_doc()?, "", &mut fields)?;
            Stage::AddFields(fields)
        }
        "$group" => Stage::Group(parse_group(spec_doc()?)?),
        "$sort" => {
            let spec = SortSpec::parse(spec_doc()?)?;
            if spec.keys.is_empty() {
                return Err(stage_error(
                    name,
                    "$sort stage must have at least one sort key",
                ));
            }
            Stage::Sort(spec)
        }
        "$skip" => Stage::Skip(count_arg(name, spec)?),
        "$limit" => {
            let n = count_arg(name, spec)?;
            if n == 0 {
                return Err(stage_error(name, "the limit must be positive"));
            }
            Stage::Limit(n)
        }
        "$unwind" => parse_unwind(spec)?,
        "$lookup" => parse_lookup(spec_doc()?)?,
        "$count" => {
            let Bson::String(field) = spec else {
                return Err(stage_error(name, "the count field must be a string"));
            };
            if field.is_empty() || field.starts_with('$') || field.contains('.') {
                return Err(stage_error(
                    name,
                    format!(
                        "invalid count field `{field}`: it must be a non-empty name without `$` or `.`"
                    ),
                ));
            }
            Stage::Count(field.clone())
        }
        "$replaceRoot" => {
            let Bson::Document(spec) = spec else {
                return Err(stage_error(
                    name,
                    format!(
                        "expected an object as specification for $replaceRoot stage, got {}",
                        type_name(spec)
                    ),
                ));
            };
            if let Some(other) = spec.keys().find(|k| *k != "newRoot") {
                return Err(stage_error(
                    name,
                    format!("unknown field `{other}`: $replaceRoot takes `newRoot` only"),
                ));
            }
            let new_root = spec
                .get("newRoot")
                .ok_or_else(|| stage_error(name, "$replaceRoot needs `newRoot`"))?;
            Stage::ReplaceRoot("$replaceRoot", Expr::parse(new_root)?)
        }
        "$replaceWith" => Stage::ReplaceRoot("$replaceWith", Expr::parse(spec)?),
        "$facet" if in_facet => {
            return Err(stage_error(
                name,
                "$facet is not allowed to be used within a $facet stage",
            ));
        }
        "$facet" => parse_facet(spec_doc()?)?,
        "$sortByCount" => parse_sort_by_count(spec)?,
        other if other.starts_with('$') => {
            return Err(Error::unsupported(format!(
                "unsupported aggregation stage `{other}`"
            )));
        }
        other => {
            return Err(Error::invalid(format!(
                "Unrecognized pipeline stage name: `{other}`"
            )));
        }
    })
}

fn parse_facet(spec: &Document) -> Result<Stage> {
    if spec.is_empty() {
        return Err(stage_error(
            "$facet",
            "the $facet specification must be a non-empty object",
        ));
    }
    let mut facets = Vec::with_capacity(spec.len());
    for (name, value) in spec {
        if name.is_empty() || name.starts_with('$') || name.contains('.') {
            return Err(stage_error(
                "$facet",
                format!(
                    "invalid output field name `{name}`: it must be non-empty, without a leading `$` or a `.`"
                ),
            ));
        }
        let Bson::Array(items) = value else {
            return Err(stage_error(
                "$facet",
                format!(
                    "arguments to $facet must be arrays, {name} is type {}",
                    type_name(value)
                ),
            ));
        };
        if items.is_empty() {
            return Err(stage_error(
                "$facet",
                format!("sub-pipeline `{name}` in $facet stage cannot be empty"),
            ));
        }
        let mut stages = Vec::with_capacity(items.len());
        for item in items {
            let Bson::Document(stage) = item else {
                return Err(stage_error(
                    "$facet",
                    format!(
                        "elements of arrays in $facet spec must be non-empty objects, {name} argument contained a {}",
                        type_name(item)
                    ),
                ));
            };
            stages.push(parse_stage(stage, true)?);
        }
        facets.push((name.clone(), Pipeline { stages }));
    }
    Ok(Stage::Facet(facets))
}

/// `$sortByCount: e`: a `$group` by `e` with `count: {$sum: 1}`, then a
/// sort by count, descending. `e` must be a `$` path or an operator object.
fn parse_sort_by_count(spec: &Bson) -> Result<Stage> {
    let name = "$sortByCount";
    match spec {
        Bson::String(p) if p.starts_with('$') => {}
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {}
        Bson::String(_) | Bson::Document(_) => {
            return Err(stage_error(
                name,
                "the sortByCount field must be defined as a $-prefixed path or an expression inside an object",
            ));
        }
        _ => {
            return Err(stage_error(
                name,
                "the sortByCount field must be specified as a string or as an object",
            ));
        }
    }
    Ok(Stage::SortByCount(Expr::parse(spec)?))
}

fn count_arg(stage: &str, spec: &Bson) -> Result<u64> {
    let n = match spec {
        Bson::Int32(i) => u64::try_from(*i).ok(),
        Bson::Int64(i) => u64::try_from(*i).ok(),
        Bson::Double(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 9.2e18 => Some(*d as u64),
        _ => None,
    };
    n.ok_or_else(|| stage_error(stage, format!("needs a non-negative integer, got {spec}")))
}

/// Flattens `{a: {b: expr}}` to `("a.b", expr)`; an object whose first key
/// is an operator is an expression, an empty object a literal `{}`.
fn flatten_fields(
    stage: &str,
    spec: &Document,
    prefix: &str,
    out: &mut Vec<(String, Expr)>,
) -> Result<()> {
    for (key, value) in spec {
        if key.starts_with('$') {
            return Err(stage_error(
                stage,
                format!("field names may not start with `$`: `{key}`"),
            ));
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        check_path(&path)?;
        match value {
            Bson::Document(d)
                if !d.is_empty() && !d.keys().next().is_some_and(|k| k.starts_with('$')) =>
            {
                flatten_fields(stage, d, &path, out)?;
            }
            other => out.push((path, Expr::parse(other)?)),
        }
    }
    Ok(())
}

fn parse_project(spec: &Document) -> Result<ProjectStage> {
    if spec.is_empty() {
        return Err(stage_error(
            "$project",
            "$project requires at least one output field",
        ));
    }
    #[derive(PartialEq)]
    enum Item {
        Include,
        Exclude,
        Computed(Expr),
    }
    fn flatten(spec: &Document, prefix: &str, out: &mut Vec<(String, Item)>) -> Result<()> {
        for (key, value) in spec {
            if key.starts_with('$') {
                return Err(stage_error(
                    "$project",
                    format!("field names may not start with `$`: `{key}`"),
                ));
            }
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            check_path(&path)?;
            let item = match value {
                Bson::Boolean(b) => {
                    if *b {
                        Item::Include
                    } else {
                        Item::Exclude
                    }
                }
                Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
                    match as_num(value) {
                        Some(Num::Int(0)) => Item::Exclude,
                        Some(Num::Float(0.0)) => Item::Exclude,
                        _ => Item::Include,
                    }
                }
                Bson::Document(d) if d.is_empty() => {
                    return Err(stage_error(
                        "$project",
                        format!("an empty object is not a valid value for `{path}`"),
                    ));
                }
                Bson::Document(d) if !d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                    flatten(d, &path, out)?;
                    continue;
                }
                other => Item::Computed(Expr::parse(other)?),
            };
            out.push((path, item));
        }
        Ok(())
    }
    let mut items = Vec::new();
    flatten(spec, "", &mut items)?;
    let excludes_other = items.iter().any(|(p, i)| p != "_id" && *i == Item::Exclude);
    if excludes_other {
        let mut exclusion = Document::new();
        for (path, item) in &items {
            match item {
                Item::Exclude => {
                    exclusion.insert(path.clone(), 0);
                }
                _ if path == "_id" && *item == Item::Include => {}
                _ => {
                    return Err(stage_error(
                        "$project",
                        format!("Cannot do inclusion on field `{path}` in exclusion projection"),
                    ));
                }
            }
        }
        return Ok(ProjectStage::Exclude(Projection::parse(&exclusion)?));
    }
    let mut include_id = true;
    let mut kept = Document::new();
    let mut computed = Vec::new();
    for (path, item) in items {
        match item {
            Item::Exclude => include_id = false,
            Item::Include if path == "_id" => include_id = true,
            Item::Include => {
                kept.insert(path, 1);
            }
            Item::Computed(e) => {
                if path == "_id" {
                    include_id = false;
                }
                computed.push((path, e));
            }
        }
    }
    let kept = if kept.is_empty() {
        None
    } else {
        kept.insert("_id", include_id);
        Some(Projection::parse(&kept)?)
    };
    Ok(ProjectStage::Include {
        kept,
        include_id,
        computed,
    })
}

fn parse_group(spec: &Document) -> Result<GroupStage> {
    let id = spec
        .get("_id")
        .ok_or_else(|| stage_error("$group", "a group specification must include an _id"))?;
    let id = Expr::parse(id)?;
    let mut fields = Vec::new();
    for (name, value) in spec {
        if name == "_id" {
            continue;
        }
        if name.contains('.') || name.starts_with('$') || name.is_empty() {
            return Err(stage_error(
                "$group",
                format!("invalid output field name `{name}`"),
            ));
        }
        let Bson::Document(acc) = value else {
            return Err(stage_error(
                "$group",
                format!("the field `{name}` must be an accumulator object"),
            ));
        };
        let (Some((op, arg)), 1) = (acc.iter().next(), acc.len()) else {
            return Err(stage_error(
                "$group",
                format!("the field `{name}` must specify one accumulator"),
            ));
        };
        let accumulator = match op.as_str() {
            "$sum" => Accumulator::Sum,
            "$avg" => Accumulator::Avg,
            "$min" => Accumulator::Min,
            "$max" => Accumulator::Max,
            "$count" => Accumulator::Count,
            "$push" => Accumulator::Push,
            "$addToSet" => Accumulator::AddToSet,
            "$first" => Accumulator::First,
            "$last" => Accumulator::Last,
            other if other.starts_with('$') => {
                return Err(Error::unsupported(format!(
                    "unsupported accumulator `{other}`"
                )));
            }
            other => {
                return Err(stage_error(
                    "$group",
                    format!("unknown group operator `{other}`"),
                ));
            }
        };
        let expr = if accumulator == Accumulator::Count {
            if !matches!(arg, Bson::Document(d) if d.is_empty()) {
                return Err(stage_error(
                    "$group",
                    "$count takes an empty object: `$count: {}`",
                ));
            }
            Expr::literal(Bson::Int32(1))
        } else {
            Expr::parse(arg)?
        };
        fields.push((name.clone(), accumulator, expr));
    }
    Ok(GroupStage { id, fields })
}

fn parse_unwind(spec: &Bson) -> Result<Stage> {
    let (path, index, preserve) = match spec {
        Bson::String(p) => (p.clone(), None, false),
        Bson::Document(d) => {
            let mut path = None;
            let mut index = None;
            let mut preserve = false;
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("path", Bson::String(p)) => path = Some(p.clone()),
                    ("includeArrayIndex", Bson::String(i)) => {
                        if i.is_empty() || i.starts_with('$') {
                            return Err(stage_error(
                                "$unwind",
                                "includeArrayIndex must be a field name without `$`",
                            ));
                        }
                        index = Some(i.clone());
                    }
                    ("preserveNullAndEmptyArrays", Bson::Boolean(b)) => preserve = *b,
                    ("path" | "includeArrayIndex" | "preserveNullAndEmptyArrays", _) => {
                        return Err(stage_error("$unwind", format!("`{k}` has the wrong type")));
                    }
                    (other, _) => {
                        return Err(stage_error(
                            "$unwind",
                            format!("unrecognized option `{other}`"),
                        ));
                    }
                }
            }
            let path = path.ok_or_else(|| stage_error("$unwind", "no path specified"))?;
            (path, index, preserve)
        }
        _ => return Err(stage_error("$unwind", "expected a string or an object")),
    };
    let Some(field) = path.strip_prefix('$') else {
        return Err(stage_error(
            "$unwind",
            format!("path `{path}` must be prefixed by `$`"),
        ));
    };
    check_path(field)?;
    if let Some(i) = &index {
        check_path(i)?;
    }
    Ok(Stage::Unwind {
        path: field.to_string(),
        index,
        preserve,
    })
}

fn parse_lookup(spec: &Document) -> Result<Stage> {
    let mut from = None;
    let mut local = None;
    let mut foreign = None;
    let mut as_field = None;
    for (k, v) in spec {
        let slot = match k.as_str() {
            "from" => &mut from,
            "localField" => &mut local,
            "foreignField" => &mut foreign,
            "as" => &mut as_field,
            "pipeline" | "let" => {
                return Err(Error::unsupported(format!(
                    "unsupported $lookup option `{k}` (only localField/foreignField lookups)"
                )));
            }
            other => {
                return Err(stage_error(
                    "$lookup",
                    format!("unknown argument `{other}`"),
                ));
            }
        };
        match v {
            Bson::String(s) => *slot = Some(s.clone()),
            Bson::Document(_) if k == "from" => {
                return Err(Error::unsupported(
                    "unsupported $lookup `from` of another database",
                ));
            }
            _ => return Err(stage_error("$lookup", format!("`{k}` must be a string"))),
        }
    }
    let need = |v: Option<String>, name: &str| {
        v.ok_or_else(|| stage_error("$lookup", format!("missing `{name}`")))
    };
    let stage = Stage::Lookup {
        from: need(from, "from")?,
        local: need(local, "localField")?,
        foreign: need(foreign, "foreignField")?,
        as_field: need(as_field, "as")?,
    };
    if let Stage::Lookup {
        local,
        foreign,
        as_field,
        ..
    } = &stage
    {
        check_path(local)?;
        check_path(foreign)?;
        check_path(as_field)?;
    }
    Ok(stage)
}

fn run_stage(
    stage: &Stage,
    docs: Vec<Document>,
    collection: &mut dyn FnMut(&str) -> Result<Vec<Document>>,
) -> Result<Vec<Document>> {
    Ok(match stage {
        Stage::Match(filter) => docs.into_iter().filter(|d| filter.matches(d)).collect(),
        Stage::Project(p) => docs.iter().map(|d| project(p, d)).collect::<Result<_>>()?,
        Stage::AddFields(fields) => docs
            .into_iter()
            .map(|d| add_fields(fields, d))
            .collect::<Result<_>>()?,
        Stage::Group(g) => group(g, &docs)?,
        Stage::Sort(spec) => spec.sort(docs),
        Stage::Skip(n) => docs
            .into_iter()
            .skip(usize::try_from(*n).unwrap_or(usize::MAX))
            .collect(),
        Stage::Limit(n) => docs
            .into_iter()
            .take(usize::try_from(*n).unwrap_or(usize::MAX))
            .collect(),
        Stage::Unwind {
            path,
            index,
            preserve,
        } => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                unwind(&d, path, index.as_deref(), *preserve, &mut out)?;
            }
            out
        }
        Stage::Lookup {
            from,
            local,
            foreign,
            as_field,
        } => {
            let foreign_docs = collection(from)?;
            let mut out = Vec::with_capacity(docs.len());
            for mut d in docs {
                let filter = Filter::field_in(foreign, lookup_keys(&d, local));
                let joined: Vec<Bson> = foreign_docs
                    .iter()
                    .filter(|f| filter.matches(f))
                    .map(|f| Bson::Document(f.clone()))
                    .collect();
                set_path(&mut d, as_field, Bson::Array(joined))?;
                out.push(d);
            }
            out
        }
        Stage::Count(field) => {
            if docs.is_empty() {
                Vec::new()
            } else {
                let n = docs.len();
                let value = i32::try_from(n).map_or(Bson::Int64(n as i64), Bson::Int32);
                vec![bson::doc! { field.as_str(): value }]
            }
        }
        Stage::ReplaceRoot(name, expr) => docs
            .iter()
            .map(|d| match expr.eval(d)? {
                Some(Bson::Document(root)) => Ok(root),
                other => Err(stage_error(
                    name,
                    format!(
                        "'newRoot' expression must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'",
                        other.as_ref().map_or("MISSING".to_string(), ToString::to_string),
                        other.as_ref().map_or("missing", type_name)
                    ),
                )),
            })
            .collect::<Result<_>>()?,
        Stage::Facet(facets) => {
            let mut out = Document::new();
            for (name, pipeline) in facets {
                let mut results = docs.clone();
                for stage in &pipeline.stages {
                    results = run_stage(stage, results, collection)?;
                }
                out.insert(
                    name.clone(),
                    Bson::Array(results.into_iter().map(Bson::Document).collect()),
                );
            }
            vec![out]
        }
        Stage::SortByCount(expr) => {
            let by_count = GroupStage {
                id: expr.clone(),
                fields: vec![(
                    "count".to_string(),
                    Accumulator::Sum,
                    Expr::literal(Bson::Int32(1)),
                )],
            };
            // `$group` emits groups in order of first appearance and the sort
            // is stable, so ties keep that order (MongoDB leaves it open).
            let mut counted = group(&by_count, &docs)?;
            counted.sort_by(|a, b| compare_bson(count_of(b), count_of(a)));
            counted
        }
    })
}

fn count_of(doc: &Document) -> &Bson {
    doc.get("count").unwrap_or(&Bson::Null)
}

/// The values `$lookup` joins on, as MongoDB's `visitAllValuesAtPath`
/// collects them: arrays met before the end of the path are traversed
/// (their documents only), numeric components index arrays, an array at the
/// end gives its elements, and missing branches give nothing. No value at
/// all (missing, or only empty arrays) joins as null.
fn lookup_keys(doc: &Document, path: &str) -> Vec<Bson> {
    fn trailing(value: Option<&Bson>, out: &mut Vec<Bson>) {
        match value {
            Some(Bson::Array(items)) => out.extend(items.iter().cloned()),
            Some(v) => out.push(v.clone()),
            None => {}
        }
    }
    fn visit(doc: &Document, parts: &[&str], out: &mut Vec<Bson>) {
        let Some((first, mut rest)) = parts.split_first() else {
            return;
        };
        let mut value = doc.get(*first);
        if rest.is_empty() {
            trailing(value, out);
            return;
        }
        // Numeric components index arrays, as long as arrays continue.
        while let (Some(Bson::Array(items)), Some((part, after))) = (value, rest.split_first()) {
            let Some(index) = array_index(part) else {
                break;
            };
            value = items.get(index);
            rest = after;
        }
        if rest.is_empty() {
            trailing(value, out);
            return;
        }
        match value {
            Some(Bson::Array(items)) => {
                for item in items {
                    if let Bson::Document(d) = item {
                        visit(d, rest, out);
                    }
                }
            }
            Some(Bson::Document(d)) => visit(d, rest, out),
            _ => {}
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    let mut keys = Vec::new();
    visit(doc, &parts, &mut keys);
    if keys.is_empty() {
        keys.push(Bson::Null);
    }
    keys
}

fn project(p: &ProjectStage, doc: &Document) -> Result<Document> {
    match p {
        ProjectStage::Exclude(projection) => Ok(projection.apply(doc)),
        ProjectStage::Include {
            kept,
            include_id,
            computed,
        } => {
            let mut out = match kept {
                Some(projection) => projection.apply(doc),
                None => {
                    let mut d = Document::new();
                    if *include_id && let Some(id) = doc.get("_id") {
                        d.insert("_id", id.clone());
                    }
                    d
                }
            };
            for (path, expr) in computed {
                set_computed(&mut out, path, expr.eval(doc)?.as_ref());
            }
            // `_id` leads the output, as in MongoDB.
            if let Some(id) = out.remove("_id") {
                let mut ordered = Document::new();
                ordered.insert("_id", id);
                ordered.extend(out);
                out = ordered;
            }
            Ok(out)
        }
    }
}

fn add_fields(fields: &[(String, Expr)], doc: Document) -> Result<Document> {
    let values = fields
        .iter()
        .map(|(_, e)| e.eval(&doc))
        .collect::<Result<Vec<_>>>()?;
    let mut out = doc;
    for ((path, _), value) in fields.iter().zip(values) {
        set_computed(&mut out, path, value.as_ref());
    }
    Ok(out)
}

/// Sets a computed field of `$project`/`$addFields`, or removes it when the
/// value is missing (`$$REMOVE`), as MongoDB's projection tree applies
/// expressions: a document on the way gets the field, an array on the way
/// applies it to each element (nested arrays too), and anything else on the
/// way (a scalar, null, nothing) becomes a document holding just the
/// computed field, an empty one when the value is missing.
fn set_computed(doc: &mut Document, path: &str, value: Option<&Bson>) {
    let parts: Vec<&str> = path.split('.').collect();
    set_computed_in(doc, &parts, value);
}

fn set_computed_in(doc: &mut Document, parts: &[&str], value: Option<&Bson>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        match value {
            Some(v) => {
                doc.insert(*first, v.clone());
            }
            None => {
                doc.remove(*first);
            }
        }
        return;
    }
    match doc.get_mut(*first) {
        Some(slot) => set_computed_value(slot, rest, value),
        None => {
            let mut sub = Document::new();
            set_computed_in(&mut sub, rest, value);
            doc.insert(*first, sub);
        }
    }
}

fn set_computed_value(target: &mut Bson, parts: &[&str], value: Option<&Bson>) {
    match target {
        Bson::Document(sub) => set_computed_in(sub, parts, value),
        Bson::Array(items) => {
            for item in items.iter_mut() {
                set_computed_value(item, parts, value);
            }
        }
        other => {
            let mut sub = Document::new();
            set_computed_in(&mut sub, parts, value);
            *other = Bson::Document(sub);
        }
    }
}

/// A key under which numerically equal values (`1`, `1.0`) meet.
fn group_key(v: &Bson, out: &mut String) {
    match as_num(v) {
        Some(Num::Int(i)) => {
            let _ = write!(out, "n{i};");
        }
        Some(Num::Float(f)) => {
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                let _ = write!(out, "n{};", f as i64);
            } else if f.is_nan() {
                out.push_str("nNaN;");
            } else {
                let _ = write!(out, "f{:x};", f.to_bits());
            }
        }
        None => match v {
            Bson::String(s) | Bson::Symbol(s) => {
                let _ = write!(out, "s{}:{s};", s.len());
            }
            Bson::Document(d) => {
                out.push('{');
                for (k, v) in d {
                    let _ = write!(out, "{}:{k}=", k.len());
                    group_key(v, out);
                }
                out.push('}');
            }
            Bson::Array(items) => {
                out.push('[');
                items.iter().for_each(|e| group_key(e, out));
                out.push(']');
            }
            Bson::Null | Bson::Undefined => out.push_str("null;"),
            other => {
                let _ = write!(out, "o{other:?};");
            }
        },
    }
}

enum AccState {
    Sum(Sum),
    Avg(Sum),
    Min(Option<Bson>),
    Max(Option<Bson>),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
    First(Option<Bson>),
    Last(Bson),
}

impl AccState {
    fn new(acc: Accumulator) -> AccState {
        match acc {
            Accumulator::Sum | Accumulator::Count => AccState::Sum(Sum::default()),
            Accumulator::Avg => AccState::Avg(Sum::default()),
            Accumulator::Min => AccState::Min(None),
            Accumulator::Max => AccState::Max(None),
            Accumulator::Push => AccState::Push(Vec::new()),
            Accumulator::AddToSet => AccState::AddToSet(Vec::new()),
            Accumulator::First => AccState::First(None),
            Accumulator::Last => AccState::Last(Bson::Null),
        }
    }

    fn push(&mut self, value: Option<Bson>, name: &str) -> Result<()> {
        let want = if matches!(self, AccState::Min(_)) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        };
        match self {
            AccState::Sum(s) | AccState::Avg(s) => {
                if let Some(v) = value {
                    s.push(&v, name)?;
                }
            }
            AccState::Min(best) | AccState::Max(best) => {
                if let Some(v) = value.filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
                    && best.as_ref().is_none_or(|b| compare_bson(&v, b) == want)
                {
                    *best = Some(v);
                }
            }
            AccState::Push(items) => items.extend(value),
            AccState::AddToSet(items) => {
                if let Some(v) = value
                    && !items.iter().any(|e| bson_equal(e, &v))
                {
                    items.push(v);
                }
            }
            AccState::First(first) => {
                if first.is_none() {
                    *first = Some(value.unwrap_or(Bson::Null));
                }
            }
            AccState::Last(last) => *last = value.unwrap_or(Bson::Null),
        }
        Ok(())
    }

    fn finish(self) -> Bson {
        match self {
            AccState::Sum(s) => s.total(),
            AccState::Avg(s) => s.average(),
            AccState::Min(b) | AccState::Max(b) => b.unwrap_or(Bson::Null),
            AccState::Push(items) | AccState::AddToSet(items) => Bson::Array(items),
            AccState::First(f) => f.unwrap_or(Bson::Null),
            AccState::Last(l) => l,
        }
    }
}

fn accumulator_name(acc: Accumulator) -> &'static str {
    match acc {
        Accumulator::Sum => "$sum",
        Accumulator::Avg => "$avg",
        Accumulator::Min => "$min",
        Accumulator::Max => "$max",
        Accumulator::Count => "$count",
        Accumulator::Push => "$push",
        Accumulator::AddToSet => "$addToSet",
        Accumulator::First => "$first",
        Accumulator::Last => "$last",
    }
}

fn group(g: &GroupStage, docs: &[Document]) -> Result<Vec<Document>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(Bson, Vec<AccState>)> = Vec::new();
    for d in docs {
        let id = g.id.eval(d)?.unwrap_or(Bson::Null);
        let mut key = String::new();
        group_key(&id, &mut key);
        let slot = match index.get(&key) {
            Some(i) => *i,
            None => {
                groups.push((
                    id,
                    g.fields
                        .iter()
                        .map(|(_, acc, _)| AccState::new(*acc))
                        .collect(),
                ));
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        let Some((_, states)) = groups.get_mut(slot) else {
            return Err(Error::internal("group slot out of range"));
        };
        for ((_, acc, expr), state) in g.fields.iter().zip(states.iter_mut()) {
            state.push(expr.eval(d)?, accumulator_name(*acc))?;
        }
    }
    Ok(groups
        .into_iter()
        .map(|(id, states)| {
            let mut out = Document::new();
            out.insert("_id", id);
            for ((name, _, _), state) in g.fields.iter().zip(states) {
                out.insert(name.clone(), state.finish());
            }
            out
        })
        .collect())
}

/// The value at a path through documents only (`$unwind` does not index
/// or traverse arrays on the way).
fn get_doc_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut current = doc.get(parts.next()?)?;
    for part in parts {
        match current {
            Bson::Document(d) => current = d.get(part)?,
            _ => return None,
        }
    }
    Some(current)
}

fn unwind(
    doc: &Document,
    path: &str,
    index: Option<&str>,
    preserve: bool,
    out: &mut Vec<Document>,
) -> Result<()> {
    let with_index = |mut d: Document, i: Bson| -> Result<Document> {
        if let Some(field) = index {
            set_path(&mut d, field, i)?;
        }
        Ok(d)
    };
    match get_doc_path(doc, path) {
        Some(Bson::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let mut d = doc.clone();
                set_path(&mut d, path, item.clone())?;
                out.push(with_index(d, Bson::Int64(i as i64))?);
            }
        }
        Some(Bson::Array(_)) => {
            if preserve {
                let mut d = doc.clone();
                remove_path(&mut d, path);
                out.push(with_index(d, Bson::Null)?);
            }
        }
        None | Some(Bson::Null) | Some(Bson::Undefined) => {
            if preserve {
                out.push(with_index(doc.clone(), Bson::Null)?);
            }
        }
        Some(_) => out.push(with_index(doc.clone(), Bson::Null)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::{bson, doc};

    fn run(stages: Vec<Document>, input: Vec<Document>) -> Vec<Document> {
        let p = Pipeline::parse(&stages).unwrap();
        p.run(input, &mut |_| Ok(Vec::new())).unwrap()
    }

    fn runs() -> Vec<Document> {
        vec![
            doc! {"_id": 1, "model": "a", "acc": 0.9, "epochs": 10, "tags": ["x", "y"]},
            doc! {"_id": 2, "model": "b", "acc": 0.7, "epochs": 5, "tags": []},
            doc! {"_id": 3, "model": "a", "acc": 0.8, "epochs": 20},
            doc! {"_id": 4, "model": "c", "epochs": "n/a", "tags": null},
        ]
    }

    #[test]
    fn match_sort_skip_limit() {
        let out = run(
            vec![
                doc! {"$match": {"epochs": {"$gte": 5}}},
                doc! {"$sort": {"acc": -1}},
                doc! {"$skip": 1},
                doc! {"$limit": 1},
            ],
            runs(),
        );
        assert_eq!(out, vec![runs()[2].clone()]);
    }

    #[test]
    fn group_accumulators_and_order_of_first_appearance() {
        let out = run(
            vec![doc! {"$group": {
                "_id": "$model",
                "n": {"$count": {}},
                "total": {"$sum": "$epochs"},
                "ones": {"$sum": 1},
                "avg": {"$avg": "$acc"},
                "best": {"$max": "$acc"},
                "worst": {"$min": "$acc"},
                "ids": {"$push": "$_id"},
                "first": {"$first": "$acc"},
                "last": {"$last": "$acc"},
                "tags": {"$addToSet": "$tags"},
            }}],
            runs(),
        );
        assert_eq!(
            out,
            vec![
                doc! {"_id": "a", "n": 2, "total": 30, "ones": 2, "avg": (0.9 + 0.8) / 2.0, "best": 0.9, "worst": 0.8,
                "ids": [1, 3], "first": 0.9, "last": 0.8, "tags": [["x", "y"]]},
                doc! {"_id": "b", "n": 1, "total": 5, "ones": 1, "avg": 0.7, "best": 0.7, "worst": 0.7,
                "ids": [2], "first": 0.7, "last": 0.7, "tags": [[]]},
                doc! {"_id": "c", "n": 1, "total": 0, "ones": 1, "avg": null, "best": null, "worst": null,
                "ids": [4], "first": null, "last": null, "tags": [null]},
            ]
        );
    }

    #[test]
    fn group_keys_null_documents_and_numeric_equality() {
        let input = vec![
            doc! {"k": 1, "v": Bson::Int64(i64::MAX)},
            doc! {"k": 1.0, "v": Bson::Int64(1)},
            doc! {"v": 2},
            doc! {"k": null, "v": 2.5},
        ];
        let out = run(
            vec![doc! {"$group": {"_id": "$k", "s": {"$sum": "$v"}}}],
            input.clone(),
        );
        assert_eq!(
            out,
            vec![
                doc! {"_id": 1, "s": Bson::Double(i64::MAX as f64 + 1.0)},
                doc! {"_id": null, "s": 4.5},
            ]
        );
        let out = run(
            vec![doc! {"$group": {"_id": {"k": "$k", "c": "x"}, "n": {"$sum": 1}}}],
            input.clone(),
        );
        assert_eq!(out[0], doc! {"_id": {"k": 1, "c": "x"}, "n": 2});
        let out = run(
            vec![doc! {"$group": {"_id": null, "n": {"$sum": 1}, "s": {"$sum": "$v"}}}],
            input[2..].to_vec(),
        );
        assert_eq!(out, vec![doc! {"_id": null, "n": 2, "s": 4.5}]);
        let big = vec![doc! {"v": i32::MAX}, doc! {"v": 1}];
        let out = run(
            vec![doc! {"$group": {"_id": null, "s": {"$sum": "$v"}}}],
            big,
        );
        assert_eq!(out[0].get("s"), Some(&Bson::Int64(i64::from(i32::MAX) + 1)));
    }

    #[test]
    fn project_inclusion_exclusion_and_computed() {
        let d = vec![doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1}, {"f": 2}]}];
        assert_eq!(
            run(vec![doc! {"$project": {"a": 1, "b.c": 1}}], d.clone()),
            vec![doc! {"_id": 1, "a": 1, "b": {"c": 2}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$project": {"b": 0, "e": 0, "_id": 0}}],
                d.clone()
            ),
            vec![doc! {"a": 1}]
        );
        assert_eq!(
            run(
                vec![
                    doc! {"$project": {"_id": 0, "sum": {"$add": ["$a", "$b.d"]}, "lit": "x", "gone": "$nope", "n": {"x": "$a"}}}
                ],
                d.clone()
            ),
            vec![doc! {"sum": 4, "lit": "x", "n": {"x": 1}}]
        );
        assert_eq!(
            run(vec![doc! {"$project": {"e.g": "$a", "a": 1}}], d.clone()),
            vec![doc! {"_id": 1, "a": 1, "e": {"g": 1}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$project": {"x": "$a", "_id": "$b.c"}}],
                d.clone()
            ),
            vec![doc! {"_id": 2, "x": 1}]
        );
        let e = Pipeline::parse(&[doc! {"$project": {"a": 1, "b": 0}}]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Pipeline::parse(&[doc! {"$project": {"a": 0, "b": "$x"}}]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            Pipeline::parse(&[doc! {"$project": {}}])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn add_fields_and_set() {
        let d = vec![doc! {"_id": 1, "a": 1, "n": {"x": 1}, "arr": [{"k": 1}, {"k": 2}]}];
        assert_eq!(
            run(
                vec![
                    doc! {"$addFields": {"b": {"$multiply": ["$a", 10]}, "n": {"y": "$a"}, "a": 5, "c": "$a"}}
                ],
                d.clone()
            ),
            vec![
                doc! {"_id": 1, "a": 5, "n": {"x": 1, "y": 1}, "arr": [{"k": 1}, {"k": 2}], "b": 10, "c": 1}
            ]
        );
        assert_eq!(
            run(vec![doc! {"$set": {"arr.z": true, "a": "$missing"}}], d),
            vec![doc! {"_id": 1, "n": {"x": 1}, "arr": [{"k": 1, "z": true}, {"k": 2, "z": true}]}]
        );
    }

    #[test]
    fn unwind_forms() {
        let out = run(vec![doc! {"$unwind": "$tags"}], runs());
        assert_eq!(
            out.iter()
                .map(|d| d.get("tags").cloned().unwrap())
                .collect::<Vec<_>>(),
            vec![bson!("x"), bson!("y")]
        );
        assert_eq!(out[0].get("_id"), Some(&Bson::Int32(1)));
        let out = run(
            vec![
                doc! {"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true, "includeArrayIndex": "i"}},
            ],
            runs(),
        );
        assert_eq!(
            out,
            vec![
                doc! {"_id": 1, "model": "a", "acc": 0.9, "epochs": 10, "tags": "x", "i": 0i64},
                doc! {"_id": 1, "model": "a", "acc": 0.9, "epochs": 10, "tags": "y", "i": 1i64},
                doc! {"_id": 2, "model": "b", "acc": 0.7, "epochs": 5, "i": null},
                doc! {"_id": 3, "model": "a", "acc": 0.8, "epochs": 20, "i": null},
                doc! {"_id": 4, "model": "c", "epochs": "n/a", "tags": null, "i": null},
            ]
        );
        let out = run(vec![doc! {"$unwind": "$model"}], runs());
        assert_eq!(out.len(), 4, "a scalar unwinds to itself");
        for bad in [
            doc! {"$unwind": "tags"},
            doc! {"$unwind": {"path": "$t", "bogus": 1}},
            doc! {"$unwind": {"includeArrayIndex": "i"}},
        ] {
            assert_eq!(
                Pipeline::parse(std::slice::from_ref(&bad))
                    .unwrap_err()
                    .kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn lookup_joins_with_array_semantics() {
        let p = Pipeline::parse(&[doc! {"$lookup": {"from": "models", "localField": "model_ids", "foreignField": "_id", "as": "models"}}]).unwrap();
        assert_eq!(p.foreign_collections(), vec!["models".to_string()]);
        let models = vec![
            doc! {"_id": 1, "n": "a"},
            doc! {"_id": 2, "n": "b"},
            doc! {"_id": 3, "n": "c"},
            doc! {"n": "orphan"},
        ];
        let mut asked = Vec::new();
        let out = p
            .run(
                vec![
                    doc! {"model_ids": [1, 3]},
                    doc! {"model_ids": 2},
                    doc! {"x": 0},
                ],
                &mut |name| {
                    asked.push(name.to_string());
                    Ok(models.clone())
                },
            )
            .unwrap();
        assert_eq!(asked, vec!["models".to_string()]);
        assert_eq!(out[0].get_array("models").unwrap().len(), 2);
        assert_eq!(
            out[1].get_array("models").unwrap(),
            &vec![Bson::Document(models[1].clone())]
        );
        // A missing local field matches foreign documents missing the field.
        assert_eq!(
            out[2].get_array("models").unwrap(),
            &vec![Bson::Document(models[3].clone())]
        );
        // Foreign arrays match by element.
        let p = Pipeline::parse(&[
            doc! {"$lookup": {"from": "t", "localField": "k", "foreignField": "ks", "as": "j"}},
        ])
        .unwrap();
        let out = p
            .run(vec![doc! {"k": 2}], &mut |_| {
                Ok(vec![doc! {"ks": [1, 2]}, doc! {"ks": [3]}])
            })
            .unwrap();
        assert_eq!(out[0].get_array("j").unwrap().len(), 1);
        let e = Pipeline::parse(&[doc! {"$lookup": {"from": "t", "pipeline": [], "as": "j"}}])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("`pipeline`"));
    }

    /// `_id`s of the documents `$lookup` joins to one local document.
    fn joined(
        local: Document,
        local_field: &str,
        foreign: &[Document],
        foreign_field: &str,
    ) -> Vec<Bson> {
        let p = Pipeline::parse(&[
            doc! {"$lookup": {"from": "f", "localField": local_field, "foreignField": foreign_field, "as": "m"}},
        ])
        .unwrap();
        let out = p.run(vec![local], &mut |_| Ok(foreign.to_vec())).unwrap();
        out[0]
            .get_array("m")
            .unwrap()
            .iter()
            .map(|d| d.as_document().unwrap().get("_id").cloned().unwrap())
            .collect()
    }

    fn ids(ids: &[i32]) -> Vec<Bson> {
        ids.iter().map(|i| Bson::Int32(*i)).collect()
    }

    /// `_id`s of the local documents that join the one foreign document.
    fn joining(
        locals: &[Document],
        local_field: &str,
        foreign: Document,
        foreign_field: &str,
    ) -> Vec<Bson> {
        let p = Pipeline::parse(&[
            doc! {"$lookup": {"from": "f", "localField": local_field, "foreignField": foreign_field, "as": "m"}},
        ])
        .unwrap();
        p.run(locals.to_vec(), &mut |_| Ok(vec![foreign.clone()]))
            .unwrap()
            .into_iter()
            .filter(|d| !d.get_array("m").unwrap().is_empty())
            .map(|d| d.get("_id").cloned().unwrap())
            .collect()
    }

    // The cases below are MongoDB's own (jstests lookup_equijoin_semantics).

    #[test]
    fn lookup_missing_null_and_empty_local_join_null_and_missing() {
        let docs = vec![
            doc! {"_id": 0, "no_a": 1},
            doc! {"_id": 1, "a": null},
            doc! {"_id": 2, "a": [null, 1]},
            doc! {"_id": 10, "a": []},
            doc! {"_id": 20, "a": 1},
            doc! {"_id": 21, "a": {"x": null}},
            doc! {"_id": 22, "a": [[null, 1], 2]},
            doc! {"_id": 23, "a": false},
            doc! {"_id": 24, "a": 0},
            doc! {"_id": 25, "a": {}},
            doc! {"_id": 26, "a": ""},
        ];
        for foreign in [doc! {"_id": 0, "b": null}, doc! {"_id": 0, "no_b": 1}] {
            assert_eq!(joining(&docs, "a", foreign, "b"), ids(&[0, 1, 2, 10]));
        }
        for local in [
            doc! {"_id": 0, "b": null},
            doc! {"_id": 0, "no_b": 1},
            doc! {"_id": 0, "b": []},
        ] {
            assert_eq!(
                joined(local.clone(), "b", &docs, "a"),
                ids(&[0, 1, 2]),
                "{local}"
            );
        }
        let with_empty = vec![
            doc! {"_id": 0, "a": [[]]},
            doc! {"_id": 1, "a": [[], 1]},
            doc! {"_id": 2, "a": [[], null]},
            doc! {"_id": 3, "a": []},
            doc! {"_id": 10, "no_a": 1},
            doc! {"_id": 11, "a": null},
            doc! {"_id": 12, "a": [null]},
            doc! {"_id": 13, "a": [null, 1]},
            doc! {"_id": 20, "a": 1},
            doc! {"_id": 21, "a": [[[], 1], 2]},
            doc! {"_id": 22, "a": [1, 2]},
            doc! {"_id": 23, "a": [[null, 1], 2]},
        ];
        assert_eq!(
            joined(doc! {"_id": 0, "b": []}, "b", &with_empty, "a"),
            ids(&[2, 10, 11, 12, 13])
        );
        assert_eq!(
            joined(doc! {"_id": 0, "b": [[], 42]}, "b", &with_empty, "a"),
            ids(&[0, 1, 2, 3])
        );
        assert_eq!(
            joining(&with_empty, "a", doc! {"_id": 0, "b": []}, "b"),
            ids(&[0, 1, 2])
        );
    }

    #[test]
    fn lookup_paths_through_arrays_and_arrays_on_either_side() {
        let missing_on_path = vec![
            doc! {"_id": 0, "a": {"no_x": 1}},
            doc! {"_id": 1, "a": {"no_x": [1, 2]}},
            doc! {"_id": 2, "a": [{"no_x": 1}, {"no_x": 2}]},
            doc! {"_id": 3, "a": [{"no_x": 2}, {"x": 1}]},
            doc! {"_id": 4, "a": [{"no_x": [1, 2]}, {"x": 1}]},
            doc! {"_id": 5, "a": {"x": null}},
            doc! {"_id": 6, "a": [{"x": null}, {"x": 1}]},
            doc! {"_id": 7, "a": [{"x": null}, {"x": [1]}]},
            doc! {"_id": 8, "no_a": 1},
            doc! {"_id": 9, "a": [1]},
            doc! {"_id": 10, "a": []},
            doc! {"_id": 11, "a": [[1]]},
            doc! {"_id": 12, "a": [[]]},
            doc! {"_id": 20, "a": {"x": 2, "y": 1}},
            doc! {"_id": 21, "a": [{"x": 2}, {"x": 3}]},
        ];
        // Locally, a branch without the field is no value when another
        // branch has one (3, 4); foreign, the query's rule applies.
        assert_eq!(
            joining(&missing_on_path, "a.x", doc! {"_id": 0, "b": null}, "b"),
            ids(&[0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12])
        );
        assert_eq!(
            joined(doc! {"_id": 0, "b": null}, "b", &missing_on_path, "a.x"),
            ids(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        );
        let arrays = vec![
            doc! {"_id": 0, "a": [[1, 2], 3]},
            doc! {"_id": 1, "a": [[1, 2]]},
            doc! {"_id": 2, "a": [1, 2]},
            doc! {"_id": 10, "a": [[[1, 2], 3], 4]},
            doc! {"_id": 11, "a": [2, 1]},
            doc! {"_id": 14, "a": null},
            doc! {"_id": 15, "no_a": [1, 2]},
        ];
        assert_eq!(
            joining(&arrays, "a", doc! {"_id": 0, "b": [1, 2]}, "b"),
            ids(&[0, 1, 2, 11])
        );
        assert_eq!(
            joined(doc! {"_id": 0, "b": [1, 2]}, "b", &arrays, "a"),
            ids(&[2, 11])
        );
        assert_eq!(
            joined(doc! {"_id": 0, "b": [[1, 2], 42]}, "b", &arrays, "a"),
            ids(&[0, 1, 2])
        );
        let numeric = vec![
            doc! {"_id": 0, "a": [{"x": 1}, {"x": 2}]},
            doc! {"_id": 1, "a": [{"x": [2, 3, 1]}]},
            doc! {"_id": 2, "a": [{"x": 1}, {"y": 1}]},
            doc! {"_id": 10, "a": [{"x": 2}, {"x": 1}]},
            doc! {"_id": 11, "a": [{"x": [2, 3]}]},
            doc! {"_id": 12, "a": {"x": 1}},
            doc! {"_id": 13, "a": {"x": [1, 2]}},
            doc! {"_id": 14, "a": [{"y": 1}, {"x": 1}]},
        ];
        assert_eq!(
            joining(&numeric, "a.0.x", doc! {"_id": 0, "b": 1}, "b"),
            ids(&[0, 1, 2])
        );
    }

    #[test]
    fn remove_drops_fields_and_nested_paths_keep_their_parents() {
        let d = vec![
            doc! {"_id": 3, "a": {"b": 98, "c": 99}, "arr": [{"k": 1, "z": 1}, 5, [{"z": 2}]]},
        ];
        assert_eq!(
            run(
                vec![doc! {"$project": {"_id": 0, "a.b": "$$REMOVE"}}],
                d.clone()
            ),
            vec![doc! {"a": {}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$project": {"_id": 0, "a": {"b": "$$REMOVE"}}}],
                d.clone()
            ),
            vec![doc! {"a": {}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$project": {"_id": 0, "x": "$$REMOVE", "a.c": 1}}],
                d.clone()
            ),
            vec![doc! {"a": {"c": 99}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$project": {"_id": "$$REMOVE", "a.c": 1}}],
                d.clone()
            ),
            vec![doc! {"a": {"c": 99}}]
        );
        assert_eq!(
            run(
                vec![doc! {"$addFields": {"a.b": "$$REMOVE", "gone": "$$REMOVE.a"}}],
                d.clone()
            ),
            vec![doc! {"_id": 3, "a": {"c": 99}, "arr": [{"k": 1, "z": 1}, 5, [{"z": 2}]]}]
        );
        assert_eq!(
            run(
                vec![doc! {"$set": {"a": "$$REMOVE", "m.n": "$$REMOVE"}}],
                d.clone()
            ),
            vec![doc! {"_id": 3, "arr": [{"k": 1, "z": 1}, 5, [{"z": 2}]], "m": {}}]
        );
        // Through an array: every element, nested arrays too; a scalar in
        // the way becomes a document of the computed field.
        assert_eq!(
            run(vec![doc! {"$set": {"arr.z": "$$REMOVE"}}], d.clone()),
            vec![doc! {"_id": 3, "a": {"b": 98, "c": 99}, "arr": [{"k": 1}, {}, [{}]]}]
        );
        assert_eq!(
            run(vec![doc! {"$set": {"arr.z": 7}}], d),
            vec![
                doc! {"_id": 3, "a": {"b": 98, "c": 99}, "arr": [{"k": 1, "z": 7}, {"z": 7}, [{"z": 7}]]}
            ]
        );
    }

    #[test]
    fn replace_root_and_replace_with() {
        let input = vec![
            doc! {"_id": 1, "a": {"x": 1}, "k": "p"},
            doc! {"_id": 2, "a": {"x": 2}, "k": "q"},
        ];
        assert_eq!(
            run(
                vec![doc! {"$replaceRoot": {"newRoot": "$a"}}],
                input.clone()
            ),
            vec![doc! {"x": 1}, doc! {"x": 2}]
        );
        assert_eq!(
            run(
                vec![doc! {"$replaceWith": {"id": "$_id", "x": "$a.x", "m": "$zz"}}],
                input.clone()
            ),
            vec![doc! {"id": 1, "x": 1}, doc! {"id": 2, "x": 2}]
        );
        assert_eq!(
            run(vec![doc! {"$replaceWith": "$$ROOT"}], input.clone()),
            input
        );
        for (stage, bad) in [
            (doc! {"$replaceRoot": {"newRoot": "$k"}}, "'string'"),
            (doc! {"$replaceWith": "$zz"}, "'missing'"),
            (doc! {"$replaceWith": "$$REMOVE"}, "'missing'"),
        ] {
            let p = Pipeline::parse(std::slice::from_ref(&stage)).unwrap();
            let e = p.run(input.clone(), &mut |_| Ok(Vec::new())).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.message().contains(bad), "{}", e.message());
            let name = stage.keys().next().unwrap();
            assert!(e.message().starts_with(name.as_str()), "{}", e.message());
        }
        // No input, nothing to complain about.
        let p = Pipeline::parse(&[doc! {"$replaceWith": "$k"}]).unwrap();
        assert!(p.run(vec![], &mut |_| Ok(Vec::new())).unwrap().is_empty());
    }

    #[test]
    fn facet_runs_each_sub_pipeline_over_the_same_input() {
        let p = Pipeline::parse(&[
            doc! {"$match": {"epochs": {"$type": "number"}}},
            doc! {"$facet": {
                "n": [{"$count": "n"}],
                "by_model": [{"$sortByCount": "$model"}],
                "best": [{"$sort": {"acc": -1}}, {"$limit": 1}, {"$project": {"_id": 1}}],
                "joined": [{"$limit": 1}, {"$lookup": {"from": "models", "localField": "model", "foreignField": "_id", "as": "m"}}, {"$project": {"m": 1}}],
            }},
        ])
        .unwrap();
        assert_eq!(p.foreign_collections(), vec!["models".to_string()]);
        let out = p
            .run(runs(), &mut |name| {
                assert_eq!(name, "models");
                Ok(vec![doc! {"_id": "a", "label": "A"}])
            })
            .unwrap();
        assert_eq!(
            out,
            vec![doc! {
                "n": [{"n": 3}],
                "by_model": [{"_id": "a", "count": 2}, {"_id": "b", "count": 1}],
                "best": [{"_id": 1}],
                "joined": [{"_id": 1, "m": [{"_id": "a", "label": "A"}]}],
            }]
        );
        // No input: one document all the same, $count inside gives nothing.
        let out = p.run(vec![], &mut |_| Ok(Vec::new())).unwrap();
        assert_eq!(
            out,
            vec![doc! {"n": [], "by_model": [], "best": [], "joined": []}]
        );
    }

    #[test]
    fn sort_by_count_sorts_groups_by_count_descending() {
        let input = vec![
            doc! {"k": "p"},
            doc! {"k": "q"},
            doc! {"k": "r"},
            doc! {"k": "q"},
            doc! {},
            doc! {"k": null},
            doc! {"k": "q"},
        ];
        assert_eq!(
            run(vec![doc! {"$sortByCount": "$k"}], input.clone()),
            vec![
                doc! {"_id": "q", "count": 3},
                doc! {"_id": null, "count": 2},
                doc! {"_id": "p", "count": 1},
                doc! {"_id": "r", "count": 1},
            ]
        );
        assert_eq!(
            run(vec![doc! {"$sortByCount": {"$toUpper": "$k"}}], input)[0],
            doc! {"_id": "Q", "count": 3}
        );
    }

    #[test]
    fn count_stage() {
        assert_eq!(run(vec![doc! {"$count": "n"}], runs()), vec![doc! {"n": 4}]);
        assert_eq!(
            run(vec![doc! {"$count": "n"}], vec![]),
            Vec::<Document>::new()
        );
        assert_eq!(
            Pipeline::parse(&[doc! {"$count": "$n"}])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn unsupported_and_malformed_stages() {
        for (stage, name) in [
            (doc! {"$bucketAuto": {}}, "$bucketAuto"),
            (doc! {"$out": "x"}, "$out"),
            (doc! {"$facet": {"a": [{"$out": "x"}]}}, "$out"),
            (doc! {"$merge": "x"}, "$merge"),
            (doc! {"$graphLookup": {}}, "$graphLookup"),
            (doc! {"$bucket": {}}, "$bucket"),
            (
                doc! {"$group": {"_id": null, "s": {"$stdDevPop": "$a"}}},
                "$stdDevPop",
            ),
            (
                doc! {"$project": {"a": {"$dateFromString": {}}}},
                "$dateFromString",
            ),
            (
                doc! {"$replaceWith": {"$mergeObjects": ["$a", "$b"]}},
                "$mergeObjects",
            ),
            (doc! {"$match": {"$expr": {}}}, "$expr"),
        ] {
            let e = Pipeline::parse(std::slice::from_ref(&stage)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{stage}");
            assert!(
                e.message().contains(&format!("`{name}`")),
                "{}",
                e.message()
            );
        }
        for bad in [
            doc! {"$match": {}, "$limit": 1},
            doc! {"$group": {"n": {"$sum": 1}}},
            doc! {"$group": {"_id": null, "n": 1}},
            doc! {"$group": {"_id": null, "n": {"$count": 1}}},
            doc! {"$limit": 0},
            doc! {"$skip": -1},
            doc! {"$sort": {}},
            doc! {"$sort": {"a": 2}},
            doc! {"$lookup": {"from": "t", "as": "x"}},
            doc! {"match": {}},
            doc! {"$replaceRoot": "$a"},
            doc! {"$replaceRoot": {}},
            doc! {"$replaceRoot": {"newRoot": "$a", "x": 1}},
            doc! {"$facet": {}},
            doc! {"$facet": []},
            doc! {"$facet": {"a": 1}},
            doc! {"$facet": {"a": []}},
            doc! {"$facet": {"a": [1]}},
            doc! {"$facet": {"$a": [{"$limit": 1}]}},
            doc! {"$facet": {"a.b": [{"$limit": 1}]}},
            doc! {"$facet": {"a": [{"$facet": {"b": [{"$limit": 1}]}}]}},
            doc! {"$facet": {"a": [{"$limit": 0}]}},
            doc! {"$sortByCount": "k"},
            doc! {"$sortByCount": {"k": "$k"}},
            doc! {"$sortByCount": {}},
            doc! {"$sortByCount": 1},
        ] {
            assert_eq!(
                Pipeline::parse(std::slice::from_ref(&bad))
                    .unwrap_err()
                    .kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn evaluation_errors_surface() {
        let p = Pipeline::parse(&[doc! {"$project": {"x": {"$divide": ["$a", 0]}}}]).unwrap();
        let e = p
            .run(vec![doc! {"a": 1}], &mut |_| Ok(Vec::new()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
