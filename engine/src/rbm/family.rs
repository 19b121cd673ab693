//! The RBM families (Bernoulli and Gaussian visible units) behind [`Family`]: the request
//! checks of `super`, and [`RbmTrainer`] on the cpu backend or a CubeCL device.

use super::checkpoint;
use super::trainer::RbmTrainer;
use crate::backend::cpu::CpuBackend;
use crate::backend::{on_backend, Backend};
use crate::data::{Dataset, ValueKind};
use crate::error::Result;
use crate::family::{BoxedTrainer, Family, Start, TrainRequest};
use crate::spec::{DataShape, ModelType};
use crate::tensors::TensorReader;
use std::collections::BTreeMap;

pub struct RbmFamily;

/// An [`RbmTrainer`] on `backend`, started from `start`.
fn start_on<B: Backend>(
    backend: B,
    request: &TrainRequest,
    data: Dataset,
    start: Start,
) -> Result<BoxedTrainer> {
    let mut t = RbmTrainer::new(backend, request.model, request.train, request.seed, data)?;
    match start {
        Start::Fresh => {}
        Start::InitialModel(bytes) => t.initialize_from(bytes)?,
        Start::Checkpoint(bytes) => checkpoint::restore(&mut t, bytes)?,
    }
    Ok(Box::new(t))
}

impl Family for RbmFamily {
    fn describe_file(
        &self,
        model_type: ModelType,
        file: &TensorReader,
    ) -> Result<BTreeMap<String, u64>> {
        let model = super::file::rbm_from_reader_typed(file, model_type)?;
        Ok(BTreeMap::from([
            ("visible".into(), model.visible as u64),
            ("hidden".into(), model.hidden as u64),
        ]))
    }

    fn validate(&self, request: &TrainRequest, data: &DataShape) -> Result<()> {
        let r = request;
        super::validate(r.model_type, r.model, r.train, r.settings, data)
    }

    /// Bernoulli visible units need values in [0, 1]; Gaussian ones take any real value.
    fn values_need_checking(&self, model_type: ModelType, kind: ValueKind) -> bool {
        model_type == ModelType::BernoulliRbm && kind == ValueKind::Real
    }

    fn check_values(&self, request: &TrainRequest, data: &Dataset) -> Result<()> {
        super::check_values(request.model_type, data)
    }

    fn trainer(&self, request: &TrainRequest, data: Dataset, start: Start) -> Result<BoxedTrainer> {
        on_backend!(request.backend,
            cpu => start_on(CpuBackend::new(), request, data, start),
            cube::<R> => {
                let device = crate::backend::cube::CubeBackend::<R>::new()?;
                start_on(device, request, data, start)
            },
        )
    }
}
