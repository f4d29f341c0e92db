//! Exact decimal numbers, as the reference evaluator reads them: a request's number text (`12.5`,
//! `-0.25`, `1.5e2`) to an integer count of `10^-scale` units, never through a float. The gate
//! has its own reading (`tollgate_runtime::decimal`), written separately and held to this one by
//! the differential property.

/// `text` as a whole number of `10^-scale` units: `units("12.5", 2) == Some(1250)`. `None` when
/// the text is not a JSON number, when it has more (non-zero) digits after the point than
/// `scale` allows, or when the units do not fit an `i64`.
pub fn units(text: &str, scale: u8) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let exponent = rest.get(at + 1..)?;
            let (below, digits) = match exponent.as_bytes().first() {
                Some(b'-') => (true, exponent.get(1..)?),
                Some(b'+') => (false, exponent.get(1..)?),
                _ => (false, exponent),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond 10^6 no digit string a request can carry matters: saturate.
            let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX).min(1_000_000);
            let exponent = if below { -magnitude } else { magnitude };
            (rest.get(..at)?, exponent)
        }
        None => (rest, 0),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (mantissa, ""),
    };
    let json_whole = whole == "0" || (!whole.is_empty() && !whole.starts_with('0'));
    if !json_whole
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^shift, in units: digits × 10^(shift + scale).
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let shift = exponent - fraction.len() as i64 + i64::from(scale);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    let kept = if shift >= 0 {
        if shift > 19 {
            return None;
        }
        format!("{digits}{}", "0".repeat(shift as usize))
    } else {
        let drop = usize::try_from(-shift).ok()?;
        if drop >= digits.len() {
            return None; // a non-zero value finer than one unit
        }
        let (kept, dropped) = digits.split_at(digits.len() - drop);
        if dropped.bytes().any(|b| b != b'0') {
            return None;
        }
        kept.to_owned()
    };
    let magnitude = kept.parse::<i128>().ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

#[cfg(test)]
mod tests {
    use super::units;

    #[test]
    fn numbers_become_exact_units() {
        assert_eq!(units("12.5", 2), Some(1250));
        assert_eq!(units("12.50", 2), Some(1250));
        assert_eq!(units("12.500", 2), Some(1250));
        assert_eq!(units("-0.25", 2), Some(-25));
        assert_eq!(units("7", 2), Some(700));
        assert_eq!(units("0", 0), Some(0));
        assert_eq!(units("-0.0", 3), Some(0));
        assert_eq!(units("1.5e2", 0), Some(150));
        assert_eq!(units("1.5E+2", 1), Some(1500));
        assert_eq!(units("125e-2", 2), Some(125));
        assert_eq!(units("0e999999999999", 2), Some(0));
        assert_eq!(units("92233720368547758.07", 2), Some(i64::MAX));
        assert_eq!(units("-92233720368547758.08", 2), Some(i64::MIN));
    }

    #[test]
    fn more_places_than_the_scale_or_out_of_range_is_refused() {
        assert_eq!(units("12.345", 2), None);
        assert_eq!(units("0.001", 2), None);
        assert_eq!(units("1e-3", 2), None);
        assert_eq!(units("92233720368547758.08", 2), None);
        assert_eq!(units("1e19", 0), None);
        assert_eq!(units("1e400", 2), None);
    }

    #[test]
    fn only_json_numbers_are_read() {
        for text in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "1.5.2", "0x10", "1_000", " 1", "NaN",
            "1e+-2",
        ] {
            assert_eq!(units(text, 2), None, "{text:?}");
        }
    }
}
