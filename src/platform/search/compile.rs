//! Compiling a filter AST to a sea-query condition over `training_runs`
//! joined to `datasets`. Every value is a bound parameter; no SQL text is
//! built from input.
//!
//! `LIKE` is case-sensitive on both backends. PostgreSQL's `LIKE` already
//! is (with an explicit `ESCAPE '\'`); SQLite's is not, so there the pattern
//! is translated to the equivalent `GLOB` pattern, which is case-sensitive:
//! `%` → `*`, `_` → `?`, and a literal `*`, `?` or `[` → `[*]`, `[?]`,
//! `[[]`.

use sea_orm::sea_query::{
    BinOper, Condition, Expr as SqlExpr, ExprTrait, LikeExpr, Query, SimpleExpr,
};
use sea_orm::{DbBackend, Value};

use super::ast::{CmpOp, Expr, Field, FieldType, Literal};
use crate::platform::entities::{dataset, run_tag, training_run};

/// The SQL column a (non-tag) field reads.
pub(crate) fn column(field: &Field) -> SqlExpr {
    use training_run::Column as C;
    let run = |c: C| SqlExpr::col((training_run::Entity, c));
    match field {
        Field::ModelId => run(C::ModelId),
        Field::ModelName => run(C::ModelName),
        Field::Framework => run(C::Framework),
        Field::Status => run(C::Status),
        Field::Accuracy => run(C::Accuracy),
        Field::Loss => run(C::Loss),
        Field::TrainingTimeSeconds => run(C::TrainingTimeSeconds),
        Field::StartedAt => run(C::StartedAt),
        Field::CompletedAt => run(C::CompletedAt),
        Field::Dataset => SqlExpr::col((dataset::Entity, dataset::Column::Name)),
        // Tags never reach here: they compile to EXISTS subqueries.
        Field::Tag(_) => run(C::Id),
    }
}

/// A literal as a bound value of the field's SQL type.
fn value(field: &Field, literal: &Literal) -> Value {
    match literal {
        Literal::Text(s) => Value::from(s.clone()),
        Literal::Timestamp(t) => Value::from(*t),
        Literal::Number(n) => {
            // An integral number against an integer column binds as an
            // integer, so PostgreSQL compares bigint with bigint.
            if field.field_type() == FieldType::Integer
                && n.fract() == 0.0
                && *n >= -9.0e15
                && *n <= 9.0e15
            {
                Value::from(*n as i64)
            } else {
                Value::from(*n)
            }
        }
    }
}

fn compare(left: SqlExpr, op: CmpOp, right: Value) -> SimpleExpr {
    match op {
        CmpOp::Eq => left.eq(right),
        CmpOp::Ne => left.ne(right),
        CmpOp::Lt => left.lt(right),
        CmpOp::Le => left.lte(right),
        CmpOp::Gt => left.gt(right),
        CmpOp::Ge => left.gte(right),
    }
}

/// `LIKE` pattern (with `\` escapes) → SQLite `GLOB` pattern.
fn like_to_glob(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => glob.push('*'),
            '_' => glob.push('?'),
            '\\' => match chars.next() {
                Some(lit) => push_glob_literal(&mut glob, lit),
                // The parser refuses a trailing escape; treat one as literal.
                None => glob.push('\\'),
            },
            lit => push_glob_literal(&mut glob, lit),
        }
    }
    glob
}

fn push_glob_literal(glob: &mut String, c: char) {
    match c {
        '*' | '?' | '[' => {
            glob.push('[');
            glob.push(c);
            glob.push(']');
        }
        c => glob.push(c),
    }
}

fn like(backend: DbBackend, left: SqlExpr, pattern: &str, negated: bool) -> SimpleExpr {
    let matched = match backend {
        DbBackend::Sqlite => left.binary(BinOper::Custom("GLOB"), like_to_glob(pattern)),
        _ => left.like(LikeExpr::new(pattern).escape('\\')),
    };
    if negated { matched.not() } else { matched }
}

