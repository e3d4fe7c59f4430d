//! `http`: one request, its status and (optionally) its body, and the
//! server certificate's days until expiry as the gauge `cert_days`.
//!
//! The client is reqwest over rustls, as the shipper's, built once per
//! probe (it holds the trusted roots and the TLS setting) with redirects
//! off, so the expected status is the endpoint's own. Certificate failures
//! get their own codes (`tls-expired`, `tls-unknown-issuer`,
//! `tls-wrong-name`, `tls`), found by walking the error's causes down to
//! rustls' error.

use std::time::{Duration, Instant};

use super::config::HttpSpec;
use super::{BuildError, Report};

/// A built HTTP probe.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: reqwest::Client,
    spec: HttpSpec,
    method: reqwest::Method,
    operation: String,
}

/// Largest body read when a regex must match it.
const MAX_BODY: usize = 1 << 20;

impl HttpProbe {
    /// Builds the client.
    ///
    /// # Errors
    /// [`BuildError`]: an unreadable `ca_file` or one without
    /// certificates, or a client that cannot be built.
    pub fn new(spec: HttpSpec, timeout: Duration) -> Result<HttpProbe, BuildError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .danger_accept_invalid_certs(!spec.tls_verify)
            .user_agent(concat!(
                "panorama-agent/",
                env!("CARGO_PKG_VERSION"),
                " probe"
            ));
        if let Some(ca) = &spec.ca_file {
            let pem = std::fs::read(ca).map_err(|source| BuildError::ReadCaFile {
                path: ca.clone(),
                source,
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                BuildError::CaCertificates {
                    path: ca.clone(),
                    source,
                }
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(BuildError::Client)?;
        let method = reqwest::Method::from_bytes(spec.method.as_bytes())
            .map_err(|e| BuildError::Method(Box::new(e)))?;
        let path = reqwest::Url::parse(&spec.url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/".into());
        Ok(HttpProbe {
            client,
            operation: format!("{method} {path}"),
            method,
            spec,
        })
    }

    /// `GET /health`: the second half of the series name.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// One request.
    pub async fn run(&self, now_unix_s: i64) -> Report {
        let started = Instant::now();
        let response = match self
            .client
            .request(self.method.clone(), &self.spec.url)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Report::failed(&self.operation, error_code(&e), started.elapsed()),
        };
        let mut figures = Vec::new();
        if let Some(info) = response.extensions().get::<reqwest::tls::TlsInfo>()
            && let Some(not_after) = info.peer_certificate().and_then(not_after)
        {
            figures.push(("cert_days", (not_after - now_unix_s) as f64 / 86_400.0));
        }
        let status = response.status().as_u16();
        let mut result = if status == self.spec.expect_status {
            Ok(())
        } else {
            Err(format!("status {status}"))
        };
        if let Some(re) = &self.spec.body_regex {
            match read_body(response).await {
                Ok(body) => {
                    if result.is_ok() && !re.is_match(&String::from_utf8_lossy(&body)) {
                        result = Err("body-mismatch".into());
                    }
                }
                Err(e) => result = Err(error_code(&e)),
            }
        } else if let Err(e) = response.bytes().await {
            // The whole answer belongs to the latency; a body cut short
            // is a failure even with the right status.
            result = Err(error_code(&e));
        }
        Report {
            operation: self.operation.clone(),
            result,
            latency: started.elapsed(),
            figures,
        }
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(body)
}

/// The error code of a failed request.
fn error_code(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return super::TIMEOUT.into();
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return tls_code(tls);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::TimedOut => return super::io_code(io),
                _ => {}
            }
            // io::Error's source() skips the error it wraps (hyper-rustls
            // wraps rustls' error in two of them): go inside instead.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = c.source();
    }
    if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() || e.is_request() {
        // The connection ended before a whole answer: the server died or
        // hung up mid-request.
        "closed".into()
    } else {
        "http".into()
    }
}

fn tls_code(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "tls-expired".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => "tls-unknown-issuer".into(),
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "tls-wrong-name".into(),
        _ => "tls".into(),
    }
}

/// The `notAfter` of a DER certificate, in Unix seconds.
///
/// Walks just far enough into the structure (`Certificate` →
/// `tbsCertificate` → version, serial, signature, issuer, `validity`) to
/// read one time; a parser for all of X.509 would be most of a crate for
/// one field. Malformed input gives `None`.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    for _ in 0..3 {
        let (_, _, after) = tlv(rest)?; // serial, signature, issuer
        rest = after;
    }
    let (tag, validity, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, time, _) = tlv(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950–2049.
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            format!("{}{}", if yy < 50 { 20 } else { 19 }, text)
        }
        0x18 => text.to_owned(),
        _ => return None,
    };
    let t =
        chrono::NaiveDateTime::parse_from_str(full.trim_end_matches('Z'), "%Y%m%d%H%M%S").ok()?;
    Some(t.and_utc().timestamp())
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &c| acc << 8 | usize::from(c));
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, b.get(head..end)?, b.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_certificates_give_no_expiry() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        assert_eq!(
            tlv(&[0x02, 0x01, 0x05, 0x09]),
            Some((0x02, &[5u8][..], &[9u8][..]))
        );
    }
}
