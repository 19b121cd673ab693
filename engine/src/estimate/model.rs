//! Model files as the estimators see them: loads a safetensors model (DESIGN tensor
//! names) into the parameters of one family, and builds that family's chains, base
//! model, exact ln Z and data start states.

use super::ais::Hooks;
use super::chains::gaussian::{GaussianRbmChains, GaussianRbmParams};
use super::chains::lattice::{LatticeChains, LatticeParams};
use super::chains::potts::{PottsChains, PottsParams};
use super::chains::rbm::{base_rate_bias, RbmChains, RbmParams};
use super::chains::{check_state, ModelChains};
use super::exact::{
    check_discrete_enumerable, check_rbm_enumerable, discrete_log_z, rbm_log_z, LatticeEnumeration,
};
use super::kaufman::lattice_ising_log_z;
use crate::backend::VisibleUnits;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::rbm::file::rbm_from_bytes;
use crate::tensors::TensorReader;

/// Upper bound on the parameters of a Potts model the estimators load (L q)^2.
const MAX_POTTS_COUPLINGS: usize = 1 << 28;

#[derive(Clone, Debug, PartialEq)]
pub enum LoadedModel {
    BernoulliRbm(RbmParams),
    GaussianRbm(GaussianRbmParams),
    LatticeIsing(LatticeParams),
    Potts(PottsParams),
}

/// Reads a model file.
pub fn load_model(bytes: &[u8]) -> Result<LoadedModel, EngineError> {
    let file = TensorReader::parse(bytes, "the model file")?;
    match file.meta("type").unwrap_or("") {
        "bernoulli_rbm" | "gaussian_rbm" => {
            let m = rbm_from_bytes(bytes)?;
            let rbm = RbmParams {
                visible: m.visible,
                hidden: m.hidden,
                weights: m.w,
                visible_bias: m.b,
                hidden_bias: m.c,
            };
            Ok(match m.units {
                VisibleUnits::Bernoulli => LoadedModel::BernoulliRbm(rbm),
                VisibleUnits::Gaussian => LoadedModel::GaussianRbm(GaussianRbmParams {
                    sigma: m.sigma.unwrap_or_else(|| vec![1.0; rbm.visible]),
                    transform: m.transform.map(|t| (t.mean, t.std)),
                    rbm,
                }),
            })
        }
        "lattice_ising" => {
            let coupling = file.finite_f32("J", Some(&[]))?[0] as f64;
            let field = file.finite_f32("h", Some(&[]))?[0] as f64;
            let size = file
                .meta("size")
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&s| (2..=65_536).contains(&s))
                .ok_or_else(|| {
                    EngineError::InvalidInput(
                        "a lattice_ising model file needs metadata \"size\" = L (2..=65536)".into(),
                    )
                })?;
            Ok(LoadedModel::LatticeIsing(LatticeParams {
                size,
                coupling,
                field,
            }))
        }
        "potts" => {
            let shape = file.shape("J").ok_or_else(|| {
                EngineError::InvalidInput(
                    "a potts model file needs tensor \"J\" [L, q, L, q]".into(),
                )
            })?;
            let [l, q, l2, q2] = shape[..] else {
                return Err(EngineError::InvalidInput(format!(
                    "tensor \"J\" must be [L, q, L, q], got {shape:?}"
                )));
            };
            if l != l2
                || q != q2
                || l == 0
                || !(2..=255).contains(&q)
                || (l * q).saturating_mul(l * q) > MAX_POTTS_COUPLINGS
            {
                return Err(EngineError::InvalidInput(format!(
                    "tensor \"J\" must be [L, q, L, q] with 2 <= q <= 255 and (L q)^2 <= {MAX_POTTS_COUPLINGS}, got {shape:?}"
                )));
            }
            let couplings = file.finite_f32("J", Some(&[l, q, l, q]))?;
            let fields = file.finite_f32("h", Some(&[l, q]))?;
            Ok(LoadedModel::Potts(PottsParams {
                sites: l,
                q,
                couplings,
                fields,
            }))
        }
        "" => Err(EngineError::InvalidInput(
            "the model file has no \"type\" metadata".into(),
        )),
        other => Err(EngineError::InvalidInput(format!(
            "unknown model type {other:?} in the model file"
        ))),
    }
}

