//! The overview's memory: every pool's running, queued and parked counts, sampled once a
//! second for the last ten minutes (a ring of [`KEPT`] samples, a few dozen bytes each per
//! pool), and the inline SVG chart drawn from them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use maud::{Markup, html};

use crate::node::Node;

/// Samples kept: ten minutes at one a second.
pub const KEPT: usize = 600;
/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(1);
/// Samples the completion rate is measured over (the last ten seconds).
const RATE_WINDOW: usize = 10;

/// One pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSample {
    /// Executing guest code.
    pub running: usize,
    /// Waiting for a first slot.
    pub queued: usize,
    /// Parked at a suspension point.
    pub parked: usize,
    /// Instances ended so far (completed and failed).
    pub ended: u64,
}

/// Every pool at one moment, in the node's pool order.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Pool names and their figures.
    pub pools: Vec<(String, PoolSample)>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    /// An empty history.
    pub fn new() -> Arc<Self> {
        Arc::new(History::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `sample`, forgetting the oldest beyond [`KEPT`].
    pub fn push(&self, sample: Sample) {
        let mut ring = self.lock();
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Pool `name`'s series, oldest first: `[running, queued, parked]` per sample.
    pub fn series(&self, name: &str) -> Vec<[usize; 3]> {
        self.lock()
            .iter()
            .map(|s| {
                let p = s
                    .pools
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| *p)
                    .unwrap_or_default();
                [p.running, p.queued, p.parked]
            })
            .collect()
    }

    /// Pool `name`'s instances ended per second over the last few samples.
    pub fn rate(&self, name: &str) -> f64 {
        let ring = self.lock();
        let ended = |s: &Sample| {
            s.pools
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.ended)
        };
        let (Some(last), Some(first)) = (
            ring.back().and_then(ended),
            ring.iter()
                .rev()
                .nth(RATE_WINDOW.min(ring.len().saturating_sub(1)))
                .and_then(ended),
        ) else {
            return 0.0;
        };
        let span = RATE_WINDOW.min(ring.len().saturating_sub(1)).max(1);
        last.saturating_sub(first) as f64 / (span as f64 * EVERY.as_secs_f64())
    }
}

/// The figures of every pool of `node` now.
pub fn sample(node: &Node) -> Sample {
    Sample {
        pools: node
            .pools()
            .iter()
            .map(|pool| {
                let s = pool.stats().snapshot();
                let figures = PoolSample {
                    running: s.running,
                    queued: pool.queued(),
                    parked: s.parked,
                    ended: s.completed + s.failed,
                };
                (pool.name().to_string(), figures)
            })
            .collect(),
    }
}

/// Sample `node` into `history` every [`EVERY`] until the history is dropped.
pub fn sample_every_second(history: &Arc<History>, node: Node) {
    let weak: Weak<History> = Arc::downgrade(history);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(history) = weak.upgrade() else {
                return;
            };
            history.push(sample(&node));
        }
    });
}

/// Chart width in SVG units: one per sample kept.
const WIDTH: usize = KEPT;
/// Chart height in SVG units.
const HEIGHT: f64 = 100.0;

/// Fewest samples the chart's width stands for: a young node's first minute spreads over the
/// whole chart, which then shows more, up to [`KEPT`].
const MIN_WINDOW: usize = 60;

/// The polyline points of one series (index 0, 1, 2 of each sample), newest at the right
/// edge; the script draws the same way when samples arrive.
fn points(series: &[[usize; 3]], which: usize, top: usize) -> String {
    let window = series.len().clamp(MIN_WINDOW, KEPT);
    let step = WIDTH as f64 / window as f64;
    let last = series.len().saturating_sub(1);
    series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let x = WIDTH as f64 - (last - i) as f64 * step;
            let y = HEIGHT - (s[which] as f64 / top as f64) * (HEIGHT - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chart of one pool: running, queued and parked over the last ten minutes.
pub fn chart(pool: &str, series: &[[usize; 3]]) -> Markup {
    let top = series
        .iter()
        .flat_map(|s| s.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let data = serde_json::to_string(series).unwrap_or_else(|_| "[]".into());
    html! {
        figure.chart data-pool=(pool) data-series=(data) {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img"
                aria-label={ "running, queued and parked in " (pool) " over the last ten minutes" } {
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                polyline.s-running points=(points(series, 0, top)) vector-effect="non-scaling-stroke" {}
                polyline.s-queued points=(points(series, 1, top)) vector-effect="non-scaling-stroke" {}
                polyline.s-parked points=(points(series, 2, top)) vector-effect="non-scaling-stroke" {}
            }
            figcaption {
                span.key.k-running { "running" }
                span.key.k-queued { "queued" }
                span.key.k-parked { "parked" }
                span.top { "max " span data-top { (top) } " · up to 10 min" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ended: u64, running: usize) -> Sample {
        Sample {
            pools: vec![(
                "p".into(),
                PoolSample {
                    running,
                    ended,
                    ..PoolSample::default()
                },
            )],
        }
    }

    #[test]
    fn the_ring_keeps_the_last_ten_minutes_and_measures_the_rate() {
        let history = History::default();
        for i in 0..(KEPT as u64 + 50) {
            history.push(at(i * 3, (i % 4) as usize));
        }
        let series = history.series("p");
        assert_eq!(series.len(), KEPT);
        assert_eq!(series.last().unwrap()[0], ((KEPT + 49) % 4));
        assert!((history.rate("p") - 3.0).abs() < 1e-9);
        assert_eq!(history.rate("other"), 0.0);
        assert!(history.series("other").iter().all(|s| *s == [0, 0, 0]));
    }

    #[test]
    fn the_chart_scales_to_its_highest_value() {
        let series = vec![[0, 0, 0], [2, 4, 1]];
        let svg = chart("p", &series).into_string();
        assert!(svg.contains("590.0,100.0 600.0,4.0"), "{svg}");
    }
}
