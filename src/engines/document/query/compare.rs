//! MongoDB's comparison order over BSON values.
//!
//! # Contracts
//!
//! - [`compare_bson`] is a total order (reflexive, antisymmetric, transitive)
//!   over every BSON value, the one MongoDB uses for sorts, index keys and
//!   range operators: values of different type brackets order by bracket
//!   ([`type_bracket`]), values of the same bracket by content.
//! - Numbers of every numeric type share one bracket and compare by exact
//!   numeric value (an `Int64` beyond 2^53 is not rounded through `f64`);
//!   NaN equals NaN and is below every other number. `Decimal128` values are
//!   compared through their nearest `f64` (the `bson` crate offers no decimal
//!   arithmetic), so two decimals that differ only beyond double precision
//!   compare equal.
//! - [`bson_equal`] is exactly `compare_bson(..) == Equal`: `1`, `1i64` and
//!   `1.0` are equal; `null` and a missing field are the caller's business
//!   (callers pass `Bson::Null` for missing).

use std::cmp::Ordering;

use bson::Bson;

/// The canonical type rank MongoDB sorts by (`canonicalizeBSONType` in the
/// server): values of different ranks never compare by content.
///
/// MinKey < undefined < null < numbers < string/symbol < document < array <
/// binary < ObjectId < boolean < date < timestamp < regex < DBPointer <
/// JavaScript < JavaScript with scope < MaxKey.
pub fn type_bracket(value: &Bson) -> i32 {
    match value {
        Bson::MinKey => -1,
        Bson::Undefined => 0,
        Bson::Null => 5,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number reduced to the two shapes that can be compared exactly.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

/// The numeric value of `value`, when it is a number.
pub(crate) fn as_num(value: &Bson) -> Option<Num> {
    match value {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(d) => Some(Num::Float(*d)),
        Bson::Decimal128(d) => Some(Num::Float(decimal_to_f64(d))),
        _ => None,
    }
}

/// The nearest `f64` of a decimal; NaN when its text is not a number.
pub(crate) fn decimal_to_f64(d: &bson::Decimal128) -> f64 {
    d.to_string().parse::<f64>().unwrap_or(f64::NAN)
}

/// Exact comparison of two numbers; NaN equals NaN and sorts lowest.
pub(crate) fn compare_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => compare_f64(x, y),
        (Num::Int(x), Num::Float(y)) => compare_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => compare_int_float(y, x).reverse(),
    }
}

fn compare_f64(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // Neither is NaN, so partial_cmp is total here; -0.0 == 0.0 as in MongoDB.
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Compares an integer with a double without rounding the integer through
/// `f64`, which would make distinct large longs equal to the same double.
fn compare_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // 2^63 as f64 is exact; anything at or beyond it is above every i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // In range [-2^63, 2^63), so the cast is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    }
}

/// MongoDB's cross-type order: MinKey < null (and missing) < numbers <
/// symbol/string < document < array < binary < ObjectId < boolean < date <
/// timestamp < regex < MaxKey; numbers compare by value across
/// int32/int64/double/decimal128, strings bytewise, documents field by field,
/// arrays element by element.
pub fn compare_bson(a: &Bson, b: &Bson) -> Ordering {
    let (ta, tb) = (type_bracket(a), type_bracket(b));
    if ta != tb {
        return ta.cmp(&tb);
    }
    match (a, b) {
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (Bson::Document(x), Bson::Document(y)) => compare_elements(
            x.iter().map(|(k, v)| (k.as_str(), v)),
            y.iter().map(|(k, v)| (k.as_str(), v)),
        ),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                // Array elements are compared as the fields of a document
                // whose names are equal indexes: type bracket, then value.
                let o = type_bracket(p)
                    .cmp(&type_bracket(q))
                    .then_with(|| compare_bson(p, q));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_str()
            .as_bytes()
            .cmp(y.pattern.as_str().as_bytes())
            .then_with(|| {
                x.options
                    .as_str()
                    .as_bytes()
                    .cmp(y.options.as_str().as_bytes())
            }),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => {
            x.code.as_bytes().cmp(y.code.as_bytes()).then_with(|| {
                compare_bson(
                    &Bson::Document(x.scope.clone()),
                    &Bson::Document(y.scope.clone()),
                )
            })
        }
        (Bson::DbPointer(x), Bson::DbPointer(y)) => {
            // The crate keeps a DBPointer's parts private; its debug text
            // holds the namespace then the id, which orders them as the
            // server does closely enough for a deprecated type.
            format!("{x:?}").cmp(&format!("{y:?}"))
        }
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => compare_num(x, y),
            // Same bracket, no content: MinKey, MaxKey, null, undefined.
            _ => Ordering::Equal,
        },
    }
}

