//! Model-independent statistics shared by the estimators and `observe`: log-space sums,
//! histograms with mode detection, MCMC diagnostics (ESS, R-hat), and summaries.

pub mod histogram;
pub mod logspace;
pub mod mcmc;
pub mod summary;

pub use histogram::{Histogram, Mode};
pub use logspace::{log_mean_exp, log_sum_exp, softplus, LogSumExp};
pub use mcmc::{autocovariance, effective_sample_size, split_r_hat};
pub use summary::{quantile_sorted, StatisticSummary};
