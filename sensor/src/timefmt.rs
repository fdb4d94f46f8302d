//! Suricata's timestamp format, written by every EVE record and by the
//! stats of the feed sources (their last success, wall clock), and the
//! millisecond offsets records give between two packet times. A leaf: it
//! depends on nothing else in the crate, so every stage may use it.

/// Milliseconds from `from_ns` to `to_ns`, rounded to the microsecond, as
/// records write offsets and delays. Saturates: packet times span the whole
/// `i64` range in hostile captures (a pcapng `if_tsoffset`).
pub fn ms(from_ns: i64, to_ns: i64) -> f64 {
    (to_ns.saturating_sub(from_ns) as f64 / 1000.0).round() / 1000.0
}

/// Suricata's timestamp format: `2016-06-01T08:02:45.123456+0000` (UTC).
pub fn timestamp(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let micros = ts_ns.rem_euclid(1_000_000_000) / 1000;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        // Digits written in place: three of these per record went through
        // `format!` at a quarter of a microsecond each.
        Ok(t) if (0..=9999).contains(&t.year()) => {
            let mut b = *b"0000-00-00T00:00:00.000000+0000";
            let fields: [(usize, usize, i64); 7] = [
                (0, 4, i64::from(t.year())),
                (5, 2, i64::from(u8::from(t.month()))),
                (8, 2, i64::from(t.day())),
                (11, 2, i64::from(t.hour())),
                (14, 2, i64::from(t.minute())),
                (17, 2, i64::from(t.second())),
                (20, 6, micros),
            ];
            for (at, width, mut v) in fields {
                for d in b[at..at + width].iter_mut().rev() {
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            }
            b.iter().map(|&c| char::from(c)).collect()
        }
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            micros
        ),
        Err(_) => "1970-01-01T00:00:00.000000+0000".to_string(),
    }
}
