//! Builds small, valid wheels for tests: a module whose `ORIGIN` says where it came from, with
//! METADATA, WHEEL and a RECORD whose hashes are right, so pip and uv install it for real.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A built wheel.
#[derive(Clone, Debug)]
pub struct Wheel {
    pub filename: String,
    pub bytes: Vec<u8>,
    /// The wheel's METADATA file, served as its PEP 658 `.metadata`.
    pub metadata: Vec<u8>,
}

/// A pure-Python wheel of `name` at `version` whose module holds `ORIGIN = origin`.
pub fn build(name: &str, version: &str, origin: &str) -> Wheel {
    build_with(name, version, origin, &[], 0)
}

/// The same, with `Requires-Dist` lines and `payload` bytes of incompressible data (a wheel as
/// large as real ones with compiled code), written before the `.dist-info` files as wheel
/// builders do.
pub fn build_with(name: &str, version: &str, origin: &str, requires: &[&str], payload: usize) -> Wheel {
    let dist = name.replace(['-', '.'], "_").to_lowercase();
    let dist_info = format!("{dist}-{version}.dist-info");
    let requires: String = requires.iter().map(|r| format!("Requires-Dist: {r}\n")).collect();
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package from {origin}\n{requires}\n"
    );
    let mut seed = 0x9E37_79B9u32 ^ (payload as u32) ^ version.len() as u32;
    let noise: Vec<u8> = (0..payload)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if payload > 0 {
        files.push((format!("{dist}/_payload.bin"), noise));
    }
    files.extend([
        (format!("{dist}/__init__.py"), format!("ORIGIN = {origin:?}\n").into_bytes()),
        (format!("{dist_info}/METADATA"), metadata.clone().into_bytes()),
        (
            format!("{dist_info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: pipgate-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ]);
    let mut record = String::new();
    for (path, content) in &files {
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(content));
        record.push_str(&format!("{path},sha256={digest},{}\n", content.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (path, content) in
        files.iter().chain(std::iter::once(&(format!("{dist_info}/RECORD"), record.into_bytes())))
    {
        zip.start_file(path.as_str(), options).unwrap();
        zip.write_all(content).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    Wheel { filename: format!("{dist}-{version}-py3-none-any.whl"), bytes, metadata: metadata.into_bytes() }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
