//! A JSON scanner over the request body as it lies in memory: tokens are read in place,
//! numbers parsed straight to `f64`, nothing allocated. It reads only what the fast row
//! reader needs and answers [`Miss`] at anything else — malformed JSON, a string with an
//! escape, nesting deeper than the tree reader allows — so that body is handed to the tree
//! reader, which answers it as it always has.
//!
//! Numbers come out bit for bit as `serde_json` (without `float_roundtrip`) reads them: a
//! significand of at most 2^53 with a power of ten of at most 22 is one exact
//! multiplication or division (what `serde_json` computes too); anything else is parsed by
//! `serde_json` itself.

/// The body is not one the fast reader reads; the tree reader answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss;

pub type Scanned<T> = Result<T, Miss>;

/// `serde_json`'s recursion limit: deeper bodies are refused by it, so never accepted here.
const MAX_DEPTH: usize = 128;

/// What a value slot held: a number, or a missing value (`null`, Python's `NaN`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Value(f64),
    Missing,
}

pub struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl<'a> Scan<'a> {
    pub fn new(bytes: &'a [u8]) -> Scan<'a> {
        Scan { bytes, at: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte` (after whitespace), or misses.
    pub fn eat(&mut self, byte: u8) -> Scanned<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Miss)
        }
    }

    /// Consumes `byte` if it comes next.
    pub fn eat_if(&mut self, byte: u8) -> bool {
        self.eat(byte).is_ok()
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// After an element of an array or object: `true` at a comma (another follows), `false`
    /// at `close` (consumed).
    pub fn next_or_close(&mut self, close: u8) -> Scanned<bool> {
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.at += 1;
                Ok(false)
            }
            _ => Err(Miss),
        }
    }

    /// A string without escapes, as its raw bytes (a key or a column name).
    pub fn plain_string(&mut self) -> Scanned<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.bytes.get(self.at) {
                Some(b'"') => break,
                Some(b'\\') | None => return Err(Miss),
                Some(&b) if b < 0x20 => return Err(Miss),
                Some(_) => self.at += 1,
            }
        }
        let text = &self.bytes[start..self.at];
        self.at += 1;
        std::str::from_utf8(text).map_err(|_| Miss)?;
        Ok(text)
    }

    /// An object key and its colon.
    pub fn key(&mut self) -> Scanned<&'a [u8]> {
        let key = self.plain_string()?;
        self.eat(b':')?;
        Ok(key)
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Miss)
        }
    }

    /// A feature value: a number, or `null` / `NaN` for a missing one. `Infinity` and
    /// anything else miss (the tree reader names them).
    pub fn number(&mut self) -> Scanned<Number> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| Number::Missing),
            Some(b'N') => self.literal(b"NaN").map(|()| Number::Missing),
            Some(b'-' | b'0'..=b'9') => self.finite().map(Number::Value),
            _ => Err(Miss),
        }
    }

    /// A JSON number, finite.
    fn finite(&mut self) -> Scanned<f64> {
        let bytes = self.bytes;
        let start = self.at;
        let negative = bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let mut significand: u64 = 0;
        let mut exact = true;
        let mut digits = |scan: &mut Scan<'_>, count_exponent: bool| -> (usize, i32) {
            let mut n = 0;
            let mut shift = 0i32;
            while let Some(&d @ b'0'..=b'9') = bytes.get(scan.at) {
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(u64::from(d - b'0')))
                {
                    Some(s) => significand = s,
                    None => exact = false,
                }
                if count_exponent {
                    shift -= 1;
                }
                scan.at += 1;
                n += 1;
            }
            (n, shift)
        };
        match bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self, false);
            }
            _ => return Err(Miss),
        }
        let mut exponent = 0i32;
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            let (n, shift) = digits(self, true);
            if n == 0 {
                return Err(Miss);
            }
            exponent += shift;
        }
        if let Some(b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
            let sign = match bytes.get(self.at) {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let mut e: i32 = 0;
            let mut n = 0;
            while let Some(&d @ b'0'..=b'9') = bytes.get(self.at) {
                e = e.saturating_mul(10).saturating_add(i32::from(d - b'0'));
                self.at += 1;
                n += 1;
            }
            if n == 0 {
                return Err(Miss);
            }
            exponent = exponent.saturating_add(sign * e);
        }
        let magnitude = if exact && significand <= 1 << 53 && exponent.unsigned_abs() <= 22 {
            let f = significand as f64;
            let pow = POW10[exponent.unsigned_abs() as usize];
            if exponent >= 0 { f * pow } else { f / pow }
        } else {
            // Long or far-from-one numbers: exactly as serde_json reads them (a JSON number
            // token parses on its own).
            let value: f64 = serde_json::from_slice(&bytes[start..self.at]).map_err(|_| Miss)?;
            return if value.is_finite() {
                Ok(value)
            } else {
                Err(Miss)
            };
        };
        Ok(if negative { -magnitude } else { magnitude })
    }

    /// Skips one value of any kind, checking it as `serde_json` would (and accepting
    /// Python's `NaN` / `Infinity` tokens, as the tree reader does).
    pub fn skip_value(&mut self) -> Scanned<()> {
        self.skip(0)
    }

    fn skip(&mut self, depth: usize) -> Scanned<()> {
        if depth >= MAX_DEPTH {
            return Err(Miss);
        }
        match self.peek().ok_or(Miss)? {
            b'{' => {
                self.at += 1;
                if self.eat_if(b'}') {
                    return Ok(());
                }
                let mut keys: Vec<&[u8]> = Vec::new();
                loop {
                    let key = self.key()?;
                    if keys.contains(&key) {
                        return Err(Miss);
                    }
                    keys.push(key);
                    self.skip(depth + 1)?;
                    if !self.next_or_close(b'}')? {
                        return Ok(());
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat_if(b']') {
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if !self.next_or_close(b']')? {
                        return Ok(());
                    }
                }
            }
            b'"' => self.skip_string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'N' => self.literal(b"NaN"),
            b'I' => self.literal(b"Infinity"),
            b'-' if self.bytes[self.at..].starts_with(b"-Infinity") => self.literal(b"-Infinity"),
            _ => self.finite().map(|_| ()),
        }
    }

    /// A string with any escapes, checked (valid escapes, no control characters, UTF-8).
    fn skip_string(&mut self) -> Scanned<()> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.bytes.get(self.at).copied().ok_or(Miss)? {
                b'"' => break,
                b'\\' => {
                    self.at += 1;
                    match self.bytes.get(self.at).copied().ok_or(Miss)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        // A \u escape: four hex digits. Lone surrogates are left to the
                        // tree reader.
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5).ok_or(Miss)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Miss);
                            }
                            let unit = u16::from_str_radix(
                                std::str::from_utf8(hex).map_err(|_| Miss)?,
                                16,
                            )
                            .map_err(|_| Miss)?;
                            if (0xD800..=0xDFFF).contains(&unit) {
                                return Err(Miss);
                            }
                            self.at += 5;
                        }
                        _ => return Err(Miss),
                    }
                }
                b if b < 0x20 => return Err(Miss),
                _ => self.at += 1,
            }
        }
        std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| Miss)?;
        self.at += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Scanned<Number> {
        let mut s = Scan::new(text.as_bytes());
        let n = s.number()?;
        if s.at_end() { Ok(n) } else { Err(Miss) }
    }

    #[test]
    fn numbers_are_bit_for_bit_what_serde_json_reads() {
        let cases = [
            "0",
            "-0",
            "1",
            "-17",
            "900.0",
            "0.1",
            "0.30000000000000004",
            "3.141592653589793",
            "2.718281828459045e-3",
            "1e22",
            "1e23",
            "-1.5E+10",
            "123456789012345678",
            "12345678901234567890",
            "123456789012345678901234567890",
            "9007199254740993",
            "4.9e-324",
            "1.7976931348623157e308",
            "0.000000000000000000000000000123",
            "1.00000000000000011102230246251565404236316680908203125",
        ];
        for text in cases {
            let ours = match number(text) {
                Ok(Number::Value(v)) => v,
                other => panic!("{text}: {other:?}"),
            };
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let theirs = value.as_f64().unwrap();
            assert_eq!(
                ours.to_bits(),
                theirs.to_bits(),
                "{text}: {ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn what_json_or_finite_numbers_refuse_is_a_miss() {
        for text in [
            "1e400", "-1e400", "01", "1.", ".5", "-", "+1", "1e", "1e+", "Infinity", "-NaN", "nul",
            "\"1\"", "[1]", "true",
        ] {
            assert_eq!(number(text), Err(Miss), "{text}");
        }
        assert_eq!(number("null"), Ok(Number::Missing));
        assert_eq!(number("NaN"), Ok(Number::Missing));
        let huge = "9".repeat(1_000_000);
        assert_eq!(number(&huge), Err(Miss));
    }

    #[test]
    fn skipping_checks_what_serde_json_checks() {
        let ok = [
            r#"{"a": [1, 2.5, "x\"y\u00e9", true, false, null, NaN, Infinity, -Infinity], "b": {}}"#,
            "[]",
            r#""\/\b\f\n\r\t""#,
        ];
        for text in ok {
            let mut s = Scan::new(text.as_bytes());
            assert_eq!(s.skip_value(), Ok(()), "{text}");
            assert!(s.at_end(), "{text}");
        }
        // Negative numbers and strings with spaces are skipped here, not left to the tree
        // reader.
        for text in ["-5", "-0.5e-3", "\"a b\"", "{\"k y\": \" \"}"] {
            let mut s = Scan::new(text.as_bytes());
            assert_eq!(s.skip_value(), Ok(()), "{text}");
            assert!(s.at_end(), "{text}");
        }
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert_eq!(
            Scan::new(deep_objects.as_bytes()).skip_value(),
            Err(Miss),
            "objects nest no deeper than serde_json reads"
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let bad = [
            r#"{"a": 1, "a": 2}"#,
            r#""\q""#,
            "\"\u{1}\"",
            r#""\ud800""#,
            "[1,]",
            "{\"a\" 1}",
            "1e999",
            deep.as_str(),
        ];
        for text in bad {
            assert_eq!(Scan::new(text.as_bytes()).skip_value(), Err(Miss), "{text}");
        }
    }

    #[test]
    fn keys_are_plain_strings() {
        let mut s = Scan::new(br#" "lag_1" : 3"#);
        assert_eq!(s.key(), Ok(&b"lag_1"[..]));
        assert_eq!(Scan::new(br#""a\u0062": 1"#).key(), Err(Miss));
        assert_eq!(Scan::new(b"\"\xff\": 1").key(), Err(Miss));
        assert_eq!(Scan::new(b"\"a\x01\": 1").key(), Err(Miss));
        assert_eq!(Scan::new(b"\"a\x1f\": 1").key(), Err(Miss));
        assert_eq!(Scan::new(b"\"a b\": 1").key(), Ok(&b"a b"[..]));
    }
}
