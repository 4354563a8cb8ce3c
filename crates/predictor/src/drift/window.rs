//! Counts of live input values per feature and bin over a sliding window: a ring of
//! [`SLOTS`] slots, each a fixed share of the window; a slot older than the window is
//! zeroed when its turn comes again. Allocated once per served version; counting a request
//! allocates nothing.

use std::time::Duration;

use model::drift_reference::FeatureReference;

use crate::input::Matrix;

/// Slots in a window: the window slides in steps of a twelfth.
pub const SLOTS: u64 = 12;

/// One slot: its epoch (which step of time it counts) and its counts.
struct Slot {
    epoch: u64,
    rows: u64,
    counts: Vec<u64>,
}

/// Per feature, its bins then one count of missing values, for every slot.
pub struct Window {
    step: Duration,
    /// Where each feature's counts start (and, last, where they end).
    offsets: Vec<usize>,
    slots: Vec<Slot>,
}

/// The window's sums: rows, and per feature its bins' counts and its missing count.
pub struct Totals {
    pub rows: u64,
    counts: Vec<u64>,
    offsets: Vec<usize>,
}

impl Totals {
    /// Feature `f`'s counts per bin, and its missing values.
    pub fn feature(&self, f: usize) -> (&[u64], u64) {
        let (start, end) = (self.offsets[f], self.offsets[f + 1]);
        (&self.counts[start..end - 1], self.counts[end - 1])
    }
}

impl Window {
    pub fn new(features: &[FeatureReference], window: Duration) -> Self {
        let mut offsets = Vec::with_capacity(features.len() + 1);
        let mut total = 0;
        for f in features {
            offsets.push(total);
            total += f.shares.len() + 1;
        }
        offsets.push(total);
        let step = (window / SLOTS as u32).max(Duration::from_millis(1));
        Window {
            step,
            offsets,
            slots: (0..SLOTS)
                .map(|_| Slot {
                    epoch: u64::MAX,
                    rows: 0,
                    counts: vec![0; total],
                })
                .collect(),
        }
    }

    /// The step of time `elapsed` (since the window began) falls in.
    pub fn epoch(&self, elapsed: Duration) -> u64 {
        (elapsed.as_nanos() / self.step.as_nanos().max(1)) as u64
    }

    /// Counts `rows` (NaN is a missing value) in the slot of `epoch`.
    pub fn observe(&mut self, epoch: u64, rows: &Matrix, features: &[FeatureReference]) {
        let slot = &mut self.slots[(epoch % SLOTS) as usize];
        if slot.epoch != epoch {
            slot.epoch = epoch;
            slot.rows = 0;
            slot.counts.fill(0);
        }
        slot.rows += rows.rows() as u64;
        for row in rows.iter_rows() {
            for ((f, &value), &start) in features.iter().zip(row).zip(&self.offsets) {
                let bin = if value.is_nan() {
                    f.shares.len()
                } else {
                    f.bin(value)
                };
                slot.counts[start + bin] += 1;
            }
        }
    }

    /// The sums over the slots inside the window at `epoch`.
    pub fn totals(&self, epoch: u64) -> Totals {
        let mut totals = Totals {
            rows: 0,
            counts: vec![0; self.offsets.last().copied().unwrap_or(0)],
            offsets: self.offsets.clone(),
        };
        for slot in &self.slots {
            if slot.epoch != u64::MAX && slot.epoch <= epoch && epoch - slot.epoch < SLOTS {
                totals.rows += slot.rows;
                for (t, c) in totals.counts.iter_mut().zip(&slot.counts) {
                    *t += c;
                }
            }
        }
        totals
    }
}
