//! The store on disk: pending rows per partition, and Parquet files written
//! atomically (temporary name, fsync, rename, fsync of the folder).

pub mod compact;
pub mod ship;
pub mod writer;

pub use writer::{WriteError, write_partition};
