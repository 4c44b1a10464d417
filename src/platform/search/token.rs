//! Page tokens: the last row's sort values and id, plus a fingerprint of
//! the filter and order they belong to, in a small binary form encoded as
//! unpadded base64url.
//!
//! Layout (big-endian): version `1` · fingerprint (u32, CRC-32 of the
//! normalised filter and order) · value count (u8) · values · id (i64).
//! A value is a tag byte then its payload: `0` missing; `1` f64 (8 bytes of
//! IEEE bits); `2` i64; `3` text (u32 length + UTF-8); `4` timestamp (i64
//! microseconds since the epoch).
//!
//! Decoding checks every length and the fingerprint: a token that is
//! corrupt, truncated, or made for another filter or order is invalid input,
//! never a panic or a wrong page.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// One sort value of the last row of a page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortValue {
    Null,
    Float(f64),
    Int(i64),
    Text(String),
    Timestamp(DateTime<Utc>),
}

/// What a page token holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PageToken {
    pub(crate) fingerprint: u32,
    pub(crate) values: Vec<SortValue>,
    pub(crate) id: i64,
}

const VERSION: u8 = 1;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn invalid(why: &str) -> Error {
    Error::invalid(format!("page_token: invalid page token ({why})")).with_field("page_token")
}

impl PageToken {
    pub(crate) fn encode(&self) -> String {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.fingerprint.to_be_bytes());
        // Sort keys are distinct run fields, so there are at most ten.
        out.push(u8::try_from(self.values.len()).unwrap_or(u8::MAX));
        for value in &self.values {
            match value {
                SortValue::Null => out.push(0),
                SortValue::Float(f) => {
                    out.push(1);
                    out.extend_from_slice(&f.to_bits().to_be_bytes());
                }
                SortValue::Int(i) => {
                    out.push(2);
                    out.extend_from_slice(&i.to_be_bytes());
                }
                SortValue::Text(s) => {
                    out.push(3);
                    out.extend_from_slice(
                        &u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes(),
                    );
                    out.extend_from_slice(s.as_bytes());
                }
                SortValue::Timestamp(t) => {
                    out.push(4);
                    out.extend_from_slice(&t.timestamp_micros().to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&self.id.to_be_bytes());
        base64url_encode(&out)
    }

    pub(crate) fn decode(token: &str) -> Result<PageToken> {
        if token.len() > 16 * 1024 {
            return Err(invalid("too long"));
        }
        let bytes = base64url_decode(token).ok_or_else(|| invalid("not base64url"))?;
        let mut r = Reader { bytes: &bytes };
        if r.u8()? != VERSION {
            return Err(invalid("unknown version"));
        }
        let fingerprint = u32::from_be_bytes(r.array()?);
        let count = r.u8()?;
        let mut values = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            values.push(match r.u8()? {
                0 => SortValue::Null,
                1 => SortValue::Float(f64::from_bits(u64::from_be_bytes(r.array()?))),
                2 => SortValue::Int(i64::from_be_bytes(r.array()?)),
                3 => {
                    let len = u32::from_be_bytes(r.array()?) as usize;
                    let raw = r.take(len)?;
                    let text = String::from_utf8(raw.to_vec())
                        .map_err(|_| invalid("text is not UTF-8"))?;
                    // No stored text holds U+0000, and PostgreSQL cannot
                    // compare with it.
                    if text.contains('\0') {
                        return Err(invalid("text holds U+0000"));
                    }
                    SortValue::Text(text)
                }
                4 => {
                    let micros = i64::from_be_bytes(r.array()?);
                    SortValue::Timestamp(
                        DateTime::from_timestamp_micros(micros)
                            .ok_or_else(|| invalid("timestamp out of range"))?,
                    )
                }
                _ => return Err(invalid("unknown value type")),
            });
        }
        let id = i64::from_be_bytes(r.array()?);
        if !r.bytes.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        Ok(PageToken {
            fingerprint,
            values,
            id,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(invalid("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let digits: Vec<u32> = text
        .bytes()
        .map(|c| ALPHABET.iter().position(|a| *a == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    for chunk in digits.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&bytes)), Some(bytes));
        }
        assert_eq!(base64url_decode("A"), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = PageToken {
            fingerprint: 0xdead_beef,
            values: vec![
                SortValue::Null,
                SortValue::Float(0.25),
                SortValue::Int(-7),
                SortValue::Text("fraud–ü".into()),
                SortValue::Timestamp(
                    DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
                ),
            ],
            id: 42,
        };
        let text = token.encode();
        assert_eq!(PageToken::decode(&text).unwrap(), token);
        assert!(PageToken::decode(&text[..text.len() - 3]).is_err());
        assert!(PageToken::decode("").is_err());
        assert!(PageToken::decode("!!!!").is_err());
        assert!(PageToken::decode(&format!("{text}AAAA")).is_err());
    }
}
