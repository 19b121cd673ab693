//! Boltzmann-machine DCA: a Potts model trained by moment matching. Every update runs k
//! sweeps of the chains (persistent for `pcd`, restarted from data for `cd`, a temperature
//! ladder for `pt`) and moves the parameters along
//! grad h_i(a) = f_i(a) - p_i(a), grad J_ij(a, b) = f_ij(a, b) - p_ij(a, b),
//! data frequencies f (weighted, with pseudocount) minus model frequencies p from the chains,
//! minus L1/L2 decay on J. One epoch is one such full-batch update (as in adabmDCA).
//!
//! Defaults where Potts practice differs from RBMs: chains 1000, k = 10 sweeps, learning
//! rate 0.01, SGD momentum 0, sampler gibbs, reweighting at 80% identity, pseudocount
//! 1 / M_eff. Per epoch it reports the Pearson correlation between data and model connected
//! correlations (`pearson`, the DCA stopping criterion), the pseudo-log-likelihood, the exact
//! log-likelihood when q^L is small, wall time and chain sweeps per second.

use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::potts::data::{states_of, weigh, Sequences};
use crate::potts::options::{check_sizes, potts_settings, PottsOptions};
use crate::potts::sampler::{CpuPottsSampler, PottsSampler};
use crate::potts::stats::{pearson, Frequencies};
use crate::potts::step::{apply, Rule};
use crate::potts::sweep::field_only_states;
use crate::potts::PottsModel;
use crate::rng::{permutation, streams, RngKey, RngStream};
use crate::spec::{validation_rows, Method, ModelSpec, TrainSettings, TrainSpec};
use crate::tempering::{ParallelTempering, TemperedChains};
use crate::training::checkpoint::fingerprint;
use crate::training::epoch::EpochSteps;
use crate::training::metadata::training_metadata;
use crate::training::{optimizer_slots, uniform_rows};
use std::collections::BTreeMap;

/// Exact log-likelihood every epoch up to this many configurations, at the end up to 2^20.
const EXACT_EVERY_EPOCH: f64 = 65_536.0;
const EXACT_FINAL: f64 = 1_048_576.0;
/// Sequences the pseudo-log-likelihood is evaluated on per epoch.
const PLL_ROWS: usize = 500;

pub struct PottsTrainer {
    pub(super) settings: TrainSettings,
    pub(super) options: PottsOptions,
    pub(super) model_spec: ModelSpec,
    pub(super) train_spec: TrainSpec,
    pub(super) seed: u64,
    pub(super) data_fingerprint: u64,
    pub(super) model: PottsModel,
    train_set: Sequences,
    valid_set: Option<Sequences>,
    data_freq: Frequencies,
    data_connected: Vec<f64>,
    /// The model frequencies of the last update's chains (what the epoch's metrics describe).
    model_freq: Option<Frequencies>,
    pub(super) pseudocount: f64,
    notes: Vec<String>,
    /// The data came from a FASTA alignment (states follow the protein alphabet).
    from_fasta: bool,
    /// [replicas * chains, L], replica-major; replica t runs at betas[t] (pcd/cd: one replica).
    pub(super) chains: Vec<u8>,
    pub(super) tempering: Option<ParallelTempering>,
    /// Optimizer state of h and J (sgd: velocity; adam: two moments).
    pub(super) opt_h: Vec<Vec<f32>>,
    pub(super) opt_j: Vec<Vec<f32>>,
    pub(super) epoch: usize,
    pub(super) updates: u64,
    pub(super) rng_sweep: RngStream,
    pub(super) rng_swap: RngStream,
    /// Where the chains' sweeps run (the CPU, or a device with the same random numbers).
    pub(super) sampler: Box<dyn PottsSampler>,
}

