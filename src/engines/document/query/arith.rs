//! Arithmetic over BSON numbers with MongoDB's result types.
//!
//! # Contracts
//!
//! - int32 op int32 stays int32 when the result fits, else becomes int64;
//!   an int64 result that overflows becomes a double (the server's
//!   `SafeNum`); any double operand makes a double.
//! - decimal128 operands are `Unsupported`: the `bson` crate has no decimal
//!   arithmetic, and rounding through `f64` would give answers MongoDB does
//!   not.

use bson::Bson;

use crate::error::{Error, Result};

use super::path::type_name;

/// A number widened to what arithmetic needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int32(i32),
    Int64(i64),
    Double(f64),
}

impl Number {
    /// The number in `value`; `Ok(None)` for a non-number, `Unsupported` for
    /// a decimal128.
    pub(crate) fn of(value: &Bson, operator: &str) -> Result<Option<Number>> {
        Ok(match value {
            Bson::Int32(i) => Some(Number::Int32(*i)),
            Bson::Int64(i) => Some(Number::Int64(*i)),
            Bson::Double(d) => Some(Number::Double(*d)),
            Bson::Decimal128(_) => {
                return Err(Error::unsupported(format!(
                    "{operator} on decimal128 values is not supported by the embedded engine"
                )));
            }
            _ => None,
        })
    }

    pub(crate) fn to_bson(self) -> Bson {
        match self {
            Number::Int32(i) => Bson::Int32(i),
            Number::Int64(i) => Bson::Int64(i),
            Number::Double(d) => Bson::Double(d),
        }
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int32(i) => f64::from(i),
            Number::Int64(i) => i as f64,
            Number::Double(d) => d,
        }
    }

    fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int32(i) => Some(i64::from(i)),
            Number::Int64(i) => Some(i),
            Number::Double(_) => None,
        }
    }

    /// Whether the value is zero (of any type).
    pub(crate) fn is_zero(self) -> bool {
        self.as_f64() == 0.0
    }
}

/// Applies an integer operation with MongoDB's widening, or the double one.
fn combine(
    a: Number,
    b: Number,
    int_op: fn(i64, i64) -> Option<i64>,
    float_op: fn(f64, f64) -> f64,
) -> Number {
    match (a, b) {
        (Number::Int32(x), Number::Int32(y)) => match int_op(i64::from(x), i64::from(y)) {
            Some(r) => match i32::try_from(r) {
                Ok(small) => Number::Int32(small),
                Err(_) => Number::Int64(r),
            },
            None => Number::Double(float_op(f64::from(x), f64::from(y))),
        },
        _ => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => match int_op(x, y) {
                Some(r) => Number::Int64(r),
                None => Number::Double(float_op(x as f64, y as f64)),
            },
            _ => Number::Double(float_op(a.as_f64(), b.as_f64())),
        },
    }
}

/// `a + b`.
pub(crate) fn add(a: Number, b: Number) -> Number {
    combine(a, b, i64::checked_add, |x, y| x + y)
}

/// `a - b`.
pub(crate) fn subtract(a: Number, b: Number) -> Number {
    combine(a, b, i64::checked_sub, |x, y| x - y)
}

/// `a * b`.
pub(crate) fn multiply(a: Number, b: Number) -> Number {
    combine(a, b, i64::checked_mul, |x, y| x * y)
}

/// `a % b` with the dividend's sign; the caller rules out a zero divisor.
pub(crate) fn modulo(a: Number, b: Number) -> Number {
    combine(a, b, i64::checked_rem, |x, y| x % y)
}

/// A running `$sum`: non-numbers are skipped, the result type widens as
/// MongoDB's does (int32, then int64, then double).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sum {
    total: Number,
    count: u64,
}

impl Default for Sum {
    fn default() -> Self {
        Sum {
            total: Number::Int32(0),
            count: 0,
        }
    }
}

impl Sum {
    /// Adds a value when it is a number; returns whether it was.
    pub(crate) fn push(&mut self, value: &Bson, operator: &str) -> Result<bool> {
        match Number::of(value, operator)? {
            Some(n) => {
                self.total = add(self.total, n);
                self.count += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The sum (int32 `0` when nothing was added).
    pub(crate) fn total(&self) -> Bson {
        self.total.to_bson()
    }

    /// The mean as a double, or null when nothing was added.
    pub(crate) fn average(&self) -> Bson {
        if self.count == 0 {
            Bson::Null
        } else {
            Bson::Double(self.total.as_f64() / self.count as f64)
        }
    }
}

/// An error for an operand that is not a number.
pub(crate) fn not_numeric(operator: &str, value: &Bson) -> Error {
    Error::invalid(format!(
        "{operator} only supports numeric types, not {}",
        type_name(value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int32_widens_to_int64_then_double() {
        assert_eq!(add(Number::Int32(1), Number::Int32(2)), Number::Int32(3));
        assert_eq!(
            add(Number::Int32(i32::MAX), Number::Int32(1)),
            Number::Int64(i64::from(i32::MAX) + 1)
        );
        assert_eq!(add(Number::Int32(1), Number::Int64(2)), Number::Int64(3));
        assert_eq!(
            add(Number::Int64(i64::MAX), Number::Int32(1)),
            Number::Double(i64::MAX as f64 + 1.0)
        );
        assert_eq!(
            add(Number::Int32(1), Number::Double(0.5)),
            Number::Double(1.5)
        );
        assert_eq!(
            multiply(Number::Int32(1 << 20), Number::Int32(1 << 20)),
            Number::Int64(1 << 40)
        );
        assert_eq!(
            modulo(Number::Int32(-7), Number::Int32(3)),
            Number::Int32(-1)
        );
        assert_eq!(
            subtract(Number::Int64(5), Number::Int32(7)),
            Number::Int64(-2)
        );
    }

    #[test]
    fn sum_skips_non_numbers_and_refuses_decimals() {
        let mut s = Sum::default();
        assert_eq!(s.total(), Bson::Int32(0));
        assert_eq!(s.average(), Bson::Null);
        assert!(s.push(&Bson::Int32(2), "$sum").unwrap());
        assert!(!s.push(&Bson::String("x".into()), "$sum").unwrap());
        assert!(s.push(&Bson::Int32(3), "$sum").unwrap());
        assert_eq!(s.total(), Bson::Int32(5));
        assert_eq!(s.average(), Bson::Double(2.5));
        let dec = Bson::Decimal128("1".parse().unwrap());
        assert_eq!(
            s.push(&dec, "$sum").unwrap_err().kind(),
            crate::error::ErrorKind::Unsupported
        );
    }
}
