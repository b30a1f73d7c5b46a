//! Where a training step's time goes, per operation, on any backend
//! (`eqae bench --profile`).
//!
//! GPU backends queue work and run it later, so timing an operation where
//! the model calls it measures nothing. Instead, while a forward pass runs
//! under [`record`], every operation the layers call leaves a replay: a
//! closure over detached copies of its own inputs that runs it again,
//! forward only or forward and backward. [`Profile::measure`] then replays
//! each distinct call (operation and shapes), synchronising the device
//! around each repetition, and reports milliseconds per step and share:
//! the backward of an operation is its forward-and-backward time less its
//! forward time. What the step spends outside the recorded operations
//! (reshapes, the loss, the optimiser, the framework's own bookkeeping)
//! is reported as the difference to the measured step, not guessed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::{Device, Tensor};

/// A recorded call: runs the operation again on copies of its inputs, with
/// the backward pass when asked.
type Replay = Box<dyn Fn(bool)>;

thread_local! {
    /// The calls recorded so far, while [`record`] runs.
    static RECORDED: RefCell<Option<Vec<(String, Replay)>>> = const { RefCell::new(None) };
}

/// Whether a forward pass is being recorded on this thread: instrumented
/// operations build their replay only then.
pub fn recording() -> bool {
    RECORDED.with(|r| r.borrow().is_some())
}

/// Keep the replay of one call named `name` (the operation and its shapes;
/// calls of the same name are timed once and counted).
pub fn keep(name: String, replay: impl Fn(bool) + 'static) {
    RECORDED.with(|r| {
        if let Some(calls) = r.borrow_mut().as_mut() {
            calls.push((name, Box::new(replay)));
        }
    });
}

/// A detached copy of `x` that asks for its gradient: a replay's input.
pub fn input<const D: usize>(x: &Tensor<D>) -> Tensor<D> {
    let x = x.clone().detach();
    if x.device().is_autodiff() {
        x.require_grad()
    } else {
        x
    }
}

/// End a replay: with `backward`, the gradient of the sum of `y` (every
/// input's gradient is computed, as in training).
pub fn finish<const D: usize>(y: Tensor<D>, backward: bool) {
    if backward && y.device().is_autodiff() {
        let _ = y.sum().backward();
    } else {
        drop(y);
    }
}

/// `[a,b,c]` for a shape.
pub fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(","))
}

/// Run `f` (one forward pass) and return its result with the calls the
/// instrumented operations recorded, in order.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, Replay)>) {
    RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let out = f();
    let calls = RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (out, calls)
}

/// One line of a profile: a distinct call and what it costs per step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileRow {
    /// Operation and shapes, or a named remainder.
    pub name: String,
    /// Calls per step.
    pub calls: usize,
    /// Forward milliseconds per step (all calls).
    pub forward_ms: f64,
    /// Backward milliseconds per step (all calls).
    pub backward_ms: f64,
}

impl ProfileRow {
    /// Forward and backward.
    pub fn total_ms(&self) -> f64 {
        self.forward_ms + self.backward_ms
    }
}

/// A training step's time by operation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Profile {
    /// One row per distinct call, most expensive first.
    pub rows: Vec<ProfileRow>,
    /// The measured step (forward, loss, backward, optimiser), ms.
    pub step_ms: f64,
    /// The measured forward, loss and backward without the optimiser, ms.
    pub forward_backward_ms: f64,
}

/// Milliseconds per run of `f`, the device synchronised before and after
/// each of `reps` runs (after one untimed run: new shapes compile first).
fn time_ms(device: &Device, reps: usize, f: &dyn Fn()) -> f64 {
    f();
    let _ = device.sync();
    let mut total = 0.0;
    for _ in 0..reps {
        let _ = device.sync();
        let t = Instant::now();
        f();
        let _ = device.sync();
        total += t.elapsed().as_secs_f64();
    }
    total * 1e3 / reps as f64
}

