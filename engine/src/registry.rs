//! The one place that maps a model type to its family: the facades look families up here
//! and talk to them only through [`Family`]. A new family adds its arm.

use crate::family::Family;
use crate::lattice::family::LatticeFamily;
use crate::potts::family::PottsFamily;
use crate::rbm::family::RbmFamily;
use crate::spec::ModelType;

/// The family that trains models of `model_type`.
pub fn family(model_type: ModelType) -> &'static dyn Family {
    match model_type {
        ModelType::BernoulliRbm | ModelType::GaussianRbm => &RbmFamily,
        ModelType::Potts => &PottsFamily,
        ModelType::LatticeIsing => &LatticeFamily,
    }
}
