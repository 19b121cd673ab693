//! Training the lattice Ising model's J and h from spin configurations by moment matching:
//! per update, k checkerboard sweeps of the chains (persistent for `pcd`, restarted from data
//! for `cd`, a ladder for `pt`), then
//! grad J = 2 (<b>_data - <b>_model), grad h = <m>_data - <m>_model,
//! with b = (sum over bonds s_i s_j) / 2N and m = (sum s_i) / N per configuration (the
//! log-likelihood gradient per site). One epoch is one update. Data: rows of L * L spins
//! (+1/-1, or 0/1 read as -1/+1), row-major.

use super::checkerboard::{LatticeChains, LatticeUpdate};
use super::options::{check_spec, lattice_settings, spins_of};
pub use super::options::{check_values, validate};
use super::sampler::{CpuLatticeSampler, LatticeSampler};
use super::LatticeIsing;
use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::potts::step::{apply, Rule};
use crate::rng::{streams, RngKey, RngStream};
use crate::spec::{Method, ModelSpec, TrainSettings, TrainSpec};
use crate::tempering::{ParallelTempering, TemperedChains};
use crate::tensors::{TensorReader, TensorWriter};
use crate::training::checkpoint::{
    fingerprint, read_state, write_state, RunIdentity, TemperingCounters,
};
use crate::training::epoch::EpochSteps;
use crate::training::metadata::training_metadata;
use crate::training::{optimizer_slots, uniform_rows};
use std::collections::BTreeMap;

const PLL_ROWS: usize = 200;
const FORMAT: &str = "ebm-lattice-checkpoint/1";

pub struct LatticeTrainer {
    settings: TrainSettings,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    seed: u64,
    data_fingerprint: u64,
    model: LatticeIsing,
    update: LatticeUpdate,
    /// Training configurations, canonical [rows, L, L].
    data: Vec<i8>,
    rows: usize,
    data_bond: f64,
    data_magnetization: f64,
    /// Replicas x chains (replica-major); replica t at betas[t].
    chains: LatticeChains,
    tempering: Option<ParallelTempering>,
    /// Optimizer state of (J, h): each entry holds two values.
    opt: Vec<Vec<f32>>,
    /// Mean bond product, magnetisation and |magnetisation| per site of the beta = 1
    /// chains of the last update (what the epoch's metrics describe).
    last_moments: (f64, f64, f64),
    epoch: usize,
    updates: u64,
    rng_sweep: RngStream,
    rng_swap: RngStream,
    /// Where the chains' sweeps run (the CPU, or a device making the same decisions).
    sampler: Box<dyn LatticeSampler>,
}

impl LatticeTrainer {
    /// A trainer whose sweeps run on the CPU.
    pub fn new(
        model_spec: &ModelSpec,
        train_spec: &TrainSpec,
        seed: u64,
        data: Dataset,
    ) -> Result<Self> {
        Self::with_sampler(
            model_spec,
            train_spec,
            seed,
            data,
            Box::new(CpuLatticeSampler),
        )
    }

