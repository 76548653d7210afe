//! The model commands' MPI start (the library's), for `generate` and `eval passkey`.

pub use ringattn::launch::mpi_rank::model_world;
