//! Exact decimal numbers without floats or allocation: a request's JSON number text to an integer
//! count of `10^-scale` units. The compiler's evaluator reads numbers with its own code; the
//! differential property holds the two to the same answers.

/// A JSON number's parts, validated: where its digits are and its exponent.
struct Parts<'t> {
    negative: bool,
    whole: &'t [u8],
    fraction: &'t [u8],
    /// Saturated at ±1,000,000: past that no digit string changes the answer.
    exponent: i64,
}

fn digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

fn parts(text: &[u8]) -> Option<Parts<'_>> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.iter().position(|b| *b == b'e' || *b == b'E') {
        Some(at) => {
            let (mantissa, tail) = rest.split_at(at);
            let tail = tail.get(1..)?;
            let (below, exponent_digits) = match tail.split_first() {
                Some((b'-', rest)) => (true, rest),
                Some((b'+', rest)) => (false, rest),
                _ => (false, tail),
            };
            if !digits(exponent_digits) {
                return None;
            }
            let mut magnitude: i64 = 0;
            for digit in exponent_digits {
                magnitude = (magnitude * 10 + i64::from(digit - b'0')).min(1_000_000);
            }
            (mantissa, if below { -magnitude } else { magnitude })
        }
        None => (rest, 0),
    };
    let (whole, fraction) = match mantissa.iter().position(|b| *b == b'.') {
        Some(at) => {
            let (whole, fraction) = mantissa.split_at(at);
            let fraction = fraction.get(1..)?;
            if !digits(fraction) {
                return None;
            }
            (whole, fraction)
        }
        None => (mantissa, &[][..]),
    };
    // JSON: no leading zeros, at least one digit before any point.
    if !digits(whole) || (whole.len() > 1 && whole.first() == Some(&b'0')) {
        return None;
    }
    Some(Parts {
        negative,
        whole,
        fraction,
        exponent,
    })
}

/// `text` as a whole number of `10^-scale` units: `units(b"12.5", 2) == Some(1250)`. `None` when
/// the text is not a JSON number, has more non-zero digits after the point than `scale`
/// allows, or its units do not fit an `i64`. Work is linear in the text's length.
pub fn units(text: &[u8], scale: u8) -> Option<i64> {
    let parts = parts(text)?;
    // value = mantissa digits × 10^shift; units = value × 10^scale.
    let places = i64::try_from(parts.fraction.len()).ok()?;
    let shift = parts.exponent - places + i64::from(scale);
    let count = parts.whole.len() + parts.fraction.len();
    // Digits past `keep` must be zeros (they are finer than one unit).
    let keep = if shift >= 0 {
        count
    } else {
        count.saturating_sub(usize::try_from(-shift).ok()?)
    };
    let mut value: i128 = 0;
    for (index, digit) in parts.whole.iter().chain(parts.fraction).enumerate() {
        let digit = i128::from(digit - b'0');
        if index < keep {
            value = value.checked_mul(10)?.checked_add(digit)?;
            if value > i128::from(u64::MAX) {
                return None;
            }
        } else if digit != 0 {
            return None;
        }
    }
    if shift > 0 && value != 0 {
        for _ in 0..shift.min(40) {
            value = value.checked_mul(10)?;
            if value > i128::from(u64::MAX) {
                return None;
            }
        }
    }
    let signed = if parts.negative { -value } else { value };
    i64::try_from(signed).ok()
}

#[cfg(test)]
mod tests {
    use super::units;

    #[test]
    fn numbers_become_exact_units() {
        let cases: [(&[u8], u8, i64); 13] = [
            (b"12.5", 2, 1250),
            (b"12.50", 2, 1250),
            (b"12.500", 2, 1250),
            (b"-0.25", 2, -25),
            (b"7", 2, 700),
            (b"0", 0, 0),
            (b"-0.0", 3, 0),
            (b"1.5e2", 0, 150),
            (b"1.5E+2", 1, 1500),
            (b"125e-2", 2, 125),
            (b"0e999999999999", 2, 0),
            (b"92233720368547758.07", 2, i64::MAX),
            (b"-92233720368547758.08", 2, i64::MIN),
        ];
        for (text, scale, expected) in cases {
            assert_eq!(units(text, scale), Some(expected));
        }
    }

    #[test]
    fn more_places_than_the_scale_or_out_of_range_is_refused() {
        let cases: [(&[u8], u8); 7] = [
            (b"12.345", 2),
            (b"0.001", 2),
            (b"1e-3", 2),
            (b"1e-9999999", 2),
            (b"92233720368547758.08", 2),
            (b"1e19", 0),
            (b"1e400", 2),
        ];
        for (text, scale) in cases {
            assert_eq!(units(text, scale), None);
        }
    }

    #[test]
    fn only_json_numbers_are_read() {
        let cases: [&[u8]; 15] = [
            b"", b"-", b"+1", b"01", b"1.", b".5", b"1e", b"1e+", b"1.5.2", b"0x10", b"1_000",
            b" 1", b"NaN", b"1e+-2", b"--1",
        ];
        for text in cases {
            assert_eq!(units(text, 2), None);
        }
    }
}
