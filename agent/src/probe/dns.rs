//! `dns`: resolve a name, through the system resolver or by asking one
//! server over UDP. The gauge `answers` is how many addresses came back.
//!
//! Asking a given server is one A query and its answer's header, which a
//! few dozen lines do: a resolver crate would add its caches, retries and
//! configuration parsing to the agent for a question a probe asks once.
//! Codes: `nxdomain`, `servfail`, `refused`, `no-answer`, `dns-rcode-N`.

use std::net::SocketAddr;
use std::time::Instant;

use super::Report;

/// Resolves `name`, with `server` if given.
pub async fn run(name: &str, server: Option<SocketAddr>) -> Report {
    let started = Instant::now();
    let result = match server {
        None => system(name).await,
        Some(server) => ask(name, server, rand::random()).await,
    };
    match result {
        Ok(answers) => Report {
            operation: "resolve".into(),
            result: Ok(()),
            latency: started.elapsed(),
            figures: vec![("answers", answers as f64)],
        },
        Err(code) => Report::failed("resolve", code, started.elapsed()),
    }
}

async fn system(name: &str) -> Result<usize, String> {
    match tokio::net::lookup_host((name, 0)).await {
        Ok(addrs) => match addrs.count() {
            0 => Err("no-answer".into()),
            n => Ok(n),
        },
        // getaddrinfo's reasons do not survive as io::ErrorKind.
        Err(_) => Err("nxdomain".into()),
    }
}

/// One A query to `server`; the number of answers.
async fn ask(name: &str, server: SocketAddr, id: u16) -> Result<usize, String> {
    let query = encode_query(name, id).ok_or("bad-name")?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "io")?
    } else {
        "[::]:0".parse().map_err(|_| "io")?
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| super::io_code(&e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| super::io_code(&e))?;
    socket.send(&query).await.map_err(|e| super::io_code(&e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| super::io_code(&e))?;
        // Not our answer (a late reply to an earlier query): keep waiting;
        // the probe's timeout bounds this.
        if n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id || buf[2] & 0x80 == 0 {
            continue;
        }
        return answer(&buf[..n]);
    }
}

fn encode_query(name: &str, id: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    (q.len() <= 512).then_some(q)
}

fn answer(reply: &[u8]) -> Result<usize, String> {
    let rcode = reply[3] & 0x0f;
    let answers = usize::from(u16::from_be_bytes([reply[6], reply[7]]));
    match rcode {
        0 if answers > 0 => Ok(answers),
        0 => Err("no-answer".into()),
        2 => Err("servfail".into()),
        3 => Err("nxdomain".into()),
        5 => Err("refused".into()),
        n => Err(format!("dns-rcode-{n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_and_answers_decode() {
        let q = encode_query("db1.example.", 0x1234).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[12..], b"\x03db1\x07example\x00\x00\x01\x00\x01");
        assert!(encode_query("a..b", 1).is_none());
        let mut reply = vec![0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(answer(&reply).unwrap_err(), "nxdomain");
        reply[3] = 0x80;
        reply[7] = 2;
        assert_eq!(answer(&reply), Ok(2));
    }

    #[tokio::test]
    async fn a_given_server_is_asked_over_udp() {
        // A one-shot server: answers the first query with two A records'
        // worth of header, the second with NXDOMAIN.
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for rcode in [0u8, 3] {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[3] = 0x80 | rcode;
                reply[7] = if rcode == 0 { 2 } else { 0 };
                server.send_to(&reply, from).await.unwrap();
            }
        });
        let up = run("db1.game.internal", Some(addr)).await;
        assert_eq!(up.result, Ok(()));
        assert_eq!(up.figures, vec![("answers", 2.0)]);
        let down = run("gone.game.internal", Some(addr)).await;
        assert_eq!(down.result, Err("nxdomain".into()));
        let local = run("localhost", None).await;
        assert_eq!(local.result, Ok(()), "the system resolver knows localhost");
    }
}
