//! Server-rendered pages shared by the predictor's `/ui` and `forecastctl dashboard`: the
//! page shell and stylesheet (no script, nothing loaded from elsewhere, so both serve
//! `Content-Security-Policy: default-src 'self'`), and charts drawn as inline SVG.

pub mod chart;
pub mod layout;
pub mod timeline;

/// The policy every page is served with: only its own origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'";

/// A number as a person reads it: up to 6 significant digits, no exponent for everyday
/// magnitudes.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs();
    if magnitude != 0.0 && !(1e-4..1e12).contains(&magnitude) {
        return format!("{x:.4e}");
    }
    let decimals = if magnitude >= 1000.0 {
        2
    } else if magnitude >= 1.0 {
        4
    } else {
        6
    };
    let text = format!("{x:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    if text == "-0" { "0".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(number(812.5), "812.5");
        assert_eq!(number(1234.5678), "1234.57");
        assert_eq!(number(0.000123456), "0.000123");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.0000001), "-1.0000e-7");
        assert_eq!(number(1e15), "1.0000e15");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
