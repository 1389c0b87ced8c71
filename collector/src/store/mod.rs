//! The store on disk: pending rows per partition, and Parquet files written
//! atomically (temporary name, fsync, rename, fsync of the folder).

pub mod compact;
pub mod recent;
pub mod ship;
pub mod writer;

pub use recent::{Dedupe, RecentSpans};
pub use writer::{WriteError, write_partition, write_partition_after};
