//! Progress of long runs on standard error: a bar with rate and ETA on a terminal (indicatif),
//! a plain line every few seconds otherwise (logs, CI), nothing when quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when standard error is a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// Nothing.
    Quiet,
}

/// Progress of one run over a known number of events.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
    last_line: Instant,
}

impl Progress {
    /// Starts showing progress of `label` over `total` events.
    pub fn new(mode: ProgressMode, label: &str, total: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            started: now,
            bar,
            plain: mode == ProgressMode::Plain || (mode == ProgressMode::Auto && !terminal),
            last_line: now,
        }
    }

    /// Records that `done` events (of the total) are done.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.plain && self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let left = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / self.total as f64
        };
        format!(
            "{}: {}/{} events ({pct:.0}%), {rate:.0} events/s, ETA {left:.0} s",
            self.label, self.done, self.total
        )
    }

    /// Ends the display.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if self.plain && self.started.elapsed() >= PLAIN_EVERY {
            eprintln!("{}", self.line());
        }
    }
}