impl LoadedModel {
    pub fn type_name(&self) -> &'static str {
        match self {
            LoadedModel::BernoulliRbm(_) => "bernoulli_rbm",
            LoadedModel::GaussianRbm(_) => "gaussian_rbm",
            LoadedModel::LatticeIsing(_) => "lattice_ising",
            LoadedModel::Potts(_) => "potts",
        }
    }

    /// Width of one state (visible units, sites).
    pub fn units(&self) -> usize {
        match self {
            LoadedModel::BernoulliRbm(p) => p.visible,
            LoadedModel::GaussianRbm(p) => p.rbm.visible,
            LoadedModel::LatticeIsing(p) => p.sites(),
            LoadedModel::Potts(p) => p.sites,
        }
    }

    /// Chains on the AIS path from the family's base model. RBMs take the base-rate
    /// biases from `data` when given (Salakhutdinov & Murray), else the model's own b.
    pub fn chains(
        &self,
        chains: usize,
        data: Option<&Dataset>,
    ) -> Result<Box<dyn ModelChains>, EngineError> {
        Ok(match self {
            LoadedModel::BernoulliRbm(p) => Box::new(RbmChains::new(
                p.clone(),
                self.rbm_base_bias(data)?,
                chains,
            )?),
            LoadedModel::GaussianRbm(p) => Box::new(GaussianRbmChains::new(p.clone(), chains)?),
            LoadedModel::LatticeIsing(p) => Box::new(LatticeChains::new(*p, chains)?),
            LoadedModel::Potts(p) => Box::new(PottsChains::new(p.clone(), chains)?),
        })
    }

    /// Visible biases of a Bernoulli RBM's AIS base model: the data's base rates when
    /// `data` is given (Salakhutdinov & Murray), else the model's own b.
    pub fn rbm_base_bias(&self, data: Option<&Dataset>) -> Result<Vec<f32>, EngineError> {
        let LoadedModel::BernoulliRbm(p) = self else {
            return Err(EngineError::Internal(
                "base-rate biases of a model that is not a bernoulli_rbm".into(),
            ));
        };
        Ok(match data {
            Some(d) => {
                self.check_data_width(d)?;
                base_rate_bias(&d.values, d.rows, p.visible)
            }
            None => p.visible_bias.clone(),
        })
    }

    fn check_data_width(&self, data: &Dataset) -> Result<(), EngineError> {
        if data.cols != self.units() {
            return Err(EngineError::InvalidInput(format!(
                "the data set has {} columns but the {} model has {} units",
                data.cols,
                self.type_name(),
                self.units()
            )));
        }
        if data.rows == 0 {
            return Err(EngineError::InvalidInput("the data set has no rows".into()));
        }
        Ok(())
    }

    /// Data rows as chain states in the model's encoding: RBM values >= 0.5 count as on;
    /// lattice spins may be given as ±1 or 0/1; Potts rows are state indices.
    pub fn data_states(
        &self,
        data: &Dataset,
        chains: &dyn ModelChains,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        self.check_data_width(data)?;
        let encode = |x: f32| -> f32 {
            match self {
                LoadedModel::BernoulliRbm(_) => (x >= 0.5) as u8 as f32,
                LoadedModel::LatticeIsing(_) if x == 0.0 => -1.0,
                // An unknown residue of a FASTA upload (NaN): the gap state, as training's
                // default `unknown_residues = "gap"` reads it (see `unknown_residues`).
                LoadedModel::Potts(_) if x.is_nan() => 0.0,
                _ => x,
            }
        };
        data.values
            .chunks_exact(data.cols)
            .map(|row| {
                let state: Vec<f32> = row.iter().map(|&x| encode(x)).collect();
                check_state(chains.encoding(), chains.units(), &state)?;
                Ok(state)
            })
            .collect()
    }

    /// How many values of `data` are unknown residues that `data_states` reads as the gap
    /// state (potts only; 0 for other models).
    pub fn unknown_residues(&self, data: &Dataset) -> usize {
        match self {
            LoadedModel::Potts(_) => data.values.iter().filter(|x| x.is_nan()).count(),
            _ => 0,
        }
    }

    /// Refuses an exact request that is too large, before any work.
    pub fn check_exact(&self) -> Result<(), EngineError> {
        match self {
            LoadedModel::BernoulliRbm(p) => check_rbm_enumerable(p),
            LoadedModel::GaussianRbm(p) if p.rbm.hidden > super::exact::MAX_RBM_BITS => Err(EngineError::InvalidInput(format!(
                "exact ln Z of a gaussian_rbm sums over the hidden layer, which has {} units here; at most {} are allowed: use method = \"ais\"",
                p.rbm.hidden,
                super::exact::MAX_RBM_BITS
            ))),
            LoadedModel::GaussianRbm(_) => Ok(()),
            LoadedModel::LatticeIsing(p) => {
                if kaufman_applies(p) {
                    Ok(())
                } else {
                    check_discrete_enumerable(&LatticeEnumeration(*p)).map_err(|_| {
                        EngineError::InvalidInput(format!(
                            "exact ln Z of a lattice is known in closed form only at zero field with a \
                             ferromagnetic coupling (or any coupling on an even torus); with h = {} and \
                             J = {} the {}x{} lattice is too large to enumerate (at most 22 sites); use method = \"ais\"",
                            p.field, p.coupling, p.size, p.size
                        ))
                    })
                }
            }
            LoadedModel::Potts(p) => check_discrete_enumerable(p),
        }
    }

    /// Exact ln Z (enumeration, or Kaufman's closed form for the zero-field lattice).
    pub fn exact_log_z(&self, hooks: &mut Hooks<'_>) -> Result<f64, EngineError> {
        self.check_exact()?;
        match self {
            LoadedModel::BernoulliRbm(p) => rbm_log_z(p, hooks),
            LoadedModel::GaussianRbm(p) => p.exact_log_z(hooks),
            LoadedModel::LatticeIsing(p) if kaufman_applies(p) => {
                (hooks.progress)(1.0);
                Ok(lattice_ising_log_z(p.size, p.size, p.coupling.abs()))
            }
            LoadedModel::LatticeIsing(p) => discrete_log_z(&LatticeEnumeration(*p), hooks),
            LoadedModel::Potts(p) => discrete_log_z(&p.clone().symmetrised(), hooks),
        }
    }
}

/// Kaufman's formula holds at zero field for J >= 0, and for J < 0 on an even torus
/// (flipping one sublattice maps J to -J); it needs L >= 3 so that the four neighbours
/// are distinct.
fn kaufman_applies(p: &LatticeParams) -> bool {
    p.field == 0.0 && p.size >= 3 && (p.coupling >= 0.0 || p.size.is_multiple_of(2))
}
