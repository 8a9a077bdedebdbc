//! An attacker's server on loopback: answers every HTTP request `401` with a Basic challenge
//! (which is what makes git clients hand over credentials) and records every request, so a test
//! can assert that no `Authorization` header, token or secret ever arrived.
//!
//! Deliberately not the emulator: it is a second, unrelated host (another port), the kind of
//! place a hostile API answer, a redirect or a rewritten URL would send the client.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Trap {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    /// Listens on `127.0.0.1:0` on a thread of its own (the product runs as a child process
    /// while the test blocks on it); the thread ends with the test binary.
    pub fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind trap");
        let base = format!("http://{}", listener.local_addr().expect("trap addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::Builder::new()
            .name("trap".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut head = String::new();
                    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                let end = line == "\r\n" || line == "\n";
                                head.push_str(&line);
                                if end {
                                    break;
                                }
                            }
                        }
                    }
                    // The body too (an STS request carries its secrets there).
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; len.min(1 << 20)];
                    let _ = std::io::Read::read_exact(&mut reader, &mut body);
                    head.push_str(&String::from_utf8_lossy(&body));
                    seen.lock().unwrap().push(head);
                    let _ = stream.write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"trap\"\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            })
            .expect("spawn trap");
        Trap { base, requests }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    /// Every request received so far (request line, headers and body).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Request heads that carried credentials of any kind.
    pub fn authorized(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|h| h.to_ascii_lowercase().contains("\nauthorization:"))
            .collect()
    }
}
