//! The render thread's side: copying the hooks' state into `indicatif` bars, the per-repository
//! lines and the overall throughput (see [`super`]'s module docs for why drawing lives apart
//! from the hooks).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{LISTING, OVERALL, RATE_WINDOW, RepoState, State, lock};
use crate::backup::Phase;

/// Owned by the render thread (and by `finish` for the last pass): the bars themselves.
pub(super) struct Renderer {
    multi: MultiProgress,
    pub(super) overall: ProgressBar,
    pub(super) bars: HashMap<String, ProgressBar>,
    rate: Rate,
    /// The overall line shows the bar (the total is known).
    counting: bool,
    pub(super) closed: bool,
    #[cfg(test)]
    pub(super) printed: Vec<String>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a constant template parses")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .progress_chars("=> ")
}

fn bytes(n: u64) -> String {
    ByteSize::b(n).display().iec().to_string()
}

impl Renderer {
    pub(super) fn new(multi: MultiProgress) -> Self {
        // No bar until the total is known: a 0/0 bar would be drawn full.
        let overall = multi.add(ProgressBar::new(0).with_style(style(LISTING)));
        overall.set_message("listing repositories…");
        Renderer {
            multi,
            overall,
            bars: HashMap::new(),
            rate: Rate::new(RATE_WINDOW),
            counting: false,
            closed: false,
            #[cfg(test)]
            printed: Vec::new(),
        }
    }

    /// Copies the state into the bars. The state lock is held only for the copy.
    pub(super) fn sync(&mut self, state: &Mutex<State>, now: Instant) {
        if self.closed {
            return;
        }
        let (counts, listed, in_flight, failures) = {
            let mut s = lock(state);
            (
                s.counts.clone(),
                s.listed,
                s.in_flight.clone(),
                std::mem::take(&mut s.failures),
            )
        };
        for line in failures {
            let _ = self.multi.println(&line);
            #[cfg(test)]
            self.printed.push(line);
        }
        self.bars.retain(|slug, bar| {
            let keep = in_flight.contains_key(slug);
            if !keep {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            keep
        });
        for (slug, repo) in &in_flight {
            let bar = self.bars.entry(slug.clone()).or_insert_with(|| {
                self.multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style("  {spinner:.cyan} {prefix:36!} {msg}"))
                        .with_prefix(repo.name.clone()),
                )
            });
            let msg = repo_message(repo);
            if bar.message() != msg {
                bar.set_message(msg);
            }
            bar.tick();
        }

        self.overall.set_length(counts.total);
        self.overall.set_position(counts.done());
        let rate = self.rate.observe(now, counts.bytes_uploaded);
        if listed {
            if !self.counting {
                self.overall.set_style(style(OVERALL));
                self.counting = true;
            }
            let mut msg = format!(
                "{} uploaded, {}/s",
                bytes(counts.bytes_uploaded),
                bytes(rate as u64)
            );
            if counts.unchanged > 0 {
                msg.push_str(&format!(", {} unchanged", counts.unchanged));
            }
            if counts.failed > 0 {
                msg.push_str(&format!(", {} failed", counts.failed));
            }
            self.overall.set_message(msg);
        }
        self.overall.tick();
    }

    pub(super) fn close(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        self.closed = true;
    }
}

fn repo_message(r: &RepoState) -> String {
    match r.phase {
        Phase::Compare => "compare refs".to_string(),
        Phase::Mirror if r.received == 0 => "mirror".to_string(),
        Phase::Mirror => format!("mirror  {} received", bytes(r.received)),
        Phase::Bundle => "bundle".to_string(),
        Phase::Upload => match (r.size, r.estimate) {
            (Some(size), _) if size > 0 => format!(
                "upload  {} / {} ({}%)",
                bytes(r.sent),
                bytes(size),
                (r.sent.min(size) * 100) / size
            ),
            (None, Some(est)) if est > 0 => format!("upload  {} / ~{}", bytes(r.sent), bytes(est)),
            _ => format!("upload  {} sent", bytes(r.sent)),
        },
    }
}

/// Bytes per second over a sliding window of (time, cumulative bytes) samples.
#[derive(Debug)]
struct Rate {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn new(window: Duration) -> Self {
        Rate {
            window,
            samples: VecDeque::new(),
        }
    }

    fn observe(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        // Keep one sample at or before the window's start, so the window is always covered.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (t0, b0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(b0) as f64 / dt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_averaged_over_the_window() {
        let t0 = Instant::now();
        let mut r = Rate::new(Duration::from_secs(5));
        assert_eq!(r.observe(t0, 0), 0.0);
        assert_eq!(r.observe(t0 + Duration::from_secs(1), 1000), 1000.0);
        assert_eq!(r.observe(t0 + Duration::from_secs(2), 3000), 1500.0);
        // Ten seconds on, only the last five count: 1000 bytes/s from 3000 to 13000.
        for s in 3..=12 {
            r.observe(t0 + Duration::from_secs(s), 3000 + (s - 2) * 1000);
        }
        let v = r.observe(t0 + Duration::from_secs(13), 14_000);
        assert!((v - 1000.0).abs() < 1.0, "{v}");
        assert!(r.samples.len() <= 8);
    }
}