impl PottsTrainer {
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
            Box::new(CpuPottsSampler),
        )
    }

    /// A trainer whose sweeps run on `sampler`; everything else (data statistics, the
    /// gradient step, metrics, checkpoints) is the same host code on every backend.
    pub fn with_sampler(
        model_spec: &ModelSpec,
        train_spec: &TrainSpec,
        seed: u64,
        data: Dataset,
        sampler: Box<dyn PottsSampler>,
    ) -> Result<Self> {
        let options = PottsOptions::resolve(model_spec, train_spec, &data)?;
        let (states, kept, mut notes) = states_of(&data, options.q, options.unknown_residues)?;
        let settings = potts_settings(train_spec, kept.len())?;
        let (rows, sites, q) = (kept.len(), data.cols, options.q);
        crate::potts::check_shape(sites, q)?;
        check_sizes(&settings, sites, q)?;
        // Validation split: a permutation from the seed, the first rows held out.
        let held_out = validation_rows(rows, settings.validation_fraction);
        let order = permutation(rows, RngKey::new(seed, streams::SPLIT, 0));
        let (valid_rows, train_rows): (Vec<usize>, Vec<usize>) = if held_out > 0 {
            let mut v: Vec<usize> = order[..held_out].iter().map(|&r| r as usize).collect();
            let mut t: Vec<usize> = order[held_out..].iter().map(|&r| r as usize).collect();
            v.sort_unstable();
            t.sort_unstable();
            (v, t)
        } else {
            (Vec::new(), (0..rows).collect())
        };
        let all = Sequences {
            rows,
            sites,
            states,
            weights: vec![1.0; rows],
        };
        let train_raw = all.select(&train_rows);
        let train_set = weigh(
            train_raw.states,
            train_raw.rows,
            sites,
            options.reweight_identity,
        )?;
        let valid_set = (!valid_rows.is_empty()).then(|| {
            let v = all.select(&valid_rows);
            sequence_weights_of(v, options.reweight_identity)
        });
        let m_eff = train_set.m_eff();
        let pseudocount = options.pseudocount.unwrap_or(1.0 / m_eff.max(1.0));
        notes.push(format!(
            "{} training sequences, M_eff = {m_eff:.1} at {}% identity, pseudocount {pseudocount:.3e}",
            train_set.rows,
            options.reweight_identity * 100.0
        ));
        let data_freq = Frequencies::from_states(
            &train_set.states,
            train_set.rows,
            sites,
            q,
            Some(&train_set.weights),
            pseudocount,
        );
        let data_connected = data_freq.connected();
        // Independent-site start: h_i(a) = log f_i(a) (centred), J = 0 (as adabmDCA).
        let mut model = PottsModel::zeros(sites, q)?;
        for i in 0..sites {
            let logs: Vec<f64> = (0..q)
                .map(|a| data_freq.one[i * q + a].max(1e-12).ln())
                .collect();
            let mean = logs.iter().sum::<f64>() / q as f64;
            for a in 0..q {
                model.fields[i * q + a] = (logs[a] - mean) as f32;
            }
        }
        let replicas = settings.betas.len().max(1);
        sampler.check_size(sites, q, settings.chains * replicas)?;
        // The persistent chains start in equilibrium for this starting model (J = 0: sites
        // independent, drawn from f_i), as adabmDCA's do. Uniformly random starts are far
        // from it: the first updates then fit the chains' relaxation instead of the data,
        // which costs Metropolis (slow to relax) a visibly lower Pearson early on.
        let chains = field_only_states(
            &model.fields,
            q,
            settings.chains * replicas,
            RngKey::new(seed, streams::CHAIN_INIT, 0),
        );
        let tempering =
            (settings.method == Method::Pt).then(|| ParallelTempering::new(settings.betas.clone()));
        let n_state = optimizer_slots(settings.optimizer);
        let lq = sites * q;
        Ok(PottsTrainer {
            options,
            model_spec: model_spec.clone(),
            train_spec: train_spec.clone(),
            seed,
            data_fingerprint: fingerprint(&data),
            model,
            train_set,
            valid_set,
            data_freq,
            data_connected,
            model_freq: None,
            pseudocount,
            notes,
            from_fasta: data.notes.iter().any(|n| n.starts_with("FASTA/A2M")),
            chains,
            tempering,
            opt_h: vec![vec![0.0; lq]; n_state],
            opt_j: vec![vec![0.0; lq * lq]; n_state],
            epoch: 0,
            updates: 0,
            rng_sweep: RngStream::new(seed, streams::VISIBLE),
            rng_swap: RngStream::new(seed, streams::SWAP),
            sampler,
            settings,
        })
    }

    pub fn model(&self) -> &PottsModel {
        &self.model
    }

    /// Starts from the parameters of a Potts model file of the same L and q (`init_model`).
    pub fn initialize_from(&mut self, bytes: &[u8]) -> Result<()> {
        let init = crate::potts::file::from_bytes(bytes)?;
        if (init.sites, init.q) != (self.model.sites, self.model.q) {
            return Err(EngineError::invalid(format!(
                "init_model has L = {}, q = {} but the data need L = {}, q = {}",
                init.sites, init.q, self.model.sites, self.model.q
            )));
        }
        self.model = init;
        self.sampler.parameters_changed();
        Ok(())
    }

    pub fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// What data preparation did (unknown residues, M_eff, pseudocount).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The chains at beta = 1 (the last replica), [chains, L].
    pub fn model_chains(&self) -> &[u8] {
        let n = self.settings.chains * self.model.sites;
        &self.chains[self.chains.len() - n..]
    }

    /// k sweeps of the chains as the method says.
    fn sample(&mut self) -> Result<()> {
        let (n, l, k) = (self.settings.chains, self.model.sites, self.settings.k);
        match self.settings.method {
            Method::Cd => {
                // Restart every chain at a training sequence drawn uniformly (element c of
                // the ORDER key of this update).
                let key = RngKey::new(self.seed, streams::ORDER, self.updates);
                for (c, r) in uniform_rows(key, n, self.train_set.rows)
                    .into_iter()
                    .enumerate()
                {
                    self.chains[c * l..(c + 1) * l]
                        .copy_from_slice(&self.train_set.states[r * l..(r + 1) * l]);
                }
                self.sweeps_single(k)?;
            }
            Method::Pcd => self.sweeps_single(k)?,
            Method::Pt => {
                let mut pt = self
                    .tempering
                    .take()
                    .ok_or_else(|| EngineError::Internal("pt without a ladder".into()))?;
                let every = self.settings.pt_swap_every;
                let mut done = 0;
                let result = (|| {
                    while done < k {
                        let sweeps = every.min(k - done);
                        let key = self.rng_swap.next_key();
                        let mut replicas = Replicas {
                            trainer: self,
                            chains_per_replica: n,
                        };
                        pt.round(&mut replicas, sweeps, key)?;
                        done += sweeps;
                    }
                    Ok(())
                })();
                self.tempering = Some(pt);
                result?;
            }
        }
        Ok(())
    }

    fn sweeps_single(&mut self, k: usize) -> Result<()> {
        let betas = vec![1.0f32; self.settings.chains];
        let keys: Vec<RngKey> = (0..k).map(|_| self.rng_sweep.next_key()).collect();
        self.sampler.sweeps(
            &self.model,
            &mut self.chains,
            &betas,
            self.options.update,
            &keys,
        )
    }

    /// One full-batch gradient step from the current chains.
    fn step(&mut self, model_freq: &Frequencies, learning_rate: f64) -> Result<()> {
        let (l, q) = (self.model.sites, self.model.q);
        let lq = l * q;
        let grad_h: Vec<f32> = (0..lq)
            .map(|x| (self.data_freq.one[x] - model_freq.one[x]) as f32)
            .collect();
        let grad_j: Vec<f32> = (0..lq * lq)
            .map(|xy| {
                let (x, y) = (xy / lq, xy % lq);
                if x / q == y / q {
                    0.0
                } else {
                    (self.data_freq.two[xy] - model_freq.two[xy]) as f32
                }
            })
            .collect();
        self.updates += 1;
        let rule = Rule::new(&self.settings, learning_rate, self.updates);
        apply(
            &mut self.model.fields,
            &grad_h,
            &mut self.opt_h,
            &rule,
            false,
        );
        apply(
            &mut self.model.couplings,
            &grad_j,
            &mut self.opt_j,
            &rule,
            true,
        );
        self.sampler.parameters_changed();
        // Diagonal blocks stay exactly zero (their gradient and decay are zero; momentum too).
        if let Some(i) = self
            .model
            .fields
            .iter()
            .chain(&self.model.couplings)
            .position(|v| !v.is_finite())
        {
            return Err(EngineError::Diverged(format!(
                "a Potts parameter became {} at update {} (flat index {i}); lower the learning rate or add l2",
                if i < lq { self.model.fields[i] } else { self.model.couplings[i - lq] },
                self.updates
            )));
        }
        Ok(())
    }

    fn metrics(&self, model_freq: &Frequencies, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        metrics.insert(
            "pearson".into(),
            pearson(&self.data_connected, &model_freq.connected()),
        );
        let (l, eval) = (self.model.sites, PLL_ROWS.min(self.train_set.rows));
        let t = &self.train_set;
        metrics.insert(
            "pseudo_log_likelihood".into(),
            self.model
                .pseudo_log_likelihood(&t.states[..eval * l], Some(&t.weights[..eval])),
        );
        if let Some(v) = &self.valid_set {
            let e = PLL_ROWS.min(v.rows);
            metrics.insert(
                "val_pseudo_log_likelihood".into(),
                self.model
                    .pseudo_log_likelihood(&v.states[..e * l], Some(&v.weights[..e])),
            );
        }
        let configurations = self.model.configurations();
        let last = self.epoch >= self.settings.epochs;
        if configurations <= EXACT_EVERY_EPOCH || (last && configurations <= EXACT_FINAL) {
            let exact = self.model.enumerate()?;
            metrics.insert("log_z".into(), exact.log_z);
            metrics.insert(
                "log_likelihood".into(),
                self.model
                    .log_likelihood(&t.states, Some(&t.weights), exact.log_z),
            );
            if let Some(v) = &self.valid_set {
                metrics.insert(
                    "val_log_likelihood".into(),
                    self.model
                        .log_likelihood(&v.states, Some(&v.weights), exact.log_z),
                );
            }
        }
        metrics.insert("m_eff".into(), t.m_eff());
        Ok(())
    }
}

