//! Helpers shared by the rules crate's integration tests.
//!
//! Each test file includes this with `mod support;` and uses what it needs,
//! so any one file leaves parts unused: hence the `allow`s below, which a
//! helper module shared between test binaries cannot avoid.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod engine_env;
pub mod smtp;

pub use engine_env::Env;
pub use smtp::{Received, SmtpOptions, SmtpSecurity, SmtpServer, free_port};

/// HTML text with character references decoded (`&lt;`, `&#60;`, `&#x3c;`
/// and the like), so tests can look for what a reader sees without caring
/// which escaping style the template engine chose.
pub fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
