//! Answers that arrive damaged: the request is served normally and its body is then replaced,
//! truncated, cut off mid-stream or corrupted on the way out, as a broken proxy, a crashing
//! server or a bad disk behind the git host would. A middleware around the whole router, so
//! the handlers stay as they are; faults that replace the answer altogether are
//! [`super::Fault`]s.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use super::Route;

/// One damaged answer. Applies to the repository list (`Route::List`) or to the pack-carrying
/// `POST git-upload-pack` of a repository (`Route::repo`, then `Route::Git`).
#[derive(Debug, Clone)]
pub enum Damage {
    /// Status and headers as served, the body replaced by this text (malformed JSON).
    Replace(String),
    /// The first half of the body, delivered as if it were all of it (a correct
    /// `Content-Length`): JSON that simply ends.
    Truncate,
    /// The first `after` bytes, then the connection breaks off (a reset mid-transfer).
    Cut { after: usize },
    /// One byte of the pack data flipped, pkt-line framing intact: a corrupt pack.
    CorruptPack,
}

#[derive(Default)]
pub(super) struct Queue {
    queued: Mutex<HashMap<Route, VecDeque<Damage>>>,
    served: AtomicU64,
}

impl Queue {
    pub(super) fn push(&self, route: Route, damage: Damage) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        q.entry(route).or_default().push_back(damage);
    }

    pub(super) fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    fn pop(&self, routes: &[Route]) -> Option<Damage> {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .find_map(|r| q.get_mut(r).and_then(VecDeque::pop_front))
    }
}

/// The routes a request is damaged on, most specific first.
fn routes_of(method: &Method, path: &str) -> Vec<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["2.0", "repositories", _]) => vec![Route::List],
        (&Method::POST, [workspace, repo, "git-upload-pack"]) => {
            let slug = repo.strip_suffix(".git").unwrap_or(repo);
            vec![Route::repo(workspace, slug), Route::Git]
        }
        _ => Vec::new(),
    }
}

pub(super) async fn layer(
    State(queue): State<std::sync::Arc<Queue>>,
    req: Request,
    next: Next,
) -> Response {
    let routes = routes_of(req.method(), req.uri().path());
    let damage = if routes.is_empty() {
        None
    } else {
        queue.pop(&routes)
    };
    let resp = next.run(req).await;
    let Some(damage) = damage else {
        return resp;
    };
    queue.served.fetch_add(1, Ordering::SeqCst);
    let (mut parts, body) = resp.into_parts();
    let body = match damage {
        Damage::Replace(text) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(text)
        }
        Damage::Truncate => {
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(bytes.slice(..bytes.len() / 2))
        }
        Damage::Cut { after } => {
            let mut left = after;
            let stream = body.into_data_stream().flat_map(move |chunk| {
                let items: Vec<Result<bytes::Bytes, std::io::Error>> = match chunk {
                    Err(e) => vec![Err(std::io::Error::other(e))],
                    Ok(_) if left == 0 => vec![Err(cut())],
                    Ok(c) if c.len() <= left => {
                        left -= c.len();
                        vec![Ok(c)]
                    }
                    Ok(c) => {
                        let head = c.slice(..left);
                        left = 0;
                        vec![Ok(head), Err(cut())]
                    }
                };
                futures::stream::iter(items)
            });
            // Ends the stream at the first error: hyper then drops the connection.
            let stream = stream.scan(false, |failed, item| {
                let out = (!*failed).then_some(item);
                if matches!(out, Some(Err(_))) {
                    *failed = true;
                }
                std::future::ready(Some(out))
            });
            Body::from_stream(stream.filter_map(std::future::ready))
        }
        Damage::CorruptPack => {
            let mut bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default()
                .to_vec();
            corrupt_pack(&mut bytes);
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(bytes)
        }
    };
    Response::from_parts(parts, body)
}

fn cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected: connection cut mid-body",
    )
}

/// How far into the pack (past its 12-byte header) the flipped byte is: inside the first
/// object's data, so the pack's own checksum, if nothing earlier, tells.
const FLIP_AT: usize = 16;

/// Flips one byte of the pack carried in an upload-pack answer: in side-band channel 1
/// (what libgit2 asks for), keeping every pkt-line length right; in a raw pack after `NAK`
/// otherwise. Panics if the answer holds no pack, so a test cannot pass without the fault.
fn corrupt_pack(answer: &mut [u8]) {
    let mut pos = 0;
    let mut pack_seen = 0usize;
    while pos + 4 <= answer.len() {
        let Some(len) = std::str::from_utf8(&answer[pos..pos + 4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            break;
        };
        if len < 4 {
            pos += 4;
            continue;
        }
        let payload = pos + 4..(pos + len).min(answer.len());
        if answer.get(payload.start) == Some(&1) {
            let data = payload.start + 1..payload.end;
            let target = 12 + FLIP_AT;
            if pack_seen + data.len() > target {
                answer[data.start + target - pack_seen] ^= 0xff;
                return;
            }
            pack_seen += data.len();
        }
        pos += len;
    }
    let raw = answer
        .windows(4)
        .position(|w| w == b"PACK")
        .expect("the upload-pack answer carries a pack");
    answer[raw + 12 + FLIP_AT] ^= 0xff;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_band_pack_gets_one_byte_flipped_with_framing_kept() {
        let pack: Vec<u8> = b"PACK\0\0\0\x02\0\0\0\x01"
            .iter()
            .copied()
            .chain(0u8..40)
            .collect();
        let pkt = |band: u8, data: &[u8]| {
            let mut p = format!("{:04x}", data.len() + 5).into_bytes();
            p.push(band);
            p.extend_from_slice(data);
            p
        };
        let mut answer = b"0008NAK\n".to_vec();
        answer.extend(pkt(2, b"Counting objects\n"));
        answer.extend(pkt(1, &pack[..20]));
        answer.extend(pkt(1, &pack[20..]));
        answer.extend(b"0000");
        let before = answer.clone();
        corrupt_pack(&mut answer);
        let changed: Vec<usize> = (0..answer.len())
            .filter(|&i| answer[i] != before[i])
            .collect();
        assert_eq!(changed.len(), 1);
        // The flipped byte is pack byte 28 (12 + FLIP_AT), the 9th of the second data packet.
        let second = 8 + (17 + 5) + (20 + 5);
        assert_eq!(changed[0], second + 5 + 8);
    }
}
