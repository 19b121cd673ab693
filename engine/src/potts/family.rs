//! The Potts family (Boltzmann-machine DCA) behind [`Family`]: the request checks of
//! `options`, and [`PottsTrainer`] with its sweeps on the cpu or a CubeCL device.

use super::checkpoint::resume_with_sampler;
use super::options;
use super::sampler::{CpuPottsSampler, PottsSampler};
use super::trainer::PottsTrainer;
use crate::backend::{on_backend, BackendKind};
use crate::data::Dataset;
use crate::error::Result;
use crate::family::{BoxedTrainer, Family, Start, TrainRequest};
use crate::spec::{DataShape, ModelType};
use crate::tensors::TensorReader;
use std::collections::BTreeMap;

pub struct PottsFamily;

/// The sweeps of Potts training on `backend`.
fn sampler(backend: BackendKind) -> Result<Box<dyn PottsSampler>> {
    on_backend!(backend,
        cpu => Ok(Box::new(CpuPottsSampler)),
        cube::<R> => Ok(Box::new(crate::backend::cube::samplers::CubePottsSampler::<R>::new()?)),
    )
}

impl Family for PottsFamily {
    fn describe_file(
        &self,
        _model_type: ModelType,
        file: &TensorReader,
    ) -> Result<BTreeMap<String, u64>> {
        let model = super::file::from_reader(file)?;
        Ok(BTreeMap::from([
            ("sites".into(), model.sites as u64),
            ("q".into(), model.q as u64),
        ]))
    }

    fn validate(&self, request: &TrainRequest, data: &DataShape) -> Result<()> {
        options::validate(request.model, request.train, data)
    }

    fn check_values(&self, request: &TrainRequest, data: &Dataset) -> Result<()> {
        options::check_values(request.model, request.train, data)
    }

    fn trainer(&self, request: &TrainRequest, data: Dataset, start: Start) -> Result<BoxedTrainer> {
        let (model, train, seed) = (request.model, request.train, request.seed);
        let sampler = sampler(request.backend)?;
        Ok(match start {
            Start::Fresh => Box::new(PottsTrainer::with_sampler(
                model, train, seed, data, sampler,
            )?),
            Start::InitialModel(bytes) => {
                let mut t = PottsTrainer::with_sampler(model, train, seed, data, sampler)?;
                t.initialize_from(bytes)?;
                Box::new(t)
            }
            Start::Checkpoint(bytes) => Box::new(resume_with_sampler(
                model, train, seed, data, bytes, sampler,
            )?),
        })
    }
}