/// Compares documents element by element: type bracket, then field name,
/// then value; a document that is a prefix of the other is smaller.
fn compare_elements<'a>(
    mut x: impl Iterator<Item = (&'a str, &'a Bson)>,
    mut y: impl Iterator<Item = (&'a str, &'a Bson)>,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((kx, vx)), Some((ky, vy))) => {
                let o = type_bracket(vx)
                    .cmp(&type_bracket(vy))
                    .then_with(|| kx.as_bytes().cmp(ky.as_bytes()))
                    .then_with(|| compare_bson(vx, vy));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Equality as a filter's `$eq` sees it: numbers equal across numeric types.
pub fn bson_equal(a: &Bson, b: &Bson) -> bool {
    compare_bson(a, b) == Ordering::Equal
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bson::{
        Binary, DateTime, Decimal128, Regex, Timestamp, doc, oid::ObjectId, spec::BinarySubtype,
    };
    use proptest::prelude::*;

    fn regex(p: &str, o: &str) -> Bson {
        Bson::RegularExpression(Regex {
            pattern: p.to_string().try_into().unwrap(),
            options: o.to_string().try_into().unwrap(),
        })
    }

    #[test]
    fn cross_type_order_follows_mongodb() {
        let ordered = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Double(f64::NAN),
            Bson::Int32(-5),
            Bson::Int64(3),
            Bson::Double(3.5),
            Bson::String("".into()),
            Bson::String("a".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![9],
            }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(DateTime::from_millis(-1)),
            Bson::DateTime(DateTime::from_millis(5)),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 0,
            }),
            regex("a", ""),
            Bson::MaxKey,
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_bson(a, b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn numbers_compare_by_value_across_types() {
        assert!(bson_equal(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(bson_equal(&Bson::Int64(1), &Bson::Int32(1)));
        let dec: Decimal128 = "2.5".parse().unwrap();
        assert!(bson_equal(&Bson::Decimal128(dec), &Bson::Double(2.5)));
        assert_eq!(
            compare_bson(&Bson::Decimal128(dec), &Bson::Int32(3)),
            Ordering::Less
        );
        // 2^53 + 1 is not representable as f64; exact comparison still sees it.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            compare_bson(&Bson::Int64(big), &Bson::Double((1u64 << 53) as f64)),
            Ordering::Greater
        );
        assert_eq!(
            compare_bson(&Bson::Int64(i64::MAX), &Bson::Double(f64::INFINITY)),
            Ordering::Less
        );
        assert_eq!(
            compare_bson(&Bson::Int64(i64::MIN), &Bson::Double(-1e300)),
            Ordering::Greater
        );
        assert_eq!(
            compare_bson(&Bson::Int32(2), &Bson::Double(2.5)),
            Ordering::Less
        );
        assert_eq!(
            compare_bson(&Bson::Int32(-2), &Bson::Double(-2.5)),
            Ordering::Greater
        );
        assert!(bson_equal(&Bson::Double(f64::NAN), &Bson::Double(f64::NAN)));
        assert!(bson_equal(&Bson::Double(-0.0), &Bson::Int32(0)));
    }

    #[test]
    fn strings_compare_bytewise_and_symbols_with_them() {
        assert_eq!(
            compare_bson(&Bson::String("B".into()), &Bson::String("a".into())),
            Ordering::Less
        );
        assert!(bson_equal(
            &Bson::Symbol("x".into()),
            &Bson::String("x".into())
        ));
    }

    #[test]
    fn documents_compare_type_then_name_then_value() {
        let c = |a: bson::Document, b: bson::Document| {
            compare_bson(&Bson::Document(a), &Bson::Document(b))
        };
        // A number field is below a string field regardless of names.
        assert_eq!(c(doc! {"z": 1}, doc! {"a": "x"}), Ordering::Less);
        assert_eq!(c(doc! {"a": 1}, doc! {"b": 1}), Ordering::Less);
        assert_eq!(c(doc! {"a": 1}, doc! {"a": 2}), Ordering::Less);
        assert_eq!(c(doc! {"a": 1}, doc! {"a": 1, "b": 0}), Ordering::Less);
        assert_eq!(
            c(doc! {"a": 1, "b": 2}, doc! {"b": 2, "a": 1}),
            Ordering::Less
        );
        assert_eq!(c(doc! {"a": 1}, doc! {"a": 1.0}), Ordering::Equal);
    }

    #[test]
    fn arrays_compare_elementwise_shorter_first() {
        let a = |v: Vec<Bson>| Bson::Array(v);
        assert_eq!(
            compare_bson(&a(vec![1.into()]), &a(vec![1.into(), 0.into()])),
            Ordering::Less
        );
        assert_eq!(
            compare_bson(&a(vec![2.into()]), &a(vec![1.into(), 5.into()])),
            Ordering::Greater
        );
        assert_eq!(
            compare_bson(&a(vec![1.into()]), &a(vec!["a".into()])),
            Ordering::Less
        );
    }

    #[test]
    fn binary_compares_length_then_subtype_then_bytes() {
        let b = |s: BinarySubtype, v: Vec<u8>| {
            Bson::Binary(Binary {
                subtype: s,
                bytes: v,
            })
        };
        assert_eq!(
            compare_bson(
                &b(BinarySubtype::Generic, vec![9]),
                &b(BinarySubtype::Generic, vec![0, 0])
            ),
            Ordering::Less
        );
        assert_eq!(
            compare_bson(
                &b(BinarySubtype::Uuid, vec![0]),
                &b(BinarySubtype::Generic, vec![9])
            ),
            Ordering::Greater
        );
    }

    /// A strategy over a mix of BSON values, nested a little, used by the
    /// property tests of this and the other query modules.
    pub(crate) fn arb_bson() -> impl Strategy<Value = Bson> {
        let leaf = prop_oneof![
            Just(Bson::Null),
            Just(Bson::MinKey),
            Just(Bson::MaxKey),
            any::<i32>().prop_map(|i| Bson::Int32(i % 8)),
            any::<i64>().prop_map(Bson::Int64),
            (-8i64..8).prop_map(Bson::Int64),
            prop_oneof![any::<f64>(), (-8i32..8).prop_map(|i| f64::from(i) / 2.0)]
                .prop_map(Bson::Double),
            "[ab]{0,2}".prop_map(Bson::String),
            any::<bool>().prop_map(Bson::Boolean),
            (-3i64..3).prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Bson::Array),
                prop::collection::vec(("[ab]", inner), 0..3)
                    .prop_map(|kvs| { Bson::Document(kvs.into_iter().collect()) }),
            ]
        })
    }

    proptest! {
        #[test]
        fn compare_is_a_total_order(a in arb_bson(), b in arb_bson(), c in arb_bson()) {
            prop_assert_eq!(compare_bson(&a, &a), Ordering::Equal);
            prop_assert_eq!(compare_bson(&a, &b), compare_bson(&b, &a).reverse());
            let ab = compare_bson(&a, &b);
            let bc = compare_bson(&b, &c);
            if ab != Ordering::Greater && bc != Ordering::Greater {
                prop_assert_ne!(compare_bson(&a, &c), Ordering::Greater);
            }
            if ab == Ordering::Equal && bc == Ordering::Equal {
                prop_assert_eq!(compare_bson(&a, &c), Ordering::Equal);
            }
        }

        #[test]
        fn int_float_comparison_agrees_with_exact_arithmetic(i in any::<i64>(), f in -1e19f64..1e19) {
            // i128 holds both exactly when f is integral; otherwise compare
            // against floor/ceil.
            let expected = if f.fract() == 0.0 {
                (i as i128).cmp(&(f as i128))
            } else if (i as i128) <= (f.floor() as i128) {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            prop_assert_eq!(compare_bson(&Bson::Int64(i), &Bson::Double(f)), expected);
        }
    }
}
