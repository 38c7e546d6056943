//! The Python packaging domain, free of I/O: names, media types, the page model, URL
//! rewriting, and a wheel's METADATA read out of its zip. Nothing here knows about sockets,
//! disks or clocks, so it is tested and benched alone.

pub mod media;
pub mod name;
pub mod rewrite;
pub mod simple;
pub mod wheel_metadata;

pub use media::{MediaType, NotAcceptable, negotiate};
pub use name::{InvalidName, ProjectName};