    /// A trainer whose sweeps run on `sampler`; everything else (moments, the step,
    /// metrics, checkpoints) is the same host code on every backend.
    pub fn with_sampler(
        model_spec: &ModelSpec,
        train_spec: &TrainSpec,
        seed: u64,
        data: Dataset,
        sampler: Box<dyn LatticeSampler>,
    ) -> Result<Self> {
        let size = check_spec(model_spec, train_spec, data.cols)?;
        let model = LatticeIsing::new(size, 0.0, 0.0)?;
        let settings = lattice_settings(train_spec, data.rows)?;
        let update = LatticeUpdate::from_name(train_spec.sampler.trim())?;
        let spins = spins_of(&data)?;
        let rows = data.rows;
        let sums = LatticeChains::from_spins(size, rows, &spins)?.bond_and_spin_sums();
        let n = (size * size) as f64;
        let data_bond = sums.iter().map(|s| s.0 as f64).sum::<f64>() / (2.0 * n * rows as f64);
        let data_magnetization = sums.iter().map(|s| s.1 as f64).sum::<f64>() / (n * rows as f64);
        let replicas = settings.betas.len().max(1);
        sampler.check_size(size, settings.chains * replicas)?;
        let chains = LatticeChains::random(
            size,
            settings.chains * replicas,
            RngKey::new(seed, streams::CHAIN_INIT, 0),
        )?;
        Ok(LatticeTrainer {
            tempering: (settings.method == Method::Pt)
                .then(|| ParallelTempering::new(settings.betas.clone())),
            opt: vec![vec![0.0; 2]; optimizer_slots(settings.optimizer)],
            last_moments: (0.0, 0.0, 0.0),
            model_spec: model_spec.clone(),
            train_spec: train_spec.clone(),
            seed,
            data_fingerprint: fingerprint(&data),
            model,
            update,
            data: spins,
            rows,
            data_bond,
            data_magnetization,
            chains,
            epoch: 0,
            updates: 0,
            rng_sweep: RngStream::new(seed, streams::VISIBLE),
            rng_swap: RngStream::new(seed, streams::SWAP),
            sampler,
            settings,
        })
    }

    pub fn resume(
        model_spec: &ModelSpec,
        train_spec: &TrainSpec,
        seed: u64,
        data: Dataset,
        bytes: &[u8],
    ) -> Result<Self> {
        let cpu = Box::new(CpuLatticeSampler);
        Self::resume_with_sampler(model_spec, train_spec, seed, data, bytes, cpu)
    }

    /// [`Self::resume`] with the sweeps on `sampler` (a checkpoint holds no backend state,
    /// so it continues on any backend).
    pub fn resume_with_sampler(
        model_spec: &ModelSpec,
        train_spec: &TrainSpec,
        seed: u64,
        data: Dataset,
        bytes: &[u8],
        sampler: Box<dyn LatticeSampler>,
    ) -> Result<Self> {
        let mut t = Self::with_sampler(model_spec, train_spec, seed, data, sampler)?;
        let file = TensorReader::parse(bytes, "the checkpoint")?;
        let state: State = read_state(&file)?;
        state.run.check(&t.identity())?;
        t.model = LatticeIsing::new(
            t.model.size,
            file.finite_f32("J", Some(&[]))?[0],
            file.finite_f32("h", Some(&[]))?[0],
        )?;
        for (i, s) in t.opt.iter_mut().enumerate() {
            *s = file.finite_f32(&format!("opt.{i}"), Some(&[2]))?;
        }
        let n = t.chains.chains;
        let spins = file.finite_f32("chains", Some(&[n, t.model.sites()]))?;
        let spins: Vec<i8> = spins
            .iter()
            .map(|&s| if s > 0.0 { 1 } else { -1 })
            .collect();
        t.chains = LatticeChains::from_spins(t.model.size, n, &spins)?;
        t.epoch = state.epoch;
        t.updates = state.updates;
        t.rng_sweep.step = state.rng_sweep;
        t.rng_swap.step = state.rng_swap;
        state.tempering.restore(t.tempering.as_mut())?;
        Ok(t)
    }

    fn identity(&self) -> RunIdentity {
        RunIdentity {
            format: FORMAT.into(),
            model_spec: self.model_spec.clone(),
            train_spec: self.train_spec.clone(),
            seed: self.seed,
            data_fingerprint: self.data_fingerprint,
        }
    }

    pub fn model(&self) -> &LatticeIsing {
        &self.model
    }

    /// Starts from the J and h of a lattice_ising model file of the same size (`init_model`).
    pub fn initialize_from(&mut self, bytes: &[u8]) -> Result<()> {
        let init = super::file::from_bytes(bytes)?;
        if init.size != self.model.size {
            return Err(EngineError::invalid(format!(
                "init_model has size {} but the data need size {}",
                init.size, self.model.size
            )));
        }
        self.model = init;
        Ok(())
    }

    /// All chains (every replica), canonical [chains, L, L].
    pub fn chain_spins(&self) -> Vec<i8> {
        self.chains.spins()
    }

