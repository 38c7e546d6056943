//! Caches that make installs through pipgate faster than from the upstream itself.
//!
//! - [`pages`]: index pages, resolved by the owner rule, kept in memory (weighed by bytes) and
//!   on disk ([`page_disk`]), each rendered once per version into every representation
//!   ([`rendered`]); see the module for the freshness flow.
//! - [`files`]: artifacts on disk, content-addressed by sha256, verified before they are
//!   committed, filled once however many clients ask, evicted least-recently-used.
//! - [`root`]: the root project list, merged from every upstream and kept for `index_ttl`.
//! - [`metadata`]: PEP 658 metadata read out of wheels whose upstream offers none.
//! - [`shared`]: the second tier on object storage that replicas and sidecars share.

pub mod dir_lock;
pub mod entry;
pub mod files;
pub mod gzip;
pub mod metadata;
pub mod page_disk;
pub mod pages;
pub mod rendered;
pub mod root;
pub mod shared;

pub use pages::{BuildTimes, CacheResult, Freshness, PageCache};
pub use root::RootCache;