/// A predicate on the value of `expr` (a column or `run_tags.value`).
fn predicate(backend: DbBackend, expr: &Expr, left: SqlExpr) -> SimpleExpr {
    match expr {
        Expr::Compare {
            field,
            op,
            value: v,
        } => compare(left, *op, value(field, v)),
        Expr::In {
            field,
            values,
            negated,
        } => {
            let values = values.iter().map(|v| value(field, v));
            if *negated {
                left.is_not_in(values)
            } else {
                left.is_in(values)
            }
        }
        Expr::Like {
            pattern, negated, ..
        } => like(backend, left, pattern, *negated),
        Expr::IsNull { negated, .. } => {
            if *negated {
                left.is_not_null()
            } else {
                left.is_null()
            }
        }
        // Compound expressions are handled by `compile`.
        Expr::And(_) | Expr::Or(_) | Expr::Not(_) => SqlExpr::value(true),
    }
}

/// `EXISTS (SELECT 1 FROM run_tags WHERE run_id = training_runs.id AND key
/// = ? [AND <predicate on value>])`.
fn tag_exists(key: &str, on_value: Option<SimpleExpr>) -> SimpleExpr {
    let mut sub = Query::select();
    sub.expr(SqlExpr::val(1))
        .from(run_tag::Entity)
        .and_where(
            SqlExpr::col((run_tag::Entity, run_tag::Column::RunId))
                .equals((training_run::Entity, training_run::Column::Id)),
        )
        .and_where(SqlExpr::col((run_tag::Entity, run_tag::Column::Key)).eq(key));
    if let Some(on_value) = on_value {
        sub.and_where(on_value);
    }
    SqlExpr::exists(sub.to_owned())
}

/// Compiles `expr` for `backend`.
pub(crate) fn compile(backend: DbBackend, expr: &Expr) -> Condition {
    compile_in(backend, expr, false)
}

/// Compiles `expr`, which is inside an `OR` when `in_or`.
///
/// On SQLite, a column compared inside an `OR` is written `+column`, which
/// SQLite documents as the way to keep a term from using an index. Without
/// it SQLite may answer `a = ? OR b > ?` by looking up each side in its own
/// index and sorting the union, which its planner prices without the LIMIT:
/// it does not count that reading the order's index stops after one page,
/// so it picks the sort even when the union holds most of the table.
/// Predicates outside any `OR` keep their indexes, for selective filters.
fn compile_in(backend: DbBackend, expr: &Expr, in_or: bool) -> Condition {
    match expr {
        Expr::And(operands) => operands.iter().fold(Condition::all(), |c, e| {
            c.add(compile_in(backend, e, in_or))
        }),
        Expr::Or(operands) => operands
            .iter()
            .fold(Condition::any(), |c, e| c.add(compile_in(backend, e, true))),
        Expr::Not(operand) => Condition::all()
            .add(compile_in(backend, operand, in_or))
            .not(),
        Expr::Compare { field, .. }
        | Expr::In { field, .. }
        | Expr::Like { field, .. }
        | Expr::IsNull { field, .. } => match field {
            Field::Tag(key) => {
                let tag_value = SqlExpr::col((run_tag::Entity, run_tag::Column::Value));
                let exists = match expr {
                    Expr::IsNull { negated, .. } => {
                        // IS NULL: the run has no such tag.
                        let exists = tag_exists(key, None);
                        return Condition::all().add(if *negated { exists } else { exists.not() });
                    }
                    _ => tag_exists(key, Some(predicate(backend, expr, tag_value))),
                };
                Condition::all().add(exists)
            }
            _ => {
                let column = if in_or && backend == DbBackend::Sqlite {
                    // `?` is where sea-query's SQLite builder writes the
                    // expression (its placeholder), not a bound value.
                    SqlExpr::cust_with_expr("+?", column(field))
                } else {
                    column(field)
                };
                Condition::all().add(predicate(backend, expr, column))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_translate_to_glob() {
        assert_eq!(like_to_glob("fraud%"), "fraud*");
        assert_eq!(like_to_glob("a_c"), "a?c");
        assert_eq!(like_to_glob(r"100\%"), "100%");
        assert_eq!(like_to_glob(r"a\_b"), "a_b");
        assert_eq!(like_to_glob("what?*[x]"), "what[?][*][[]x]");
        assert_eq!(like_to_glob(r"back\\slash"), r"back\slash");
    }
}