impl Profile {
    /// Replay every distinct call in `calls` `reps` times, forward and
    /// forward-and-backward, and set them beside the measured step.
    pub fn measure(
        calls: Vec<(String, Replay)>,
        device: &Device,
        reps: usize,
        (step_ms, forward_backward_ms): (f64, f64),
    ) -> Profile {
        let mut distinct: BTreeMap<String, (usize, Replay)> = BTreeMap::new();
        for (name, replay) in calls {
            match distinct.get_mut(&name) {
                Some((n, _)) => *n += 1,
                None => {
                    distinct.insert(name, (1, replay));
                }
            }
        }
        let mut rows: Vec<ProfileRow> = distinct
            .into_iter()
            .map(|(name, (calls, replay))| {
                let forward = time_ms(device, reps, &|| replay(false));
                let both = time_ms(device, reps, &|| replay(true));
                ProfileRow {
                    name,
                    calls,
                    forward_ms: forward * calls as f64,
                    // a difference of two timings: clamped at 0 where the
                    // backward is below the timing noise
                    backward_ms: (both - forward).max(0.0) * calls as f64,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.total_ms().total_cmp(&a.total_ms()));
        Profile {
            rows,
            step_ms,
            forward_backward_ms,
        }
    }

    /// Milliseconds the recorded operations account for.
    pub fn recorded_ms(&self) -> f64 {
        self.rows.iter().map(ProfileRow::total_ms).sum()
    }

    /// The table: one line per call, then the remainders (everything else
    /// in forward and backward; the optimiser), then the step.
    pub fn table(&self) -> String {
        let share = |ms: f64| 100.0 * ms / self.step_ms;
        let mut out = format!(
            "{:<64} {:>5} {:>10} {:>10} {:>10} {:>6}\n",
            "operation [shapes]", "calls", "fwd ms", "bwd ms", "total ms", "share"
        );
        for r in &self.rows {
            out += &format!(
                "{:<64} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>5.1}%\n",
                r.name,
                r.calls,
                r.forward_ms,
                r.backward_ms,
                r.total_ms(),
                share(r.total_ms())
            );
        }
        let rest = self.forward_backward_ms - self.recorded_ms();
        let optimiser = self.step_ms - self.forward_backward_ms;
        for (name, ms) in [
            (
                "everything else in forward + backward (loss, reshapes, tape)",
                rest,
            ),
            ("optimiser (Adam) and what the step adds", optimiser),
        ] {
            out += &format!(
                "{:<64} {:>5} {:>10} {:>10} {:>10.3} {:>5.1}%\n",
                name,
                "",
                "",
                "",
                ms,
                share(ms)
            );
        }
        out += &format!(
            "{:<64} {:>5} {:>10} {:>10} {:>10.3} {:>5.1}%\n",
            "training step (measured)", "", "", "", self.step_ms, 100.0
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recording keeps one replay per call, only while recording; the
    /// table counts calls of the same name once and closes on the step.
    #[test]
    fn calls_are_recorded_counted_and_tabled() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([4, 4], &device);
        let op = |x: Tensor<2>| {
            if recording() {
                let copy = input(&x);
                keep(format!("exp {}", shape(&x.dims())), move |b| {
                    finish(copy.clone().exp(), b)
                });
            }
            x.exp()
        };
        let _ = op(x.clone());
        assert!(!recording());
        let (_, calls) = record(|| op(op(x.clone())));
        assert_eq!(calls.len(), 2);
        let profile = Profile::measure(calls, &device, 2, (10.0, 8.0));
        assert_eq!(profile.rows.len(), 1);
        assert_eq!(profile.rows[0].calls, 2);
        assert_eq!(profile.rows[0].name, "exp [4,4]");
        let table = profile.table();
        assert!(table.contains("exp [4,4]") && table.contains("training step (measured)"));
        assert!(table.lines().last().unwrap().contains("100.0%"), "{table}");
    }
}
