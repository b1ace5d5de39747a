//! A fault-injecting HTTP proxy on loopback, in front of the AWS emulator: at a set rate it
//! answers a call with throttling (503 RequestLimitExceeded) or an internal error (500), holds
//! it for seconds before forwarding, drops the connection before forwarding, or forwards and
//! then drops the connection so the answer is lost (each in turn). `set_down` refuses every call, as a dead
//! endpoint does; `hold` forwards the calls of one action and never answers them, so a process
//! can be killed right after its call reached the cloud. One request per connection; it runs on
//! a thread of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Counts {
    pub connections: AtomicU64,
    pub forwarded: AtomicU64,
    pub throttled: AtomicU64,
    pub internal: AtomicU64,
    pub slow: AtomicU64,
    pub dropped: AtomicU64,
    pub lost_answers: AtomicU64,
    pub refused: AtomicU64,
    /// Calls forwarded whose answers are held back.
    pub held: AtomicU64,
}

impl Counts {
    pub fn faults(&self) -> u64 {
        [&self.throttled, &self.internal, &self.slow, &self.dropped, &self.lost_answers]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }
}

pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<Counts>,
    down: Arc<AtomicBool>,
    hold: Arc<std::sync::Mutex<Option<String>>>,
    refuse: Refusal,
}

/// An action answered with an AWS error: (`Action=…&`, HTTP status, code, message).
type Refusal = Arc<std::sync::Mutex<Option<(String, String, String, String)>>>;

impl FaultProxy {
    /// Proxies to `upstream` (`http://host:port`), failing `rate` of the calls.
    pub fn start(upstream: &str, rate: f64, seed: u64) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std_listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let down = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(std::sync::Mutex::new(None));
        let refuse: Refusal = Arc::new(std::sync::Mutex::new(None));
        let (c, d, h, r) = (counts.clone(), down.clone(), hold.clone(), refuse.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let mut state = seed | 1;
                let mut injected = 0u8;
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    // xorshift: a fixed sequence of draws for a seed
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let draw = (state >> 11) as f64 / (1u64 << 53) as f64;
                    // Faulted calls take each kind of fault in turn.
                    let fault = (draw < rate).then(|| {
                        injected = injected.wrapping_add(1);
                        injected % 5
                    });
                    let held = h.lock().unwrap().clone();
                    let refused = r.lock().unwrap().clone();
                    tokio::spawn(serve(client, upstream.clone(), fault, c.clone(), d.clone(), held, refused));
                }
            });
        });
        Self { url, counts, down, hold, refuse }
    }

    /// Answers every call of `action` as EC2 answers an error: `status` (`403 Forbidden`),
    /// `code` and `message`; `None` forwards them again.
    pub fn refuse(&self, refusal: Option<(&str, &str, &str, &str)>) {
        *self.refuse.lock().unwrap() =
            refusal.map(|(a, s, c, m)| (format!("Action={a}&"), s.to_owned(), c.to_owned(), m.to_owned()));
    }

    /// Forwards calls of `action` (`RunInstances`, …) and holds their answers back; `None`
    /// answers every call again.
    pub fn hold(&self, action: Option<&str>) {
        *self.hold.lock().unwrap() = action.map(|a| format!("Action={a}&"));
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// One request: its head and body, with `Connection: close` in place of the client's.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&buf[head_end..head_end + length]);
    Some(out)
}

fn error_answer(status: &str, code: &str) -> Vec<u8> {
    aws_error("", status, code, "injected by the fault proxy")
}

/// An error answer in the form of the service the action belongs to: EC2's `<Response>`, or
/// the `<ErrorResponse>` of the query services (Auto Scaling, STS).
fn aws_error(action: &str, status: &str, code: &str, message: &str) -> Vec<u8> {
    let query_service = ["AutoScaling", "Scaling", "Lifecycle", "GetCallerIdentity"].iter().any(|s| action.contains(s));
    let body = if query_service {
        format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        )
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn forward(upstream: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await.ok()?;
    up.write_all(request).await.ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

async fn serve(
    mut client: TcpStream,
    upstream: String,
    fault: Option<u8>,
    c: Arc<Counts>,
    down: Arc<AtomicBool>,
    hold: Option<String>,
    refused: Option<(String, String, String, String)>,
) {
    c.connections.fetch_add(1, Ordering::SeqCst);
    if down.load(Ordering::SeqCst) {
        c.refused.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Some(request) = read_request(&mut client).await else { return };
    if let Some((action, status, code, message)) = refused
        && String::from_utf8_lossy(&request).contains(action.as_str())
    {
        let _ = client.write_all(&aws_error(&action, &status, &code, &message)).await;
        let _ = client.shutdown().await;
        return;
    }
    if let Some(action) = hold
        && String::from_utf8_lossy(&request).contains(action.as_str())
    {
        let _ = forward(&upstream, &request).await;
        c.held.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let answer = match fault {
        Some(0) => {
            c.throttled.fetch_add(1, Ordering::SeqCst);
            error_answer("503 Service Unavailable", "RequestLimitExceeded")
        }
        Some(1) => {
            c.internal.fetch_add(1, Ordering::SeqCst);
            error_answer("500 Internal Server Error", "InternalError")
        }
        Some(2) => {
            c.slow.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(2)).await;
            match forward(&upstream, &request).await {
                Some(a) => a,
                None => return,
            }
        }
        Some(3) => {
            c.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        Some(_) => {
            // The call reaches the cloud; its answer never comes back.
            c.lost_answers.fetch_add(1, Ordering::SeqCst);
            let _ = forward(&upstream, &request).await;
            return;
        }
        None => {
            c.forwarded.fetch_add(1, Ordering::SeqCst);
            match forward(&upstream, &request).await {
                Some(a) => a,
                None => return,
            }
        }
    };
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
}
