//! The lattice Ising family behind [`Family`]: the request checks of `options`, and
//! [`LatticeTrainer`] with its sweeps on the cpu or a CubeCL device.

use super::options;
use super::sampler::{CpuLatticeSampler, LatticeSampler};
use super::trainer::LatticeTrainer;
use crate::backend::{on_backend, BackendKind};
use crate::data::Dataset;
use crate::error::Result;
use crate::family::{BoxedTrainer, Family, Start, TrainRequest};
use crate::spec::{DataShape, ModelType};
use crate::tensors::TensorReader;
use std::collections::BTreeMap;

pub struct LatticeFamily;

/// The sweeps of lattice training on `backend`.
fn sampler(backend: BackendKind) -> Result<Box<dyn LatticeSampler>> {
    on_backend!(backend,
        cpu => Ok(Box::new(CpuLatticeSampler)),
        cube::<R> => Ok(Box::new(crate::backend::cube::samplers::CubeLatticeSampler::<R>::new()?)),
    )
}

impl Family for LatticeFamily {
    fn describe_file(
        &self,
        _model_type: ModelType,
        file: &TensorReader,
    ) -> Result<BTreeMap<String, u64>> {
        let model = super::file::from_reader(file)?;
        Ok(BTreeMap::from([("size".into(), model.size as u64)]))
    }

    fn validate(&self, request: &TrainRequest, data: &DataShape) -> Result<()> {
        options::validate(request.model, request.train, data)
    }

    fn check_values(&self, _request: &TrainRequest, data: &Dataset) -> Result<()> {
        options::check_values(data)
    }

    fn trainer(&self, request: &TrainRequest, data: Dataset, start: Start) -> Result<BoxedTrainer> {
        let (model, train, seed) = (request.model, request.train, request.seed);
        let sampler = sampler(request.backend)?;
        Ok(match start {
            Start::Fresh => Box::new(LatticeTrainer::with_sampler(
                model, train, seed, data, sampler,
            )?),
            Start::InitialModel(bytes) => {
                let mut t = LatticeTrainer::with_sampler(model, train, seed, data, sampler)?;
                t.initialize_from(bytes)?;
                Box::new(t)
            }
            Start::Checkpoint(bytes) => Box::new(LatticeTrainer::resume_with_sampler(
                model, train, seed, data, bytes, sampler,
            )?),
        })
    }
}
