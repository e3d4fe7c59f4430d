//! `mysql`: connect, authenticate, `SELECT 1`, then `SHOW GLOBAL STATUS`
//! for a few figures. Works with MySQL and MariaDB.
//!
//! A minimal client of the client/server protocol rather than
//! `mysql_async`: a probe needs the handshake, one authentication method
//! and two text queries on a fresh connection, about two hundred lines,
//! where the crate brings a connection pool, binary protocol, prepared
//! statements, compression and their dependencies into an agent that must
//! stay small. Authentication is `mysql_native_password` (the default of
//! MariaDB and of accounts created for monitoring); a server that insists
//! on another method answers the probe with `auth-plugin`, which says so.
//!
//! Figures: `threads_connected`, `threads_running`, `slow_queries` (the
//! server's counter since start).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Report;

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const NATIVE: &str = "mysql_native_password";
/// Longest packet read; the probe's answers are tiny.
const MAX_PACKET: usize = 1 << 20;

/// Probes `target` as `user`, with the password in `password_env` if set.
pub async fn run(target: &str, user: &str, password_env: Option<&str>) -> Report {
    let started = Instant::now();
    match exchange(target, user, password_env, started).await {
        Ok((latency, figures)) => Report {
            operation: "select1".into(),
            result: Ok(()),
            latency,
            figures,
        },
        Err(code) => Report::failed("select1", code, started.elapsed()),
    }
}

async fn exchange(
    target: &str,
    user: &str,
    password_env: Option<&str>,
    started: Instant,
) -> Result<(Duration, Vec<(&'static str, f64)>), String> {
    let password = match password_env {
        Some(var) => std::env::var(var).map_err(|_| "password-env-unset".to_owned())?,
        None => String::new(),
    };
    let mut conn = Conn {
        stream: super::connect(target).await?,
        seq: 0,
    };
    let hello = conn.read().await?;
    let (scramble, plugin) = parse_handshake(&hello)?;
    let mut response = Vec::with_capacity(128);
    let caps = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_PLUGIN_AUTH;
    response.extend_from_slice(&caps.to_le_bytes());
    response.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
    response.push(45); // utf8mb4_general_ci
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    let auth = if plugin == NATIVE || plugin.is_empty() {
        native_password(&password, &scramble)
    } else {
        Vec::new()
    };
    response.push(auth.len() as u8);
    response.extend_from_slice(&auth);
    response.extend_from_slice(NATIVE.as_bytes());
    response.push(0);
    conn.write(&response).await?;
    let mut reply = conn.read().await?;
    if reply.first() == Some(&0xfe) {
        // Auth switch: the server wants another method, or the same with a
        // new scramble.
        let rest = &reply[1..];
        let nul = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        let plugin = String::from_utf8_lossy(&rest[..nul]).into_owned();
        if plugin != NATIVE {
            return Err("auth-plugin".into());
        }
        let data = rest.get(nul + 1..).unwrap_or_default();
        let scramble = &data[..data.len().min(20)];
        conn.write(&native_password(&password, scramble)).await?;
        reply = conn.read().await?;
    }
    check_ok(&reply)?;
    conn.seq = 0;
    let rows = conn.query("SELECT 1").await?;
    if rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        != Some("1")
    {
        return Err("protocol".into());
    }
    let latency = started.elapsed();
    conn.seq = 0;
    let status = conn
        .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Threads_running', 'Slow_queries')")
        .await
        .unwrap_or_default();
    let mut figures = Vec::new();
    for row in status {
        let (Some(Some(name)), Some(Some(value))) = (row.first(), row.get(1)) else {
            continue;
        };
        let figure = match name.to_ascii_lowercase().as_str() {
            "threads_connected" => "threads_connected",
            "threads_running" => "threads_running",
            "slow_queries" => "slow_queries",
            _ => continue,
        };
        if let Ok(v) = value.parse::<f64>() {
            figures.push((figure, v));
        }
    }
    figures.sort_by_key(|(f, _)| *f);
    conn.seq = 0;
    let _ = conn.write(&[0x01]).await; // COM_QUIT
    Ok((latency, figures))
}

struct Conn {
    stream: TcpStream,
    seq: u8,
}

impl Conn {
    async fn read(&mut self) -> Result<Vec<u8>, String> {
        let mut head = [0u8; 4];
        self.stream
            .read_exact(&mut head)
            .await
            .map_err(|e| super::io_code(&e))?;
        let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
        if len > MAX_PACKET {
            return Err("protocol".into());
        }
        self.seq = head[3].wrapping_add(1);
        let mut body = vec![0; len];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| super::io_code(&e))?;
        Ok(body)
    }

    async fn write(&mut self, payload: &[u8]) -> Result<(), String> {
        let len = payload.len() as u32;
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stream
            .write_all(&packet)
            .await
            .map_err(|e| super::io_code(&e))
    }

    /// A text query's rows, each a list of values (`None` for NULL).
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.write(&payload).await?;
        let first = self.read().await?;
        match first.first() {
            Some(0xff) => return Err(error_code(&first)),
            Some(0x00) => return Ok(Vec::new()),
            _ => {}
        }
        let (columns, _) = lenenc(&first).ok_or("protocol")?;
        for _ in 0..columns {
            self.read().await?;
        }
        let eof = self.read().await?;
        if !is_eof(&eof) {
            return Err("protocol".into());
        }
        let mut rows = Vec::new();
        loop {
            let packet = self.read().await?;
            if is_eof(&packet) {
                return Ok(rows);
            }
            if packet.first() == Some(&0xff) {
                return Err(error_code(&packet));
            }
            let mut row = Vec::new();
            let mut at = &packet[..];
            for _ in 0..columns {
                if at.first() == Some(&0xfb) {
                    row.push(None);
                    at = &at[1..];
                    continue;
                }
                let (len, used) = lenenc(at).ok_or("protocol")?;
                let end = used
                    .checked_add(usize::try_from(len).map_err(|_| "protocol")?)
                    .ok_or("protocol")?;
                let value = at.get(used..end).ok_or("protocol")?;
                row.push(Some(String::from_utf8_lossy(value).into_owned()));
                at = &at[end..];
            }
            rows.push(row);
            if rows.len() > 10_000 {
                return Err("protocol".into());
            }
        }
    }
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

