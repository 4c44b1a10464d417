//! Aggregation expressions.

use bson::{Bson, Document};

use crate::error::{Error, Result};

/// A parsed expression: a `"$path"`, a literal, or an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    _private: (),
}

impl Expr {
    /// Parses an expression.
    pub fn parse(expr: &Bson) -> Result<Expr> {
        let _ = expr;
        Err(Error::unsupported("expressions"))
    }

    /// Evaluates against `doc`; `None` is a missing value.
    pub fn eval(&self, doc: &Document) -> Result<Option<Bson>> {
        let _ = doc;
        Err(Error::unsupported("expressions"))
    }
}
