//! Dates as `$dateToString` renders them: MongoDB's format specifiers and
//! the time zones the embedded engine knows.
//!
//! # Contracts
//!
//! - [`check_format`] accepts what MongoDB's `validateToStringFormat`
//!   accepts: `%` followed by one of `b B d G H j L m M S u U V w Y z Z %`.
//!   Anything else, or a lone `%` at the end, is `InvalidInput` naming
//!   `$dateToString`.
//! - [`format`] renders in the zone's local time with MongoDB's padding and
//!   numbering: `%w` is 1 (Sunday) to 7, `%u` 1 (Monday) to 7, `%U` counts
//!   Sunday-started weeks from 00 (the days before the first Sunday), `%V` and
//!   `%G` are the ISO 8601 week and its year, `%z` is `±hhmm`, `%Z` the offset
//!   in minutes without padding (`0`, `330`, `-210`). A padded component
//!   outside 0..=9999 (a year before 0 or after 9999) is `InvalidInput`, as
//!   in MongoDB; so is a date beyond chrono's range (about ±262,000 years).
//! - [`parse_zone`] knows `UTC` and the offsets MongoDB accepts (`±HH`,
//!   `±HHMM`, `±HH:MM`). A malformed offset is `InvalidInput`; any other name
//!   (an Olson identifier such as `Europe/London`) is `Unsupported`: the
//!   embedded engine carries no time zone database.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike};

use crate::error::{Error, Result};

/// The default format when no zone or UTC is asked for.
pub(crate) const ISO_FORMAT_UTC: &str = "%Y-%m-%dT%H:%M:%S.%LZ";

/// The default format in any other zone (MongoDB 7.1+): no `Z`, since the
/// time is not UTC.
pub(crate) const ISO_FORMAT_LOCAL: &str = "%Y-%m-%dT%H:%M:%S.%L";

const SPECIFIERS: &str = "bBdGHjLmMSuUVwYzZ%";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn date_error(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("$dateToString: {message}"))
}

/// Checks that every `%` in `format` starts a known specifier.
pub(crate) fn check_format(format: &str) -> Result<()> {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            None => return Err(date_error("Unmatched '%' at end of format string")),
            Some(spec) if SPECIFIERS.contains(spec) => {}
            Some(spec) => {
                return Err(date_error(format!(
                    "Invalid format character '%{spec}' in format string"
                )));
            }
        }
    }
    Ok(())
}

/// A zone as seconds east of UTC; `0` is UTC itself.
pub(crate) fn parse_zone(name: &str) -> Result<i64> {
    if name == "UTC" {
        return Ok(0);
    }
    let Some(sign) = name
        .strip_prefix('+')
        .map(|_| 1)
        .or_else(|| name.strip_prefix('-').map(|_| -1))
    else {
        return Err(Error::unsupported(format!(
            "$dateToString: time zone `{name}` is not supported by the embedded engine, \
             which knows `UTC` and offsets `±HH`, `±HHMM`, `±HH:MM` only"
        )));
    };
    let digits = |s: &str| -> Option<i64> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let body = &name[1..];
    let hours_minutes = match body.len() {
        2 => digits(body).map(|h| (h, 0)),
        4 => digits(&body[..2]).zip(digits(&body[2..])),
        5 if body.as_bytes().get(2) == Some(&b':') => digits(&body[..2]).zip(digits(&body[3..])),
        _ => None,
    };
    let (hours, minutes) = hours_minutes.ok_or_else(|| {
        date_error(format!(
            "unrecognized time zone identifier: \"{name}\" (offsets are ±HH, ±HHMM or ±HH:MM)"
        ))
    })?;
    Ok(sign * (hours * 3600 + minutes * 60))
}

/// Appends `n` zero-padded to `width` digits, as MongoDB's `insertPadded`.
fn padded(out: &mut String, n: i64, width: usize) -> Result<()> {
    if !(0..=9999).contains(&n) {
        return Err(date_error(format!(
            "Could not convert date to string: date component was outside the supported range of 0-9999: {n}"
        )));
    }
    let _ = write!(out, "{n:0width$}");
    Ok(())
}

