//! RFC 3339 times in and out, fast for the one form Confluence writes.
//!
//! Every record has a time to read (DC `2021-11-23T00:44:58.940Z`) and every document a
//! `@timestamp` to write; through the general-purpose `time` formatter and parser these were
//! a visible share of a record's cost. The fast paths handle `YYYY-MM-DDTHH:MM:SS[.f]Z`
//! (and numeric offsets); anything else falls back to `time`, which also words the errors.

use super::NormalizeError;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u64;
    let mp = ((m + 9) % 12) as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// The date of a day since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32)
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → epoch milliseconds (fraction truncated).
fn parse_fast(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y as i64, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..3 {
            ms = ms * 10 + frac.get(k).map_or(0, |c| (c - b'0') as u32);
        }
    }
    let offset_s: i64 = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2])?;
            let om = digits(&[*om1, *om2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 3600 + om * 60) as i64;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + sec) as i64 - offset_s;
    Some(secs * 1000 + ms as i64)
}

/// Epoch milliseconds of an RFC 3339 time; the error names `field`.
pub fn parse_ms(s: &str, field: &'static str) -> Result<i64, NormalizeError> {
    if let Some(ms) = parse_fast(s) {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| NormalizeError::Field {
            field,
            problem: format!("{s:?} is not an ISO-8601 time ({e})"),
        })?;
    Ok(t.unix_timestamp_nanos().div_euclid(1_000_000) as i64)
}

/// A formatted time: at most `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub struct Formatted {
    buf: [u8; 30],
    len: usize,
}

impl Formatted {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII")
    }
}

/// `2021-11-22T23:43:22.054Z`; with `sub_ms_nanos`, nine fraction digits
/// (`…22.054000123Z`). Years outside 0000–9999 have no RFC 3339 form.
pub fn format(ts_ms: i64, sub_ms_nanos: u32) -> Result<Formatted, NormalizeError> {
    let days = ts_ms.div_euclid(86_400_000);
    let ms_of_day = ts_ms.rem_euclid(86_400_000) as u32;
    let (y, mo, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) || sub_ms_nanos >= 1_000_000 {
        return Err(NormalizeError::Field {
            field: "timestamp",
            problem: format!("{ts_ms} ms is out of range"),
        });
    }
    let mut buf = [0u8; 30];
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for k in (0..width).rev() {
            buf[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u32, 4);
    put(5, mo, 2);
    put(8, d, 2);
    put(11, ms_of_day / 3_600_000, 2);
    put(14, ms_of_day / 60_000 % 60, 2);
    put(17, ms_of_day / 1000 % 60, 2);
    put(20, ms_of_day % 1000, 3);
    let mut len = 23;
    if sub_ms_nanos != 0 {
        put(23, sub_ms_nanos, 6);
        len = 29;
    }
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        buf[at] = c;
    }
    buf[len] = b'Z';
    Ok(Formatted { buf, len: len + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn agrees_with_the_time_crate() {
        let mut ms: i64 = -62_135_596_800_000; // 0001-01-01
        let step = 7_919_777_777; // about three months and some odd milliseconds
        while ms < 253_402_300_799_000 {
            let ours = format(ms, 0).unwrap();
            let t =
                time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
            let theirs = t.format(&Rfc3339).unwrap();
            // `time` drops trailing zero digits; compare instants.
            let back = time::OffsetDateTime::parse(ours.as_str(), &Rfc3339).unwrap();
            assert_eq!(back, t, "{} vs {theirs}", ours.as_str());
            assert_eq!(parse_ms(ours.as_str(), "t").unwrap(), ms);
            assert_eq!(parse_fast(&theirs).unwrap(), ms, "{theirs}");
            ms += step;
        }
    }

    #[test]
    fn nanoseconds_offsets_and_rejections() {
        assert_eq!(
            format(1_637_624_602_054, 0).unwrap().as_str(),
            "2021-11-22T23:43:22.054Z"
        );
        assert_eq!(
            format(1_637_624_602_054, 123).unwrap().as_str(),
            "2021-11-22T23:43:22.054000123Z"
        );
        let utc = parse_ms("2025-11-23T00:44:58.940Z", "t").unwrap();
        assert_eq!(parse_ms("2025-11-23T02:44:58.940+02:00", "t").unwrap(), utc);
        assert_eq!(parse_ms("2025-11-23T00:44:58.9401234Z", "t").unwrap(), utc);
        assert_eq!(parse_ms("2025-11-23T00:44:58Z", "t").unwrap(), utc - 940);
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-11-23 00:44:58",
            "2025-11-23T24:00:00Z",
            "",
        ] {
            let e = parse_ms(bad, "timestamp").unwrap_err().to_string();
            assert!(e.contains("`timestamp`"), "{bad}: {e}");
        }
        assert!(format(i64::MAX / 2, 0).is_err());
        assert!(format(-62_135_596_800_001 - 86_400_000 * 366, 0).is_err());
    }
}
