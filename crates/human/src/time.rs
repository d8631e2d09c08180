//! UTC times for names, plans and the journal, without a time zone
//! database: the calendar math once, for the steps (which get the time from
//! the host) and the engine (which also reads the real clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// The real clock in Unix milliseconds (the journal's timestamps).
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The real clock in Unix seconds.
pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// `"2026-11-22 17:04:05 UTC"` for a Unix time in seconds.
pub fn format_utc(unix_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2026-11-22T03:00:00Z`.
pub fn utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261122T030000Z`: sorts as it reads and is safe in a file name.
pub fn utc_stamp(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// A duration as an operator says it: `3 d 4 h`, `5 h 12 min`, `40 s`.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A duration like `36h`, `2d`, `90min`, `45s` or `1w`, in seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_secs = match unit.trim() {
        "s" | "sec" | "secs" | "seconds" => 1,
        "m" | "min" | "mins" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs)
}

/// The first UTC time written in a name, as backup tools write them:
/// `20261122T030000Z`, `2026-11-22T03:00:00Z`, `2026-11-22_0300`,
/// `2026-11-22` or `20261122` (a bare date is midnight UTC). `None` when the
/// name holds no date (rsnapshot's `daily.0`): then use its mtime.
pub fn time_in_name(name: &str) -> Option<i64> {
    time_in_name_at(name).map(|(_, t)| t)
}

/// [`time_in_name`], and the byte offset where the time starts: what is
/// before it is the name's label (`media-` in `media-20261122T030000Z`).
pub fn time_in_name_at(name: &str) -> Option<(usize, i64)> {
    let b = name.as_bytes();
    (0..b.len()).find_map(|i| parse_at(&b[i..]).map(|t| (i, t)))
}

/// The label of a dated name: what comes before its time, without the
/// separator (`media` for `media-20261122T030000Z`, `db` for
/// `db_2026-11-22.dump`); `None` when the name holds no time.
pub fn label_of(name: &str) -> Option<&str> {
    let (at, _) = time_in_name_at(name)?;
    Some(name[..at].trim_end_matches(['-', '_', '.', ' ']))
}

fn digits(b: &[u8], n: usize) -> Option<i64> {
    if b.len() < n || !b[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(&b[..n]).ok()?.parse().ok()
}

fn parse_at(b: &[u8]) -> Option<i64> {
    // The date: YYYY-MM-DD or YYYYMMDD.
    let (y, mo, d, mut rest) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (
            digits(b, 4)?,
            digits(&b[5..], 2)?,
            digits(&b[8..], 2)?,
            &b[10..],
        )
    } else {
        let y = digits(b, 4)?;
        (y, digits(&b[4..], 2)?, digits(&b[6..], 2)?, &b[8..])
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    // A digit right after the date means this was the middle of a longer number.
    if rest.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    // The time, if one follows: T or _ then HHMM[SS] or HH:MM[:SS] or HH-MM[-SS].
    if let Some((&sep, after)) = rest.split_first()
        && (sep == b'T' || sep == b'_' || sep == b' ')
    {
        let mut parts = Vec::new();
        let mut r = after;
        while parts.len() < 3 {
            let Some(n) = digits(r, 2) else { break };
            parts.push(n);
            r = &r[2..];
            if let Some((&c, more)) = r.split_first()
                && (c == b':' || c == b'-')
                && parts.len() < 3
                && digits(more, 2).is_some()
            {
                r = more;
            }
        }
        if parts.len() >= 2
            && parts[0] < 24
            && parts[1] < 60
            && parts.get(2).is_none_or(|s| *s < 61)
        {
            secs += parts[0] * 3600 + parts[1] * 60 + parts.get(2).copied().unwrap_or(0);
            rest = r;
        }
    }
    let _ = rest;
    Some(secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    (y, m, d, tod / 3600, tod % 3600 / 60, tod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_316_400; // 2026-11-22T03:00:00Z

    #[test]
    fn formats_round_trip() {
        assert_eq!(utc(T), "2026-11-22T03:00:00Z");
        assert_eq!(utc_stamp(T), "20261122T030000Z");
        assert_eq!(time_in_name(&format!("media-{}", utc_stamp(T))), Some(T));
        assert_eq!(time_in_name("db-2026-11-22T03:00:00Z.dump"), Some(T));
        assert_eq!(time_in_name("2026-11-22_0300.tar"), Some(T));
        assert_eq!(time_in_name("backup-2026-11-22"), Some(T - 3 * 3600));
        assert_eq!(time_in_name("20261122"), Some(T - 3 * 3600));
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn labels_are_what_comes_before_the_time() {
        assert_eq!(label_of("media-20261126T100000Z"), Some("media"));
        assert_eq!(label_of("zz-prosody-20261126T100000Z"), Some("zz-prosody"));
        assert_eq!(label_of("db_2026-11-22.dump"), Some("db"));
        assert_eq!(label_of("2026-11-22"), Some(""));
        assert_eq!(label_of("daily.0"), None);
    }

    #[test]
    fn names_without_a_date() {
        assert_eq!(time_in_name("daily.0"), None);
        assert_eq!(time_in_name("weekly.12"), None);
        assert_eq!(time_in_name("id-123456789012"), None);
        assert_eq!(time_in_name("2026-13-01"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("36h"), Some(36 * 3600));
        assert_eq!(parse_duration("2d"), Some(2 * 86_400));
        assert_eq!(parse_duration("90 min"), Some(5400));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("3 fortnights"), None);
        assert_eq!(human_age(26 * 3600 + 60), "1 d 2 h");
        assert_eq!(human_age(7 * 3600 + 5 * 60), "7 h 5 min");
        assert_eq!(human_age(59), "59 s");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_367_045), "2026-11-22 17:04:05 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn clock_is_sane() {
        let ms = now_ms();
        assert!(ms > 1_600_000_000_000, "{ms}");
        assert!((now_secs() - ms / 1000).abs() <= 1);
    }
}
