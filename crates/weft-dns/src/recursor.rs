//! Names outside our zones go to the configured `recursors`, in order: over UDP, and over TCP when the UDP answer
//! is truncated; each try bounded by `recursor_timeout`. The client's query is passed on as it came (its ID too),
//! and the first usable answer goes back unchanged.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest answer read from a recursor.
const MAX_ANSWER: usize = 65_535;

#[derive(Debug, thiserror::Error)]
pub enum RecursorError {
    #[error("no recursor is configured")]
    NoneConfigured,
    #[error("no recursor answered: {0}")]
    NoAnswer(String),
}

/// Asks each recursor in turn; the first answer wins.
pub async fn forward(
    query: &[u8],
    recursors: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<u8>, RecursorError> {
    if recursors.is_empty() {
        return Err(RecursorError::NoneConfigured);
    }
    let mut last = String::new();
    for recursor in recursors {
        match ask(query, *recursor, timeout).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                tracing::debug!(%recursor, error = %e, "a recursor did not answer");
                last = format!("{recursor}: {e}");
            }
        }
    }
    Err(RecursorError::NoAnswer(last))
}

async fn ask(query: &[u8], recursor: SocketAddr, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let answer = tokio::time::timeout(timeout, ask_udp(query, recursor))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over UDP"))??;
    // TC: the whole answer needs TCP.
    let truncated = answer.get(2).is_some_and(|flags| flags & 0x02 != 0);
    if !truncated {
        return Ok(answer);
    }
    tokio::time::timeout(timeout, ask_tcp(query, recursor))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over TCP"))?
}

async fn ask_udp(query: &[u8], recursor: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(recursor).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the answer to this query (same ID) counts; anything else on the socket is ignored.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(query: &[u8], recursor: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(recursor).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(query).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}