    fn sample(&mut self) -> Result<()> {
        let (n, k) = (self.settings.chains, self.settings.k);
        match self.settings.method {
            Method::Cd => {
                let key = RngKey::new(self.seed, streams::ORDER, self.updates);
                let sites = self.model.sites();
                let mut starts = Vec::with_capacity(n * sites);
                for r in uniform_rows(key, n, self.rows) {
                    starts.extend_from_slice(&self.data[r * sites..(r + 1) * sites]);
                }
                self.chains = LatticeChains::from_spins(self.model.size, n, &starts)?;
                self.sampler.sweep(
                    &mut self.chains,
                    &self.model,
                    &vec![1.0; n],
                    self.update,
                    &mut self.rng_sweep,
                    k,
                )?;
            }
            Method::Pcd => self.sampler.sweep(
                &mut self.chains,
                &self.model,
                &vec![1.0; n],
                self.update,
                &mut self.rng_sweep,
                k,
            )?,
            Method::Pt => {
                let mut pt = self
                    .tempering
                    .take()
                    .ok_or_else(|| EngineError::Internal("pt without a ladder".into()))?;
                // All replicas sweep together, each chain at its replica's beta.
                let betas: Vec<f32> = pt
                    .betas
                    .iter()
                    .flat_map(|&b| std::iter::repeat_n(b as f32, n))
                    .collect();
                let mut done = 0;
                while done < k {
                    let sweeps = self.settings.pt_swap_every.min(k - done);
                    let swept = self.sampler.sweep(
                        &mut self.chains,
                        &self.model,
                        &betas,
                        self.update,
                        &mut self.rng_sweep,
                        sweeps,
                    );
                    if let Err(e) = swept {
                        self.tempering = Some(pt);
                        return Err(e);
                    }
                    let key = self.rng_swap.next_key();
                    pt.swap_neighbours(&mut Replicas { trainer: self, n }, key)?;
                    done += sweeps;
                }
                self.tempering = Some(pt);
            }
        }
        Ok(())
    }

    /// Mean bond product and magnetisation per site over the beta = 1 chains, and |m|.
    fn model_moments(&self) -> (f64, f64, f64) {
        let n = self.settings.chains;
        let sums = self.chains.bond_and_spin_sums();
        let beta_one = &sums[sums.len() - n..];
        let sites = self.model.sites() as f64;
        let bond = beta_one.iter().map(|s| s.0 as f64).sum::<f64>() / (2.0 * sites * n as f64);
        let m = beta_one.iter().map(|s| s.1 as f64).sum::<f64>() / (sites * n as f64);
        let abs_m = beta_one.iter().map(|s| (s.1 as f64).abs()).sum::<f64>() / (sites * n as f64);
        (bond, m, abs_m)
    }
}

struct Replicas<'a> {
    trainer: &'a mut LatticeTrainer,
    n: usize,
}

impl TemperedChains for Replicas<'_> {
    fn chains_per_replica(&self) -> usize {
        self.n
    }
    fn sweep(&mut self, _replica: usize, _beta: f64) -> Result<()> {
        Err(EngineError::Internal(
            "lattice replicas sweep together".into(),
        ))
    }
    fn energies(&mut self, replica: usize) -> Result<Vec<f64>> {
        let e = self.trainer.chains.energies(&self.trainer.model);
        Ok(e[replica * self.n..(replica + 1) * self.n].to_vec())
    }
    fn swap(&mut self, a: usize, b: usize, mask: &[bool]) -> Result<()> {
        for (r, &m) in mask.iter().enumerate() {
            if m {
                self.trainer
                    .chains
                    .swap_chains(a * self.n + r, b * self.n + r);
            }
        }
        Ok(())
    }
}

use crate::training::checkpoint::SweepTrainerState as State;

impl EpochSteps for LatticeTrainer {
    const DIVERGENCE_HINT: &'static str = "lower the learning rate or add l2";

    fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// One full-batch update: k sweeps, then one step of J and h.
    fn train(
        &mut self,
        learning_rate: f64,
        should_stop: &dyn Fn() -> bool,
        _progress: &mut dyn FnMut(f64),
    ) -> Result<Option<f64>> {
        if should_stop() {
            return Ok(None);
        }
        self.sample()?;
        let (bond, m, abs_m) = self.model_moments();
        let grad = [
            (2.0 * (self.data_bond - bond)) as f32,
            (self.data_magnetization - m) as f32,
        ];
        self.updates += 1;
        let mut params = [self.model.coupling, self.model.field];
        apply(
            &mut params,
            &grad,
            &mut self.opt,
            &Rule::new(&self.settings, learning_rate, self.updates),
            true,
        );
        if params.iter().any(|v| !v.is_finite()) {
            return Err(EngineError::Diverged(format!(
                "lattice_ising parameters became J = {}, h = {} at update {}; lower the learning rate",
                params[0], params[1], self.updates
            )));
        }
        self.model.coupling = params[0];
        self.model.field = params[1];
        self.last_moments = (bond, m, abs_m);
        Ok(Some((self.chains.chains * self.settings.k) as f64))
    }

    fn end_epoch(&mut self) {
        self.epoch += 1;
    }

    fn epoch_metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        let (bond, m, abs_m) = self.last_moments;
        // chain sweeps per second x sites per sweep
        let sweeps_per_second = metrics.get("samples_per_second").copied().unwrap_or(0.0);
        metrics.insert(
            "flips_per_ns".into(),
            sweeps_per_second * self.model.sites() as f64 / 1e9,
        );
        metrics.insert("coupling".into(), self.model.coupling as f64);
        metrics.insert("field".into(), self.model.field as f64);
        metrics.insert("bond_data".into(), self.data_bond);
        metrics.insert("bond_model".into(), bond);
        metrics.insert("magnetization_data".into(), self.data_magnetization);
        metrics.insert("magnetization_model".into(), m);
        metrics.insert("abs_magnetization_model".into(), abs_m);
        let eval = PLL_ROWS.min(self.rows) * self.model.sites();
        metrics.insert(
            "pseudo_log_likelihood".into(),
            self.model.pseudo_log_likelihood(&self.data[..eval]),
        );
        if self.model.sites() <= 16 {
            let log_z = self.model.log_partition()?;
            let sites = self.model.sites();
            let mean_neg_e = (0..self.rows)
                .map(|r| -self.model.energy(&self.data[r * sites..(r + 1) * sites]))
                .sum::<f64>()
                / self.rows as f64;
            metrics.insert("log_z".into(), log_z);
            metrics.insert("log_likelihood".into(), mean_neg_e - log_z);
        }
        Ok(())
    }

    fn tempering(&self) -> Option<&ParallelTempering> {
        self.tempering.as_ref()
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    fn save_checkpoint(&self) -> Result<Vec<u8>> {
        let mut out = TensorWriter::new();
        out.add("J", &[], &[self.model.coupling])?;
        out.add("h", &[], &[self.model.field])?;
        for (i, s) in self.opt.iter().enumerate() {
            out.add(&format!("opt.{i}"), &[2], s)?;
        }
        let spins: Vec<f32> = self.chains.spins().iter().map(|&s| s as f32).collect();
        out.add("chains", &[self.chains.chains, self.model.sites()], &spins)?;
        let state = State {
            run: self.identity(),
            epoch: self.epoch,
            updates: self.updates,
            rng_sweep: self.rng_sweep.step,
            rng_swap: self.rng_swap.step,
            tempering: TemperingCounters::of(self.tempering.as_ref()),
        };
        write_state(&mut out, "lattice_ising-checkpoint", &state)?;
        out.to_bytes()
    }

    fn save_model(&self) -> Result<Vec<u8>> {
        let meta = training_metadata(
            self.epoch,
            self.seed,
            &self.settings,
            &self.model_spec,
            &self.train_spec,
            self.sampler.backend().name(),
        );
        super::file::to_bytes(&self.model, &meta)
    }
}
