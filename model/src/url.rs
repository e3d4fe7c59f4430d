//! Percent-encoding of URL query values, written once for everyone who
//! builds links or signs query strings: alert notices link into the
//! dashboard, the dashboard links to its own pages, and the rules engine's
//! channels sign and send query strings. A value must come out the same
//! whichever crate encoded it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// What RFC 3986 leaves unescaped: `A–Z a–z 0–9 - _ . ~`.
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// RFC 3986 percent-encoding: everything but the [`UNRESERVED`]
/// characters is escaped, space as `%20` (never `+`). This is exactly
/// Aliyun's `percentEncode`, and a safe query or form value for everyone
/// else.
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}
