//! `redis`: `PING`, then `INFO` for a few figures.
//!
//! A minimal RESP exchange rather than the `redis` crate: a probe sends
//! three fixed commands on a fresh connection and reads three replies, so a
//! client with pooling, pipelining and a type system for every reply would
//! be most of the agent's code size for a dozen lines of protocol.
//!
//! Figures: `connected_clients`, `used_memory` (bytes) and `ops_per_sec`
//! (`instantaneous_ops_per_sec`).

use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::Report;

/// Longest reply read: `INFO` is a few kilobytes; anything far larger is
/// not a Redis answering a probe.
const MAX_REPLY: usize = 1 << 20;

/// One reply, as far as a probe cares.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `-ERR …`: the first word is the code (`NOAUTH`, `LOADING`).
    Error(String),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// Anything else (integers, arrays, nil), not expected here.
    Other,
}

/// PINGs `target`, authenticating with the password in `password_env` if set.
pub async fn run(target: &str, password_env: Option<&str>) -> Report {
    let started = Instant::now();
    match exchange(target, password_env, started).await {
        Ok((ping_done, figures)) => Report {
            operation: "ping".into(),
            result: Ok(()),
            latency: ping_done,
            figures,
        },
        Err(code) => Report::failed("ping", code, started.elapsed()),
    }
}

async fn exchange(
    target: &str,
    password_env: Option<&str>,
    started: Instant,
) -> Result<(std::time::Duration, Vec<(&'static str, f64)>), String> {
    let stream = super::connect(target).await?;
    let mut conn = BufReader::new(stream);
    if let Some(var) = password_env {
        let password = std::env::var(var).map_err(|_| "password-env-unset".to_owned())?;
        send(&mut conn, &["AUTH", &password]).await?;
        expect_ok(read(&mut conn).await?)?;
    }
    send(&mut conn, &["PING"]).await?;
    match read(&mut conn).await? {
        Reply::Simple(s) if s == "PONG" => {}
        other => return Err(unexpected(other)),
    }
    let ping_done = started.elapsed();
    send(&mut conn, &["INFO"]).await?;
    let info = match read(&mut conn).await? {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        other => return Err(unexpected(other)),
    };
    // QUIT is a courtesy; the reply does not matter.
    let _ = send(&mut conn, &["QUIT"]).await;
    Ok((ping_done, figures(&info)))
}

fn expect_ok(reply: Reply) -> Result<(), String> {
    match reply {
        Reply::Simple(_) => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> String {
    match reply {
        Reply::Error(e) => {
            let word = e.split_whitespace().next().unwrap_or("ERR");
            match word {
                "NOAUTH" | "WRONGPASS" | "NOPERM" => "auth".into(),
                "LOADING" => "loading".into(),
                _ => format!("redis-{}", word.to_ascii_lowercase()),
            }
        }
        _ => "protocol".into(),
    }
}

async fn send<S: AsyncWriteExt + Unpin>(conn: &mut S, args: &[&str]) -> Result<(), String> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(out.as_bytes())
        .await
        .map_err(|e| super::io_code(&e))
}

async fn read<S: AsyncBufReadExt + AsyncReadExt + Unpin>(conn: &mut S) -> Result<Reply, String> {
    let mut line = Vec::new();
    let n = (&mut *conn)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| super::io_code(&e))?;
    if n == 0 {
        return Err("closed".into());
    }
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end_matches(['\r', '\n']);
    let (kind, rest) = text.split_at(text.len().min(1));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| "protocol".to_owned())?;
            if len < 0 {
                return Ok(Reply::Other);
            }
            let len = usize::try_from(len).map_err(|_| "protocol".to_owned())?;
            if len > MAX_REPLY {
                return Err("protocol".into());
            }
            let mut body = vec![0; len + 2];
            conn.read_exact(&mut body)
                .await
                .map_err(|e| super::io_code(&e))?;
            body.truncate(len);
            Reply::Bulk(body)
        }
        _ => Reply::Other,
    })
}

/// The figures of an `INFO` reply.
fn figures(info: &str) -> Vec<(&'static str, f64)> {
    const WANTED: [(&str, &str); 3] = [
        ("connected_clients", "connected_clients"),
        ("used_memory", "used_memory"),
        ("instantaneous_ops_per_sec", "ops_per_sec"),
    ];
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        if let Some((_, figure)) = WANTED.iter().find(|(k, _)| *k == key)
            && let Ok(v) = value.parse::<f64>()
        {
            out.push((*figure, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_figures_are_read_and_the_rest_ignored() {
        let info = "# Clients\r\nconnected_clients:7\r\nblocked_clients:0\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n# Stats\r\ninstantaneous_ops_per_sec:42\r\n";
        assert_eq!(
            figures(info),
            vec![
                ("connected_clients", 7.0),
                ("used_memory", 1_048_576.0),
                ("ops_per_sec", 42.0)
            ]
        );
    }

    #[tokio::test]
    async fn replies_parse_and_errors_become_codes() {
        let mut input: &[u8] =
            b"+PONG\r\n-NOAUTH Authentication required.\r\n$5\r\nhello\r\n$-1\r\n";
        let mut r = BufReader::new(&mut input);
        assert_eq!(read(&mut r).await.unwrap(), Reply::Simple("PONG".into()));
        let e = read(&mut r).await.unwrap();
        assert_eq!(unexpected(e), "auth");
        assert_eq!(read(&mut r).await.unwrap(), Reply::Bulk(b"hello".to_vec()));
        assert_eq!(read(&mut r).await.unwrap(), Reply::Other);
        assert_eq!(read(&mut r).await.unwrap_err(), "closed");
    }
}
