//! The one way a host emulator is served: an axum app on `127.0.0.1` and a free port, on its
//! own thread and runtime, stopped when dropped.
//!
//! Its own runtime because tests call emulators with blocking calls too (and some run on a
//! current-thread runtime): a server living on the test's runtime would stall with it. The port
//! is bound on the caller's thread first, so the base URL is known before the app (which
//! usually embeds it) is built.

use std::future::IntoFuture;
use std::time::Duration;

/// A bound port the app is not yet served on.
pub struct Bound {
    listener: std::net::TcpListener,
    port: u16,
}

impl Bound {
    pub fn new() -> Bound {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        Bound { listener, port }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `app` on a thread named `name` until the returned [`Server`] is dropped.
    pub fn serve(self, name: &str, app: axum::Router) -> Server {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = self.listener;
        let thread_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    // Not a graceful shutdown: a test that is over should not wait for a
                    // half-streamed clone to finish.
                    tokio::select! {
                        res = axum::serve(listener, app).into_future() => res.expect("emulator server"),
                        _ = rx => {}
                    }
                });
                // Dropping the runtime drops every connection task; their `kill_on_drop`
                // children (`git http-backend`) go with them.
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("spawn emulator thread");
        Server {
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

/// A served app; dropping it stops the server and waits for its thread.
pub struct Server {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
