//! `ebm-server`: the gRPC services, the scheduler and workers, the store, metrics and
//! configuration.