/// Renders the instant `millis` (since the epoch, UTC) in the zone
/// `offset_seconds` east of UTC. `format` must have passed
/// [`check_format`].
pub(crate) fn format(millis: i64, format: &str, offset_seconds: i64) -> Result<String> {
    let local = offset_seconds
        .checked_mul(1000)
        .and_then(|o| millis.checked_add(o))
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| {
            date_error(format!(
                "date {millis} ms from the epoch is outside the range the embedded engine can format"
            ))
        })?;
    let month = local.month();
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("");
    let sunday_based = i64::from(local.weekday().num_days_from_sunday()) + 1;
    let day_of_year = i64::from(local.ordinal());
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err(date_error("Unmatched '%' at end of format string"));
        };
        match spec {
            '%' => out.push('%'),
            'Y' => padded(&mut out, i64::from(local.year()), 4)?,
            'm' => padded(&mut out, i64::from(month), 2)?,
            'd' => padded(&mut out, i64::from(local.day()), 2)?,
            'H' => padded(&mut out, i64::from(local.hour()), 2)?,
            'M' => padded(&mut out, i64::from(local.minute()), 2)?,
            'S' => padded(&mut out, i64::from(local.second()), 2)?,
            'L' => padded(&mut out, i64::from(local.timestamp_subsec_millis()), 3)?,
            'j' => padded(&mut out, day_of_year, 3)?,
            'w' => padded(&mut out, sunday_based, 1)?,
            'U' => padded(&mut out, (day_of_year - sunday_based + 7) / 7, 2)?,
            'G' => padded(&mut out, i64::from(local.iso_week().year()), 4)?,
            'V' => padded(&mut out, i64::from(local.iso_week().week()), 2)?,
            'u' => padded(&mut out, i64::from(local.weekday().number_from_monday()), 1)?,
            'z' => {
                out.push(if offset_seconds < 0 { '-' } else { '+' });
                padded(&mut out, (offset_seconds / 3600).abs(), 2)?;
                padded(&mut out, (offset_seconds / 60).abs() % 60, 2)?;
            }
            'Z' => {
                let _ = write!(out, "{}", offset_seconds / 60);
            }
            'b' => out.push_str(month_name.get(..3).unwrap_or(month_name)),
            'B' => out.push_str(month_name),
            other => {
                return Err(date_error(format!(
                    "Invalid format character '%{other}' in format string"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, milli: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap()
            .timestamp_millis()
            + i64::from(milli)
    }

    #[test]
    fn every_specifier_as_mongodb_renders_it() {
        let t = ms(2021, 1, 3, 4, 5, 6, 789);
        assert_eq!(
            format(
                t,
                "%Y-%m-%d %H:%M:%S.%L %j %w %u %U %V %G %z %Z %% %b %B",
                0
            )
            .unwrap(),
            "2021-01-03 04:05:06.789 003 1 7 01 53 2020 +0000 0 % Jan January"
        );
        assert_eq!(
            format(t, ISO_FORMAT_UTC, 0).unwrap(),
            "2021-01-03T04:05:06.789Z"
        );
        // The examples of MongoDB's own tests (jstests date_to_string.js).
        for (when, want) in [
            (
                ms(2017, 1, 1, 15, 8, 51, 911),
                "Natural: 2017-W1-01, ISO: 2016-W7-52",
            ),
            (
                ms(2017, 7, 4, 15, 9, 12, 911),
                "Natural: 2017-W3-27, ISO: 2017-W2-27",
            ),
            (
                ms(2017, 12, 4, 15, 9, 14, 911),
                "Natural: 2017-W2-49, ISO: 2017-W1-49",
            ),
        ] {
            assert_eq!(
                format(when, "Natural: %Y-W%w-%U, ISO: %G-W%u-%V", 0).unwrap(),
                want
            );
        }
        assert_eq!(
            format(ms(2017, 7, 4, 14, 56, 42, 911), "%b (%B) %d, %Y", 0).unwrap(),
            "Jul (July) 04, 2017"
        );
    }

    #[test]
    fn offsets_shift_local_time_and_print_as_mongodb() {
        let t = ms(2017, 7, 4, 14, 56, 42, 911);
        let f = "%Y-%m-%d %H:%M:%S %z (%Z minutes)";
        assert_eq!(
            format(t, f, parse_zone("-04:00").unwrap()).unwrap(),
            "2017-07-04 10:56:42 -0400 (-240 minutes)"
        );
        assert_eq!(
            format(t, f, parse_zone("+0845").unwrap()).unwrap(),
            "2017-07-04 23:41:42 +0845 (525 minutes)"
        );
        assert_eq!(
            format(t, f, parse_zone("UTC").unwrap()).unwrap(),
            "2017-07-04 14:56:42 +0000 (0 minutes)"
        );
        assert_eq!(format(t, "%z %Z", -1800).unwrap(), "-0030 -30");
        assert_eq!(parse_zone("+03").unwrap(), 3 * 3600);
        assert_eq!(parse_zone("-00:30").unwrap(), -1800);
        // Crossing midnight changes the day (and year) in the zone.
        assert_eq!(
            format(ms(2021, 1, 1, 1, 0, 0, 0), ISO_FORMAT_LOCAL, -7200).unwrap(),
            "2020-12-31T23:00:00.000"
        );
    }

    #[test]
    fn zones_outside_utc_and_offsets() {
        for bad in ["+5", "+05:3", "+0530x", "-05-30", "+ab", "+"] {
            assert_eq!(
                parse_zone(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        let e = parse_zone("Europe/London").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("`Europe/London`"), "{}", e.message());
    }

    #[test]
    fn format_errors_name_the_operator() {
        for (f, needle) in [
            ("%", "Unmatched '%'"),
            ("%Y-%n", "Invalid format character '%n'"),
            ("%%%", "Unmatched '%'"),
        ] {
            let e = check_format(f).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.message().starts_with("$dateToString: "),
                "{}",
                e.message()
            );
            assert!(e.message().contains(needle), "{}", e.message());
        }
        assert!(check_format("100%% %Y").is_ok());
        // Years outside 0..=9999 cannot be padded to four digits.
        let far = ms(10000, 1, 1, 0, 0, 0, 0);
        assert_eq!(
            format(far, "%Y", 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(format(far, "%m-%d", 0).unwrap(), "01-01");
        assert_eq!(
            format(i64::MAX, "%H", 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn dates_before_the_epoch() {
        assert_eq!(
            format(-1, "%Y %j %U %V %G %w %u %L", 0).unwrap(),
            "1969 365 52 01 1970 4 3 999"
        );
        assert_eq!(
            format(-1, ISO_FORMAT_UTC, 0).unwrap(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    proptest! {
        /// Each component agrees with an independent computation of the
        /// same calendar fact (chrono's own formatter, strftime's `%U`).
        #[test]
        fn components_agree_with_strftime(millis in -5_000_000_000_000i64..250_000_000_000_000,
                                          offset_minutes in -1439i64..1440) {
            let offset = offset_minutes * 60;
            let got = format(millis, "%Y|%m|%d|%H|%M|%S|%L|%j|%U|%G|%V|%u", offset).unwrap();
            let local = DateTime::from_timestamp_millis(millis + offset * 1000).unwrap();
            let want = local.format("%Y|%m|%d|%H|%M|%S|%3f|%j|%U|%G|%V|%u").to_string();
            prop_assert_eq!(got, want);
            let w = format(millis, "%w", offset).unwrap();
            let strftime_w: i64 = local.format("%w").to_string().parse().unwrap();
            prop_assert_eq!(w, (strftime_w + 1).to_string());
        }

        #[test]
        fn offsets_round_trip_through_z(hours in 0i64..24, minutes in 0i64..60, negative in any::<bool>()) {
            let sign = if negative { '-' } else { '+' };
            let name = format!("{sign}{hours:02}:{minutes:02}");
            let seconds = parse_zone(&name).unwrap();
            prop_assert_eq!(parse_zone(&format!("{sign}{hours:02}{minutes:02}")).unwrap(), seconds);
            let z = format(0, "%z", seconds).unwrap();
            let expected = if seconds == 0 { "+0000".to_string() } else { format!("{sign}{hours:02}{minutes:02}") };
            prop_assert_eq!(z, expected);
        }
    }
}
