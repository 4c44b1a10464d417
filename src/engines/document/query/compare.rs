//! MongoDB's comparison order over BSON values.

use std::cmp::Ordering;

use bson::Bson;

/// MongoDB's cross-type order: MinKey < null (and missing) < numbers <
/// symbol/string < document < array < binary < ObjectId < boolean < date <
/// timestamp < regex < MaxKey; numbers compare by value across
/// int32/int64/double/decimal128, strings bytewise, documents field by field,
/// arrays element by element.
pub fn compare_bson(a: &Bson, b: &Bson) -> Ordering {
    let _ = (a, b);
    Ordering::Equal
}

/// Equality as a filter's `$eq` sees it: numbers equal across numeric types.
pub fn bson_equal(a: &Bson, b: &Bson) -> bool {
    compare_bson(a, b) == Ordering::Equal
}