fn sequence_weights_of(s: Sequences, identity: f64) -> Sequences {
    let (rows, sites) = (s.rows, s.sites);
    weigh(s.states, rows, sites, identity).expect("threshold checked on the training set")
}

/// The replicas of `pt`, seen through the engine's generic tempering.
struct Replicas<'a> {
    trainer: &'a mut PottsTrainer,
    chains_per_replica: usize,
}

impl TemperedChains for Replicas<'_> {
    fn chains_per_replica(&self) -> usize {
        self.chains_per_replica
    }

    fn sweep(&mut self, replica: usize, beta: f64) -> Result<()> {
        let t = &mut *self.trainer;
        let span = self.chains_per_replica * t.model.sites;
        let betas = vec![beta as f32; self.chains_per_replica];
        let key = t.rng_sweep.next_key();
        t.sampler.sweeps(
            &t.model,
            &mut t.chains[replica * span..(replica + 1) * span],
            &betas,
            t.options.update,
            &[key],
        )
    }

    fn energies(&mut self, replica: usize) -> Result<Vec<f64>> {
        let t = &self.trainer;
        let span = self.chains_per_replica * t.model.sites;
        Ok(crate::potts::sweep::energies(
            &t.model,
            &t.chains[replica * span..(replica + 1) * span],
        ))
    }

    fn swap(&mut self, a: usize, b: usize, mask: &[bool]) -> Result<()> {
        let t = &mut *self.trainer;
        let l = t.model.sites;
        let span = self.chains_per_replica * l;
        for (r, &m) in mask.iter().enumerate() {
            if m {
                for i in 0..l {
                    t.chains.swap(a * span + r * l + i, b * span + r * l + i);
                }
            }
        }
        Ok(())
    }
}

