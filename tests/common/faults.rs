//! A fault-injecting HTTP proxy in front of the real docker-registry. It
//! forwards every request unchanged, except those whose path contains the
//! current needle, which get the current fault instead: a refused or reset
//! connection, an error status, throttling, a slow or truncated answer,
//! garbage, content that does not hash to its digest, an endless body, a
//! manifest with a huge number of layers. The registry stays real; only the
//! wire between sigil and it misbehaves.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward unchanged.
    None,
    /// Send the headers and half the body, then reset the connection.
    ResetMidBody,
    /// Answer with this status and a registry error body.
    Status(u16),
    /// Answer 429 with `Retry-After: <seconds>`.
    Throttle(u64),
    /// Wait this long, then forward.
    Slow(Duration),
    /// The real answer cut in half (a consistent Content-Length).
    Truncated,
    /// 200 with bytes that are not JSON.
    Garbage,
    /// The real body with one byte added: it no longer hashes to its digest.
    WrongDigest,
    /// 200 with a valid-looking manifest that never ends (no Content-Length).
    Endless,
    /// A manifest with this many layers (with its Content-Length).
    ManyLayers(usize),
}

/// A running proxy.
pub struct FaultProxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    state: Arc<Mutex<(String, Fault, Option<usize>)>>,
    /// Requests that got the fault.
    pub faulted: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests forwarded unchanged.
    pub forwarded: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new((String::new(), Fault::None, None)));
        let faulted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let (s, f, w) = (state.clone(), faulted.clone(), forwarded.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (s, f, w, u) = (s.clone(), f.clone(), w.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = handle(conn, &u, &s, &f, &w).await;
                });
            }
        });
        FaultProxy {
            addr,
            state,
            faulted,
            forwarded,
        }
    }

    /// Requests whose path contains `needle` get `fault` from now on.
    pub fn set(&self, needle: &str, fault: Fault) {
        *self.state.lock().unwrap() = (needle.to_string(), fault, None);
    }

    /// The next `times` requests whose path contains `needle` get `fault`;
    /// later ones are forwarded.
    pub fn set_times(&self, needle: &str, fault: Fault, times: usize) {
        *self.state.lock().unwrap() = (needle.to_string(), fault, Some(times));
    }

    /// Everything is forwarded unchanged from now on.
    pub fn clear(&self) {
        self.set("", Fault::None);
    }
}

/// Reads one request head (sigil's reads have no body); `None` at EOF.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            return Ok(None);
        }
    }
    Ok(Some(head))
}

/// The head with `Connection: close`, so the upstream answer ends at EOF.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n") {
        if line.is_empty() || line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// The whole upstream answer: (head, body).
async fn fetch(upstream: &str, head: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&closing(head)).await?;
    let mut all = Vec::new();
    up.read_to_end(&mut all).await?;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(all.len());
    let body = all.split_off(split);
    Ok((all, body))
}

/// A head like `old` but with `Content-Length: len` (and no chunking).
fn with_length(old: &[u8], len: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(old);
    let mut out = String::new();
    for line in text.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if line.is_empty()
            || lower.starts_with("content-length:")
            || lower.starts_with("transfer-encoding:")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    out.into_bytes()
}

fn answer(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn layer(i: usize) -> String {
    format!(
        "{{\"mediaType\":\"application/vnd.dev.cosign.simplesigning.v1+json\",\"digest\":\"sha256:{:064x}\",\"size\":1}}",
        i
    )
}

async fn handle(
    mut conn: TcpStream,
    upstream: &str,
    state: &Mutex<(String, Fault, Option<usize>)>,
    faulted: &std::sync::atomic::AtomicUsize,
    forwarded: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let Some(head) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let fault = {
        let mut st = state.lock().unwrap();
        let (needle, fault, remaining) = &mut *st;
        let applies = *fault != Fault::None
            && !needle.is_empty()
            && path.contains(needle.as_str())
            && remaining.is_none_or(|n| n > 0);
        if applies {
            if let Some(n) = remaining {
                *n -= 1;
            }
            fault.clone()
        } else {
            Fault::None
        }
    };
    if fault == Fault::None {
        forwarded.fetch_add(1, Ordering::Relaxed);
        let (h, b) = fetch(upstream, &head).await?;
        conn.write_all(&h).await?;
        conn.write_all(&b).await?;
        return conn.shutdown().await;
    }
    faulted.fetch_add(1, Ordering::Relaxed);
    let manifest_head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n";
    let config = "{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2}";
    match fault {
        Fault::None => unreachable!(),
        Fault::ResetMidBody => {
            let (h, b) = fetch(upstream, &head).await?;
            conn.write_all(&h).await?;
            conn.write_all(&b[..b.len() / 2]).await?;
            conn.flush().await?;
            conn.set_zero_linger()?;
            drop(conn);
        }
        Fault::Status(code) => {
            let body =
                br#"{"errors":[{"code":"UNAVAILABLE","message":"registry in maintenance"}]}"#;
            conn.write_all(&answer(&format!("{code} Failure"), "", body))
                .await?;
        }
        Fault::Throttle(secs) => {
            let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            conn.write_all(&answer(
                "429 Too Many Requests",
                &format!("Retry-After: {secs}\r\n"),
                body,
            ))
            .await?;
        }
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            let (h, b) = fetch(upstream, &head).await?;
            conn.write_all(&h).await?;
            conn.write_all(&b).await?;
        }
        Fault::Truncated => {
            let (h, b) = fetch(upstream, &head).await?;
            let half = &b[..b.len() / 2];
            conn.write_all(&with_length(&h, half.len())).await?;
            conn.write_all(half).await?;
        }
        Fault::Garbage => {
            conn.write_all(&answer(
                "200 OK",
                "",
                b"\x00\xff<html>not json {{{ \xfe\xfd",
            ))
            .await?;
        }
        Fault::WrongDigest => {
            let (h, mut b) = fetch(upstream, &head).await?;
            b.push(b' ');
            conn.write_all(&with_length(&h, b.len())).await?;
            conn.write_all(&b).await?;
        }
        Fault::Endless => {
            conn.write_all(format!("{manifest_head}\r\n").as_bytes())
                .await?;
            conn.write_all(
                format!("{{\"schemaVersion\":2,\"config\":{config},\"layers\":[").as_bytes(),
            )
            .await?;
            // Bounded in time and bytes: ends when the reader hangs up.
            let started = Instant::now();
            let chunk: String = (0..200).map(|i| layer(i) + ",").collect();
            let mut sent = 0usize;
            while started.elapsed() < Duration::from_secs(60) && sent < (8 << 30) {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
        }
        Fault::ManyLayers(n) => {
            let layers: Vec<String> = (0..n).map(layer).collect();
            let body = format!(
                "{{\"schemaVersion\":2,\"config\":{config},\"layers\":[{}]}}",
                layers.join(",")
            );
            conn.write_all(
                format!("{manifest_head}Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .await?;
            let _ = conn.write_all(body.as_bytes()).await;
        }
    }
    Ok(())
}
