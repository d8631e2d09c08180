//! When the first certificate of a PEM file expires: just enough base64, DER
//! and calendar arithmetic to read `notAfter`, with no crate (the component
//! stays small). The certificate is not validated in any other way.

pub use mend_sdk::time::{civil_from_days, days_from_civil};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// `notAfter` of the first certificate in `pem`, in seconds since the Unix epoch.
pub fn not_after(pem: &[u8]) -> Result<i64, String> {
    let text = String::from_utf8_lossy(pem);
    let start = text
        .find(BEGIN)
        .ok_or("no `-----BEGIN CERTIFICATE-----` block in it")?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or("the first certificate has no `-----END CERTIFICATE-----` line")?;
    let der = base64(&text[start..start + len])?;
    validity_end(&der)
}

/// Decode standard base64 (RFC 4648, `=` padding), ignoring whitespace.
pub fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut chars) = (0u32, 0u32, 0usize);
    let mut padded = false;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padded = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("{:?} is not base64", c as char)),
        };
        if padded {
            return Err("base64 goes on after its `=` padding".to_string());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        chars += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if chars % 4 == 1 {
        return Err("the base64 is cut short".to_string());
    }
    Ok(out)
}

/// One DER element: (tag, contents, what follows it).
fn element(data: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let short = || "the DER is cut short".to_string();
    let (&tag, rest) = data.split_first().ok_or_else(short)?;
    let (&first, rest) = rest.split_first().ok_or_else(short)?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81..=0x84 => {
            let n = (first & 0x7f) as usize;
            if rest.len() < n {
                return Err(short());
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
            (len, &rest[n..])
        }
        _ => return Err(format!("unsupported DER length byte {first:#04x}")),
    };
    if rest.len() < len {
        return Err(short());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The contents of an element of tag `want`, and what follows it.
fn expect<'a>(data: &'a [u8], want: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (tag, contents, rest) = element(data)?;
    if tag != want {
        return Err(format!(
            "not an X.509 certificate: {what} has tag {tag:#04x}, not {want:#04x}"
        ));
    }
    Ok((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Certificate > TBSCertificate > [0] version?, serial, signature,
/// issuer, validity { notBefore, notAfter }.
fn validity_end(der: &[u8]) -> Result<i64, String> {
    let (cert, _) = expect(der, SEQUENCE, "the certificate")?;
    let (mut tbs, _) = expect(cert, SEQUENCE, "tbsCertificate")?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    let (_, rest) = expect(tbs, INTEGER, "serialNumber")?;
    let (_, rest) = expect(rest, SEQUENCE, "signature")?;
    let (_, rest) = expect(rest, SEQUENCE, "issuer")?;
    let (validity, _) = expect(rest, SEQUENCE, "validity")?;
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    let time = std::str::from_utf8(time).map_err(|_| "notAfter is not text".to_string())?;
    parse_time(tag, time)
}

/// UTCTime `YYMMDDHHMMSSZ` (50-99 are 19xx) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as RFC 5280 requires them, to Unix seconds.
pub fn parse_time(tag: u8, text: &str) -> Result<i64, String> {
    let bad = || format!("notAfter {text:?} is not a time RFC 5280 allows");
    let digits = match (tag, text.len()) {
        (UTC_TIME, 13) | (GENERALIZED_TIME, 15) => text.strip_suffix('Z').ok_or_else(bad)?,
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(bad()),
        _ => return Err(format!("notAfter has tag {tag:#04x}, not a time")),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits[r].parse::<i64>().map_err(|_| bad());
    let (year, rest) = if tag == UTC_TIME {
        let yy = num(0..2)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (num(0..4)?, 4)
    };
    let field = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, hour, minute, second) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2026-12-01` for Unix seconds.
pub fn date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(coded).unwrap(), plain.as_bytes(), "{coded}");
        }
        assert_eq!(base64("Zm9v\r\nYmFy\n").unwrap(), b"foobar");
        assert_eq!(base64("/+8=").unwrap(), [0xff, 0xef]);
        assert!(base64("Zm9v!").is_err());
        assert!(base64("Zg==Zg==").is_err());
        assert!(base64("Zm9vY").is_err());
    }

    #[test]
    fn civil_dates_agree_with_date_1() {
        // `date -u -d 'YYYY-MM-DD' +%s` / 86400
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (1969, 12, 31, -1),
            (2000, 2, 29, 11_016),
            (2000, 3, 1, 11_017),
            (2026, 12, 2, 20_789),
            (2038, 1, 19, 24_855),
            (2100, 3, 1, 47_541),
            (2136, 5, 29, 60_779),
            (1950, 1, 1, -7305),
        ] {
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(days), (y, m, d), "{days}");
        }
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date(1_796_234_473), "2026-12-02");
    }

    #[test]
    fn times_as_rfc5280_writes_them() {
        // `date -u -d '2026-12-02 18:01:13' +%s`
        assert_eq!(parse_time(UTC_TIME, "261202180113Z"), Ok(1_796_234_473));
        assert_eq!(parse_time(UTC_TIME, "500101000000Z"), Ok(-631_152_000));
        assert_eq!(parse_time(UTC_TIME, "491231235959Z"), Ok(2_524_607_999));
        assert_eq!(
            parse_time(GENERALIZED_TIME, "21360529180113Z"),
            Ok(5_251_370_473)
        );
        for bad in [
            "2612021801Z",
            "261302180113Z",
            "260230180113Z",
            "26120218011Zx",
        ] {
            assert!(parse_time(UTC_TIME, bad).is_err(), "{bad}");
        }
        assert!(parse_time(UTC_TIME, "261202180113+0100").is_err());
        assert!(parse_time(0x04, "261202180113Z").is_err());
    }

    #[test]
    fn der_that_is_not_a_certificate_is_refused() {
        assert!(validity_end(&[]).is_err());
        assert!(validity_end(&[0x30, 0x05, 0x30]).is_err());
        assert!(
            validity_end(&[0x04, 0x00])
                .unwrap_err()
                .contains("not an X.509")
        );
        assert!(validity_end(&[0x30, 0x80]).unwrap_err().contains("length"));
        let e = not_after(b"-----BEGIN CERTIFICATE-----\nMAA=\n").unwrap_err();
        assert!(e.contains("END CERTIFICATE"), "{e}");
        let e =
            not_after(b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(e.contains("no `-----BEGIN CERTIFICATE-----`"), "{e}");
    }
}
