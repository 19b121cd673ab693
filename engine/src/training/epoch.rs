//! The epoch driver every family trainer runs: it checks that training is not finished,
//! picks the learning rate of the epoch from the schedule, lets the family train, then
//! times the epoch, collects the common and the family's metrics, adds the tempering swap
//! rates, fails with `Diverged` on a NaN or infinite metric, and reports progress.

use crate::error::{EngineError, Result};
use crate::family::{EpochReport, FamilyTrainer};
use crate::spec::TrainSettings;
use crate::tempering::ParallelTempering;
use std::collections::BTreeMap;
use std::time::Instant;

/// The family-specific steps of an epoch; [`run_epoch`] does the rest.
/// Every `EpochSteps` is a [`FamilyTrainer`] (the blanket impl below).
pub(crate) trait EpochSteps: Send {
    /// What to suggest when a metric becomes NaN or infinite.
    const DIVERGENCE_HINT: &'static str;

    fn settings(&self) -> &TrainSettings;

    /// Trains (the rest of) the current epoch at `learning_rate`, checking `should_stop`
    /// before every update. Returns the samples it processed (for `samples_per_second`),
    /// or `None` if it stopped, with the state consistent so that a checkpoint captures the
    /// exact position. Does not count the epoch as done.
    fn train(
        &mut self,
        learning_rate: f64,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<f64>>;

    /// Counts the epoch `train` finished as done.
    fn end_epoch(&mut self);

    /// The family's metrics of the epoch just done (`epochs_done` counts it already).
    fn epoch_metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()>;

    /// The temperature ladder of `pt`, whose swap rates are reported.
    fn tempering(&self) -> Option<&ParallelTempering>;

    /// Epochs done so far.
    fn epoch(&self) -> usize;

    /// See [`FamilyTrainer::checkpoint`].
    fn save_checkpoint(&self) -> Result<Vec<u8>>;

    /// See [`FamilyTrainer::model_file`].
    fn save_model(&self) -> Result<Vec<u8>>;
}

impl<T: EpochSteps> FamilyTrainer for T {
    fn epochs_done(&self) -> usize {
        self.epoch()
    }

    fn epochs_total(&self) -> usize {
        self.settings().epochs
    }

    fn run_epoch(
        &mut self,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<EpochReport>> {
        run_epoch(self, should_stop, progress)
    }

    fn checkpoint(&self) -> Result<Vec<u8>> {
        self.save_checkpoint()
    }

    fn model_file(&self) -> Result<Vec<u8>> {
        self.save_model()
    }
}

/// Runs (the rest of) one epoch of `trainer`; see [`crate::train::Trainer::run_epoch`].
pub(crate) fn run_epoch<T: EpochSteps>(
    trainer: &mut T,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Option<EpochReport>> {
    let (done, total) = (trainer.epochs_done(), trainer.epochs_total());
    if done >= total {
        return Err(EngineError::invalid("training is already finished"));
    }
    let started = Instant::now();
    let learning_rate = trainer.settings().learning_rate_at(done);
    let Some(samples) = trainer.train(learning_rate, should_stop, progress)? else {
        return Ok(None);
    };
    let train_seconds = started.elapsed().as_secs_f64();
    trainer.end_epoch();
    let epoch = trainer.epochs_done();
    let mut metrics = BTreeMap::new();
    metrics.insert("train_seconds".into(), train_seconds);
    metrics.insert(
        "samples_per_second".into(),
        samples / train_seconds.max(1e-9),
    );
    metrics.insert("learning_rate".into(), learning_rate);
    let metrics_started = Instant::now();
    trainer.epoch_metrics(&mut metrics)?;
    if let Some(pt) = trainer.tempering() {
        insert_swap_rates(pt, &mut metrics);
    }
    check_finite(&metrics, epoch, T::DIVERGENCE_HINT)?;
    metrics.insert(
        "metrics_seconds".into(),
        metrics_started.elapsed().as_secs_f64(),
    );
    metrics.insert("epoch_seconds".into(), started.elapsed().as_secs_f64());
    progress(epoch as f64 / total as f64);
    Ok(Some(EpochReport { epoch, metrics }))
}

/// `pt_swap_rate_<t>` for each neighbour pair (t, t+1), NaN before its first attempt, and
/// `pt_swap_rate_min`, the smallest over the pairs attempted (NaN if none was).
fn insert_swap_rates(pt: &ParallelTempering, metrics: &mut BTreeMap<String, f64>) {
    let rates = pt.acceptance_rates();
    for (t, r) in rates.iter().enumerate() {
        metrics.insert(format!("pt_swap_rate_{t}"), *r);
    }
    // f64::min returns the other argument when one is NaN: the fold skips NaN rates.
    metrics.insert(
        "pt_swap_rate_min".into(),
        rates.iter().cloned().fold(f64::NAN, f64::min),
    );
}

/// `Diverged` if a metric is infinite, or NaN (swap rates may be NaN: no attempt yet).
fn check_finite(metrics: &BTreeMap<String, f64>, epoch: usize, hint: &str) -> Result<()> {
    for (name, v) in metrics {
        if v.is_infinite() || (v.is_nan() && !name.starts_with("pt_swap_rate")) {
            return Err(EngineError::Diverged(format!(
                "metric {name} is {v} after epoch {epoch}; {hint}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_rates_and_divergence() {
        let mut pt = ParallelTempering::new(vec![0.5, 0.75, 1.0]);
        pt.attempted = vec![4, 0];
        pt.accepted = vec![1, 0];
        let mut m = BTreeMap::new();
        insert_swap_rates(&pt, &mut m);
        assert_eq!(m["pt_swap_rate_0"], 0.25);
        assert!(m["pt_swap_rate_1"].is_nan());
        // f64::min ignores NaN: the minimum over the pairs attempted
        assert_eq!(m["pt_swap_rate_min"], 0.25);
        assert!(check_finite(&m, 1, "hint").is_ok());
        // no pair attempted yet: NaN, not a divergence
        let mut none = BTreeMap::new();
        insert_swap_rates(&ParallelTempering::new(vec![0.5, 1.0]), &mut none);
        assert!(none["pt_swap_rate_min"].is_nan());
        assert!(check_finite(&none, 1, "hint").is_ok());
        m.insert("pseudo_log_likelihood".into(), f64::NAN);
        match check_finite(&m, 3, "lower the learning rate") {
            Err(EngineError::Diverged(msg)) => {
                assert!(msg.contains("pseudo_log_likelihood") && msg.contains("epoch 3"))
            }
            other => panic!("{other:?}"),
        }
        m.remove("pseudo_log_likelihood");
        m.insert("log_z".into(), f64::INFINITY);
        assert!(check_finite(&m, 1, "").is_err());
    }
}