/// A length-encoded integer and the bytes it took.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let bytes = b.get(1..1 + n)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &c| acc << 8 | u64::from(c)),
        )
    };
    match *b.first()? {
        c @ 0..=0xfa => Some((u64::from(c), 1)),
        0xfc => Some((le(2)?, 3)),
        0xfd => Some((le(3)?, 4)),
        0xfe => Some((le(8)?, 9)),
        _ => None,
    }
}

/// The scramble and the server's default authentication method.
fn parse_handshake(p: &[u8]) -> Result<(Vec<u8>, String), String> {
    match p.first() {
        Some(0x0a) => {}
        Some(0xff) => return Err(error_code(p)),
        _ => return Err("protocol".into()),
    }
    let version_end = p[1..].iter().position(|&c| c == 0).ok_or("protocol")? + 1;
    let mut at = version_end + 1 + 4; // NUL, connection id
    let part1 = p.get(at..at + 8).ok_or("protocol")?;
    let mut scramble = part1.to_vec();
    at += 8 + 1; // filler
    let caps_low = u32::from(u16::from_le_bytes([
        *p.get(at).ok_or("protocol")?,
        *p.get(at + 1).ok_or("protocol")?,
    ]));
    at += 2 + 1 + 2; // capabilities, charset, status
    let Some(rest) = p.get(at..) else {
        return Ok((scramble, String::new()));
    };
    if rest.len() < 2 + 1 + 10 {
        return Ok((scramble, String::new()));
    }
    let caps = caps_low | u32::from(u16::from_le_bytes([rest[0], rest[1]])) << 16;
    let auth_len = usize::from(rest[2]);
    let mut at = 2 + 1 + 10;
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = auth_len.saturating_sub(8).max(13);
        let part2 = rest.get(at..at + n).ok_or("protocol")?;
        // The second part ends with a NUL that is not part of the scramble.
        scramble.extend_from_slice(&part2[..n - 1]);
        at += n;
    }
    let plugin = if caps & CLIENT_PLUGIN_AUTH != 0 {
        let tail = rest.get(at..).unwrap_or_default();
        let nul = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(&tail[..nul]).into_owned()
    } else {
        String::new()
    };
    scramble.truncate(20);
    Ok((scramble, plugin))
}

/// `SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))`; empty for
/// no password.
fn native_password(password: &str, scramble: &[u8]) -> Vec<u8> {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = digest(&SHA1, password.as_bytes());
    let stage2 = digest(&SHA1, stage1.as_ref());
    let mut ctx = ring::digest::Context::new(&SHA1);
    ctx.update(scramble);
    ctx.update(stage2.as_ref());
    let mix = ctx.finish();
    stage1
        .as_ref()
        .iter()
        .zip(mix.as_ref())
        .map(|(a, b)| a ^ b)
        .collect()
}

fn check_ok(p: &[u8]) -> Result<(), String> {
    match p.first() {
        Some(0x00) => Ok(()),
        Some(0xff) => Err(error_code(p)),
        _ => Err("protocol".into()),
    }
}

/// An ERR packet's code: access denied is `auth`, too many connections
/// `too-many-connections`, anything else `mysql-NNNN`.
fn error_code(p: &[u8]) -> String {
    let code = p.get(1..3).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    match code {
        1044 | 1045 | 1698 => "auth".into(),
        1040 => "too-many-connections".into(),
        1129 => "host-blocked".into(),
        _ => format!("mysql-{code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoded_integers() {
        assert_eq!(lenenc(&[0x05]), Some((5, 1)));
        assert_eq!(lenenc(&[0xfc, 0x01, 0x02]), Some((0x0201, 3)));
        assert_eq!(lenenc(&[0xfd, 1, 0, 0]), Some((1, 4)));
        assert_eq!(lenenc(&[0xfc, 1]), None);
        assert_eq!(lenenc(&[0xff]), None);
        assert_eq!(lenenc(&[]), None);
    }

    #[test]
    fn errors_become_codes_and_garbage_is_protocol() {
        let mut denied = vec![0xff];
        denied.extend_from_slice(&1045u16.to_le_bytes());
        denied.extend_from_slice(b"#28000Access denied");
        assert_eq!(error_code(&denied), "auth");
        assert_eq!(parse_handshake(&denied).unwrap_err(), "auth");
        assert_eq!(parse_handshake(b"\x0a5.5").unwrap_err(), "protocol");
        assert_eq!(parse_handshake(b"").unwrap_err(), "protocol");
        assert_eq!(check_ok(b"\x01").unwrap_err(), "protocol");
    }

    #[test]
    fn native_password_scramble_is_twenty_bytes_and_empty_without_password() {
        assert!(native_password("", b"01234567890123456789").is_empty());
        let a = native_password("secret", b"01234567890123456789");
        assert_eq!(a.len(), 20);
        assert_ne!(a, native_password("secret", b"98765432109876543210"));
    }
}
