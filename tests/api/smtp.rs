//! A real SMTP server over TCP in the test process (mailin-embedded on a thread): it collects
//! what it receives, so tests see what Portcullis really sent. Also a small MIME reader for the
//! received messages.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One message as the server received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The envelope sender and recipients.
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
}

#[derive(Clone, Default)]
struct Collect {
    current: Received,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Handler for Collect {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Received {
            from: from.to_owned(),
            to: to.to_vec(),
            data: String::new(),
        };
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = std::mem::take(&mut self.current);
        self.received.lock().unwrap().push(message);
        response::OK
    }
}

/// A running SMTP server (it runs until the test process ends).
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A port nothing listens on (bound, then closed): an SMTP server that is down.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts on `port` of 127.0.0.1 (0: any free port).
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Collect::default();
        let received = handler.received.clone();
        let mut server = Server::new(handler);
        server
            .with_name("smtp.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { port, received }
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to 5 s for `n` messages (the server stores a message after answering it).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > Duration::from_secs(5) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of the first header `name` of a message or part (unfolded).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push_str(line.trim_start());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// The parts of a multipart message: (content type, decoded body).
pub fn parts(raw: &str) -> Vec<(String, String)> {
    let content_type = header(raw, "Content-Type").unwrap_or_default();
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let delimiter = format!("--{boundary}");
    raw.split(delimiter.as_str())
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|part| {
            let part = part.trim_start_matches("\r\n");
            let (_, body) = part.split_once("\r\n\r\n").unwrap();
            let body = body.trim_end_matches("\r\n");
            let encoding = header(part, "Content-Transfer-Encoding").unwrap_or_default();
            let decoded = match encoding.to_ascii_lowercase().as_str() {
                "quoted-printable" => String::from_utf8(
                    quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap(),
                )
                .unwrap(),
                "base64" => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body.replace("\r\n", ""))
                        .unwrap(),
                )
                .unwrap(),
                _ => body.to_owned(),
            };
            (header(part, "Content-Type").unwrap_or_default(), decoded)
        })
        .collect()
}