impl EpochSteps for PottsTrainer {
    const DIVERGENCE_HINT: &'static str = "lower the learning rate or add l2";

    fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// One full-batch update: k sweeps of the chains, then one gradient step.
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
        let (l, q) = (self.model.sites, self.model.q);
        let model_freq =
            Frequencies::from_states(self.model_chains(), self.settings.chains, l, q, None, 0.0);
        self.step(&model_freq, learning_rate)?;
        self.model_freq = Some(model_freq);
        let replicas = self.settings.betas.len().max(1);
        Ok(Some(
            (self.settings.chains * replicas * self.settings.k) as f64,
        ))
    }

    fn end_epoch(&mut self) {
        self.epoch += 1;
    }

    /// The metrics describe the chains that produced this update's gradient.
    fn epoch_metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        let model_freq = self
            .model_freq
            .as_ref()
            .ok_or_else(|| EngineError::Internal("metrics before the first update".into()))?;
        self.metrics(model_freq, metrics)
    }

    fn tempering(&self) -> Option<&ParallelTempering> {
        self.tempering.as_ref()
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    fn save_checkpoint(&self) -> Result<Vec<u8>> {
        super::checkpoint::save(self)
    }

    fn save_model(&self) -> Result<Vec<u8>> {
        let mut meta = training_metadata(
            self.epoch,
            self.seed,
            &self.settings,
            &self.model_spec,
            &self.train_spec,
            self.sampler.backend().name(),
        );
        meta.insert("pseudocount".into(), self.pseudocount.to_string());
        meta.insert("m_eff".into(), self.train_set.m_eff().to_string());
        meta.insert("notes".into(), self.notes.join("; "));
        if self.from_fasta {
            meta.insert(
                "alphabet".into(),
                String::from_utf8_lossy(crate::data::fasta::PROTEIN_ALPHABET).into_owned(),
            );
        }
        crate::potts::file::to_bytes(&self.model, &meta)
    }
}
