//! The filter AST, and its printing back to filter text.
//!
//! An AST only exists well-typed: the parser checks every literal against
//! its field, so compiling never meets a type error. Printing an AST and
//! parsing the text gives the same AST back (a property test checks it):
//! compound children of `AND`/`OR`/`NOT` are parenthesised, strings are
//! quoted with `''` escapes, numbers print in Rust's shortest round-trip
//! form, timestamps in RFC 3339 with a `Z`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// A run field a filter or `order_by` can name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `model_id` (text).
    ModelId,
    /// `model_name` (text).
    ModelName,
    /// `framework` (text).
    Framework,
    /// `status` (text: `running`, `completed` or `failed`).
    Status,
    /// `accuracy` (number, may be missing).
    Accuracy,
    /// `loss` (number, may be missing).
    Loss,
    /// `training_time_seconds` (integer, may be missing).
    TrainingTimeSeconds,
    /// `started_at` (timestamp).
    StartedAt,
    /// `completed_at` (timestamp, may be missing).
    CompletedAt,
    /// `dataset`: the name of the run's dataset (text).
    Dataset,
    /// `tags.KEY`: the value of the run's tag `KEY` (text, may be missing).
    Tag(String),
}

/// What kind of values a field holds, which decides the literals and
/// operators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text: string literals; comparisons are byte-wise.
    Text,
    /// Floating-point number: number literals.
    Number,
    /// Whole number: number literals.
    Integer,
    /// UTC timestamp: string literals in RFC 3339.
    Timestamp,
}

impl Field {
    /// The fields other than tags, in the order they are listed in errors.
    pub const COLUMNS: [Field; 10] = [
        Field::ModelId,
        Field::ModelName,
        Field::Framework,
        Field::Status,
        Field::Accuracy,
        Field::Loss,
        Field::TrainingTimeSeconds,
        Field::StartedAt,
        Field::CompletedAt,
        Field::Dataset,
    ];

    /// The field's name as written in a filter (`tags.KEY` for a tag).
    pub fn name(&self) -> String {
        match self {
            Field::Tag(key) => format!("tags.{key}"),
            other => other.column_name().to_owned(),
        }
    }

    fn column_name(&self) -> &'static str {
        match self {
            Field::ModelId => "model_id",
            Field::ModelName => "model_name",
            Field::Framework => "framework",
            Field::Status => "status",
            Field::Accuracy => "accuracy",
            Field::Loss => "loss",
            Field::TrainingTimeSeconds => "training_time_seconds",
            Field::StartedAt => "started_at",
            Field::CompletedAt => "completed_at",
            Field::Dataset => "dataset",
            Field::Tag(_) => "tags",
        }
    }

    /// The field called `name`, if any. Tag keys are taken as written.
    pub fn from_name(name: &str) -> Option<Field> {
        if let Some(key) = name.strip_prefix("tags.") {
            return crate::platform::registry::is_valid_tag_key(key)
                .then(|| Field::Tag(key.to_owned()));
        }
        Field::COLUMNS.into_iter().find(|f| f.column_name() == name)
    }

    /// The kind of values the field holds.
    pub fn field_type(&self) -> FieldType {
        match self {
            Field::Accuracy | Field::Loss => FieldType::Number,
            Field::TrainingTimeSeconds => FieldType::Integer,
            Field::StartedAt | Field::CompletedAt => FieldType::Timestamp,
            _ => FieldType::Text,
        }
    }

    /// Every name a filter accepts, for error messages.
    pub fn known_names() -> String {
        let mut names: Vec<String> = Field::COLUMNS.iter().map(Field::name).collect();
        names.push("tags.KEY".to_owned());
        names.join(", ")
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Tag(key) => write!(f, "tags.{key}"),
            other => f.write_str(other.column_name()),
        }
    }
}

/// A literal value, already converted to its field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Text (for text fields).
    Text(String),
    /// A number (for number and integer fields); never NaN or infinite.
    Number(f64),
    /// A timestamp (for timestamp fields), at microsecond precision.
    Timestamp(DateTime<Utc>),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => write_quoted(f, s),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Timestamp(t) => {
                write_quoted(f, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    f.write_str(&s.replace('\'', "''"))?;
    f.write_str("'")
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A filter expression.
///
/// Semantics are SQL's three-valued logic, identical on both backends: a
/// comparison with a missing value (a running run's `accuracy`) is
/// *unknown*, `NOT unknown` is unknown, and a run matches only when the
/// whole filter is *true*. A tag predicate (`tags.team = 'risk'`) asks
/// whether the run has that tag with a matching value, so it is false, not
/// unknown, for a run without the tag; `tags.team IS NULL` matches runs
/// without it.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every operand holds (two or more).
    And(Vec<Expr>),
    /// Any operand holds (two or more).
    Or(Vec<Expr>),
    /// The operand does not hold.
    Not(Box<Expr>),
    /// `field op value`.
    Compare {
        /// The field.
        field: Field,
        /// The operator.
        op: CmpOp,
        /// The value, of the field's type.
        value: Literal,
    },
    /// `field [NOT] IN (v1, v2, ...)`.
    In {
        /// The field.
        field: Field,
        /// The values (one or more), of the field's type.
        values: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `field [NOT] LIKE 'pattern'` on a text field. Case-sensitive on both
    /// backends: `%` matches any run of characters, `_` exactly one, and
    /// `\` makes the next character literal (`\%`, `\_`, `\\`).
    Like {
        /// The text field.
        field: Field,
        /// The pattern; never ends with a lone `\`.
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `field IS [NOT] NULL`: whether the value is missing.
    IsNull {
        /// The field.
        field: Field,
        /// `IS NOT NULL`.
        negated: bool,
    },
}

impl Expr {
    fn is_compound(&self) -> bool {
        matches!(self, Expr::And(_) | Expr::Or(_))
    }

    fn write_operand(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_compound() {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(operands) | Expr::Or(operands) => {
                let joiner = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    operand.write_operand(f)?;
                }
                Ok(())
            }
            Expr::Not(operand) => {
                f.write_str("NOT ")?;
                operand.write_operand(f)
            }
            Expr::Compare { field, op, value } => write!(f, "{field} {} {value}", op.as_str()),
            Expr::In {
                field,
                values,
                negated,
            } => {
                write!(f, "{field} {}IN (", if *negated { "NOT " } else { "" })?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_str(")")
            }
            Expr::Like {
                field,
                pattern,
                negated,
            } => {
                write!(f, "{field} {}LIKE ", if *negated { "NOT " } else { "" })?;
                write_quoted(f, pattern)
            }
            Expr::IsNull { field, negated } => {
                write!(f, "{field} IS {}NULL", if *negated { "NOT " } else { "" })
            }
        }
    }
}

/// A parsed filter: `None` for an empty filter, which matches every run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter(pub Option<Expr>);

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(expr) => write!(f, "{expr}"),
            None => Ok(()),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Smallest first; missing values first.
    Asc,
    /// Largest first; missing values last.
    Desc,
}

/// One key of an `order_by`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    /// A run field (not a tag).
    pub field: Field,
    /// The direction.
    pub direction: Direction,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction {
            Direction::Asc => write!(f, "{} ASC", self.field),
            Direction::Desc => write!(f, "{} DESC", self.field),
        }
    }
}
