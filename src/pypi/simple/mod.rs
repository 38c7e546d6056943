//! The simple-API page model (PEP 503, 691, 592, 658/714, 700, 708, 740, 792).
//!
//! Upstream pages, HTML or JSON, are parsed into these types; client pages are rendered from
//! them, never copied from upstream. Every field a client may use passes through, and unknown
//! JSON keys are kept in `extra` maps so a newer upstream's additions survive the round trip.
//!
//! Parsed URLs are absolute (resolved against the page's URL, or its `<base href>`), with the
//! hash fragment moved into `hashes`: the rest of pipgate never resolves URLs again.

mod canonical_url;
mod filename;
mod hashes;
mod html;
mod input_text;
mod json;
mod json_text;

pub use filename::version_from_filename;
pub use hashes::Hashes;
pub use html::{
    parse_project_html, parse_root_html, render_project_html, render_project_html_with, render_root_html,
};
pub use json::{
    JsonPiece, json_size_hint, parse_project_json, parse_root_json, render_project_json,
    render_project_json_piece, render_project_json_with, render_root_json,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use input_text::{InputText, TextOrValue};

/// What a renderer shows of a file where a served page differs from the model: its URL and its
/// core metadata. Pages are rendered through a view instead of from a rewritten copy, since
/// copying a page of thousands of files cost more than rendering it.
pub trait FileView {
    fn url<'f>(&self, file: &'f DistFile) -> std::borrow::Cow<'f, str>;
    /// Appends the file's URL to `out` as a JSON string. A view whose URLs need no escaping
    /// writes them without making a `String` per file.
    fn push_json_url(&self, out: &mut Vec<u8>, file: &DistFile) {
        json_text::string(out, &self.url(file));
    }
    fn core_metadata<'f>(&self, file: &'f DistFile) -> Option<std::borrow::Cow<'f, CoreMetadata>>;
}

/// The model as it is.
pub struct AsIs;

impl FileView for AsIs {
    fn url<'f>(&self, file: &'f DistFile) -> std::borrow::Cow<'f, str> {
        std::borrow::Cow::Borrowed(&file.url)
    }

    fn core_metadata<'f>(&self, file: &'f DistFile) -> Option<std::borrow::Cow<'f, CoreMetadata>> {
        file.core_metadata.as_ref().map(std::borrow::Cow::Borrowed)
    }
}

/// The API version pipgate speaks to clients.
pub const API_VERSION: &str = "1.4";

/// One project's page: its files and project-level fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectPage {
    pub name: String,
    pub files: Vec<DistFile>,
    /// PEP 700. Derived from file names when the upstream does not send it (HTML, API 1.0).
    #[serde(default)]
    pub versions: Vec<String>,
    /// PEP 792.
    #[serde(rename = "project-status", default, skip_serializing_if = "Option::is_none")]
    pub project_status: Option<ProjectStatus>,
    /// PEP 708.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<String>,
    /// PEP 708.
    #[serde(rename = "alternate-locations", default, skip_serializing_if = "Vec::is_empty")]
    pub alternate_locations: Vec<String>,
    /// Written by the renderers with pipgate's own api-version, hence not serialized here.
    #[serde(default, skip_serializing)]
    pub meta: Meta,
    /// Top-level keys this version of pipgate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One distribution file of a project. Read by [`DistFile`]'s own `Deserialize` and written
/// through [`FileFields`] (below), under the keys PEP 691 and its successors give them.
#[derive(Debug, Clone, PartialEq)]
pub struct DistFile {
    pub filename: String,
    pub url: String,
    pub hashes: Hashes,
    pub requires_python: Option<Box<str>>,
    /// PEP 592: `false`, `true`, or the reason (which implies yanked).
    pub yanked: Yanked,
    /// PEP 658/714: whether (and with which hashes) a `.metadata` file sits beside this file.
    /// Read from `core-metadata`, else the legacy `dist-info-metadata` (PEP 714: the new key
    /// wins). Held once: the renderers write it under both keys, so old and new clients agree.
    /// Changed through [`DistFile::set_core_metadata`], which keeps `data-dist-info-metadata`
    /// as listed when it was held as the same value.
    pub core_metadata: Option<CoreMetadata>,
    pub gpg_sig: Option<bool>,
    /// PEP 700.
    pub size: Option<u64>,
    /// PEP 700.
    pub upload_time: Option<Box<str>>,
    /// PEP 740: URL of the provenance object.
    pub provenance: Option<Box<str>>,
    /// `data-dist-info-metadata`, as PyPI also spells the metadata key in JSON (the HTML
    /// attribute's name), passed through as listed: read it with
    /// [`DistFile::data_dist_info_metadata`]. Modelled rather than left in `extra`: PyPI lists
    /// it for nearly every file, and a generic JSON object per file cost several hundred bytes
    /// of a large page's memory and a tenth of its parse.
    data_dist_info: DataDistInfo,
    pub extra: UnknownKeys,
}

/// How a file's `data-dist-info-metadata` is held. PyPI lists it for nearly every file with the
/// same value as `core-metadata`: that case is a marker, not a second copy, which cost 64 of
/// each entry's bytes.
#[derive(Debug, Clone, PartialEq)]
enum DataDistInfo {
    Absent,
    /// Listed, equal to the file's `core_metadata` (which [`DistFile::set_core_metadata`]
    /// keeps true: it writes the value out before changing the metadata).
    SameAsCore,
    Listed(Box<ListedMetadata>),
}

/// A file entry as written by `Serialize`: the model's keys, `data-dist-info-metadata` as
/// listed, and unknown keys after them.
#[derive(Serialize)]
struct FileFields<'a> {
    filename: &'a str,
    url: &'a str,
    hashes: &'a Hashes,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    #[serde(skip_serializing_if = "Yanked::is_no")]
    yanked: &'a Yanked,
    #[serde(rename = "core-metadata", skip_serializing_if = "Option::is_none")]
    core_metadata: Option<&'a CoreMetadata>,
    #[serde(rename = "gpg-sig", skip_serializing_if = "Option::is_none")]
    gpg_sig: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provenance: Option<&'a str>,
    #[serde(rename = "data-dist-info-metadata", skip_serializing_if = "Option::is_none")]
    data_dist_info_metadata: Option<ListedRef<'a>>,
    #[serde(flatten)]
    extra: &'a UnknownKeys,
}

impl Serialize for DistFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FileFields {
            filename: &self.filename,
            url: &self.url,
            hashes: &self.hashes,
            requires_python: self.requires_python.as_deref(),
            yanked: &self.yanked,
            core_metadata: self.core_metadata.as_ref(),
            gpg_sig: self.gpg_sig,
            size: self.size,
            upload_time: self.upload_time.as_deref(),
            provenance: self.provenance.as_deref(),
            data_dist_info_metadata: self.data_dist_info_metadata(),
            extra: &self.extra,
        }
        .serialize(serializer)
    }
}

/// Keys of a file entry this version of pipgate does not know, in the order listed. Boxed:
/// nearly every entry has none, and an empty map held inline cost 72 of each entry's bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnknownKeys(Option<Box<Map<String, Value>>>);

impl UnknownKeys {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|keys| keys.is_empty())
    }

    pub fn insert(&mut self, key: String, value: Value) {
        self.0.get_or_insert_default().insert(key, value);
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.as_ref()?.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().flat_map(|keys| keys.iter())
    }

    fn heap_bytes(&self) -> usize {
        self.0.as_deref().map_or(0, |keys| size_of::<Map<String, Value>>() + PER_ALLOCATION + map_bytes(keys))
    }
}

impl Serialize for UnknownKeys {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// A key's value, or `null` when it is not listed (as `serde_json::Value` indexes).
impl std::ops::Index<&str> for UnknownKeys {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        static ABSENT: Value = Value::Null;
        self.get(key).unwrap_or(&ABSENT)
    }
}

/// A metadata value passed through as an upstream listed it: the usual forms compactly, any
/// other JSON as it was (so an odd upstream value neither fails the page nor changes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ListedMetadata {
    Known(CoreMetadata),
    Other(Value),
}

/// A [`ListedMetadata`] borrowed from its file, as [`DistFile::data_dist_info_metadata`] reads
/// it: whichever way the file holds it, without a copy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ListedRef<'a> {
    Known(&'a CoreMetadata),
    Other(&'a Value),
}

impl<'de> Deserialize<'de> for ListedMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListedVisitor;
        impl<'de> serde::de::Visitor<'de> for ListedVisitor {
            type Value = ListedMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, flag: bool) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Known(CoreMetadata::Flag(flag)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ListedMetadata, A::Error> {
                // Borrowed while every value is a string (the usual table of hashes): no map,
                // and no String per key and digest.
                let mut entries: Vec<(InputText<'de>, TextOrValue<'de>)> = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                if entries.iter().all(|(_, value)| matches!(value, TextOrValue::Text(_))) {
                    let mut hashes = Hashes::new();
                    for (InputText(name), digest) in &entries {
                        if let TextOrValue::Text(digest) = digest {
                            hashes.insert(name, digest);
                        }
                    }
                    return Ok(ListedMetadata::Known(CoreMetadata::Hashes(hashes)));
                }
                let entries =
                    entries.into_iter().map(|(InputText(key), value)| (key.into_owned(), value.into_value()));
                Ok(ListedMetadata::Other(Value::Object(entries.collect())))
            }
            fn visit_str<E>(self, text: &str) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Other(Value::String(text.to_owned())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Other(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Other(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Other(n.into()))
            }
            fn visit_unit<E>(self) -> Result<ListedMetadata, E> {
                Ok(ListedMetadata::Other(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ListedMetadata, A::Error> {
                let items = Vec::<Value>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ListedMetadata::Other(Value::Array(items)))
            }
        }
        deserializer.deserialize_any(ListedVisitor)
    }
}

/// PEP 592 yank state: `false`, `true`, or a reason (which implies yanked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Yanked {
    Flag(bool),
    Reason(Box<str>),
}

impl Default for Yanked {
    fn default() -> Self {
        Yanked::Flag(false)
    }
}

impl Yanked {
    pub fn is_no(&self) -> bool {
        matches!(self, Yanked::Flag(false))
    }
}

/// The page's `meta` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(rename = "api-version")]
    pub api_version: String,
    /// Other keys (for example PyPI's `_last-serial`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { api_version: "1.0".to_owned(), extra: Map::new() }
    }
}

/// PEP 658 metadata availability: a bare flag, or the hashes of the metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CoreMetadata {
    Flag(bool),
    Hashes(Hashes),
}

/// The keys of a file entry, read without allocating for the known ones.
enum FileKey {
    Filename,
    Url,
    Hashes,
    RequiresPython,
    Yanked,
    CoreMetadata,
    DistInfoMetadata,
    GpgSig,
    Size,
    UploadTime,
    Provenance,
    DataDistInfoMetadata,
    Other(String),
}

impl<'de> Deserialize<'de> for FileKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = FileKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a file entry key")
            }
            fn visit_str<E>(self, key: &str) -> Result<FileKey, E> {
                Ok(match key {
                    "filename" => FileKey::Filename,
                    "url" => FileKey::Url,
                    "hashes" => FileKey::Hashes,
                    "requires-python" => FileKey::RequiresPython,
                    "yanked" => FileKey::Yanked,
                    "core-metadata" => FileKey::CoreMetadata,
                    "dist-info-metadata" => FileKey::DistInfoMetadata,
                    "gpg-sig" => FileKey::GpgSig,
                    "size" => FileKey::Size,
                    "upload-time" => FileKey::UploadTime,
                    "provenance" => FileKey::Provenance,
                    "data-dist-info-metadata" => FileKey::DataDistInfoMetadata,
                    other => FileKey::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A file entry read key by key, unknown keys into `extra`: serde's `flatten` would buffer
/// every entry whole before reading it, which dominated the parse of large pages.
impl<'de> Deserialize<'de> for DistFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FileVisitor;
        impl<'de> serde::de::Visitor<'de> for FileVisitor {
            type Value = DistFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a file entry (an object with filename and url)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<DistFile, A::Error> {
                use serde::de::Error;
                let (mut filename, mut url, mut legacy_metadata, mut data_dist_info) =
                    (None, None, None, None);
                let mut file = DistFile::new(String::new(), String::new());
                while let Some(key) = map.next_key::<FileKey>()? {
                    match key {
                        FileKey::Filename => filename = Some(map.next_value()?),
                        FileKey::Url => url = Some(map.next_value()?),
                        FileKey::Hashes => {
                            file.hashes = map.next_value::<Option<Hashes>>()?.unwrap_or_default()
                        }
                        FileKey::RequiresPython => file.requires_python = map.next_value()?,
                        FileKey::Yanked => file.yanked = map.next_value()?,
                        FileKey::CoreMetadata => file.core_metadata = map.next_value()?,
                        FileKey::DistInfoMetadata => legacy_metadata = map.next_value()?,
                        FileKey::GpgSig => file.gpg_sig = map.next_value()?,
                        FileKey::Size => file.size = map.next_value()?,
                        FileKey::UploadTime => file.upload_time = map.next_value()?,
                        FileKey::Provenance => file.provenance = map.next_value()?,
                        FileKey::DataDistInfoMetadata => data_dist_info = map.next_value()?,
                        FileKey::Other(key) => {
                            file.extra.insert(key, map.next_value()?);
                        }
                    }
                }
                file.filename = filename.ok_or_else(|| A::Error::missing_field("filename"))?;
                file.url = url.ok_or_else(|| A::Error::missing_field("url"))?;
                file.core_metadata = file.core_metadata.or(legacy_metadata);
                file.set_data_dist_info_metadata(data_dist_info);
                Ok(file)
            }
        }
        deserializer.deserialize_map(FileVisitor)
    }
}

// `Yanked` and `CoreMetadata` are read by visitors rather than as untagged enums: an untagged
// enum buffers every value before trying its variants, and a large page has thousands of them.

impl<'de> Deserialize<'de> for Yanked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct YankedVisitor;
        impl serde::de::Visitor<'_> for YankedVisitor {
            type Value = Yanked;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean or a reason")
            }
            fn visit_bool<E>(self, yanked: bool) -> Result<Yanked, E> {
                Ok(Yanked::Flag(yanked))
            }
            fn visit_str<E>(self, reason: &str) -> Result<Yanked, E> {
                Ok(Yanked::Reason(reason.into()))
            }
            fn visit_string<E>(self, reason: String) -> Result<Yanked, E> {
                Ok(Yanked::Reason(reason.into_boxed_str()))
            }
            /// `null`: not yanked, as an absent key.
            fn visit_unit<E>(self) -> Result<Yanked, E> {
                Ok(Yanked::Flag(false))
            }
        }
        deserializer.deserialize_any(YankedVisitor)
    }
}

impl<'de> Deserialize<'de> for CoreMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CoreMetadataVisitor;
        impl<'de> serde::de::Visitor<'de> for CoreMetadataVisitor {
            type Value = CoreMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean or a table of hashes")
            }
            fn visit_bool<E>(self, available: bool) -> Result<CoreMetadata, E> {
                Ok(CoreMetadata::Flag(available))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CoreMetadata, A::Error> {
                Hashes::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(CoreMetadata::Hashes)
            }
        }
        deserializer.deserialize_any(CoreMetadataVisitor)
    }
}

impl CoreMetadata {
    pub fn is_available(&self) -> bool {
        !matches!(self, CoreMetadata::Flag(false))
    }
}

/// PEP 792 project status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The root page: the names of all projects an index holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectList {
    pub names: Vec<String>,
}

/// Why an upstream body is not a simple page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("invalid JSON simple page: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid HTML simple page: {0}")]
    Html(String),
    #[error("file {filename:?} has an invalid URL {url:?}: {source}")]
    BadUrl { filename: String, url: String, source: url::ParseError },
    #[error("the page declares api-version {0:?}; only major version 1 is understood")]
    UnsupportedVersion(String),
}

/// An allocation's bookkeeping and rounding, roughly: part of every estimate of held bytes.
const PER_ALLOCATION: usize = 16;

fn text_bytes(text: &str) -> usize {
    if text.is_empty() { 0 } else { text.len() + PER_ALLOCATION }
}

/// Heap bytes of a JSON value kept as it was (an estimate: map and vector overheads).
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text_bytes(text),
        Value::Array(items) => {
            items.iter().map(|item| size_of::<Value>() + value_bytes(item)).sum::<usize>() + PER_ALLOCATION
        }
        Value::Object(map) => map_bytes(map),
        _ => 0,
    }
}

/// Heap bytes of a map of unknown keys: entries, their index, keys and values.
fn map_bytes(map: &Map<String, Value>) -> usize {
    if map.is_empty() {
        return 0;
    }
    map.iter()
        .map(|(key, value)| size_of::<Value>() + 32 + text_bytes(key) + value_bytes(value))
        .sum::<usize>()
        + 2 * PER_ALLOCATION
}

impl CoreMetadata {
    fn heap_bytes(&self) -> usize {
        match self {
            CoreMetadata::Flag(_) => 0,
            CoreMetadata::Hashes(hashes) => hashes.heap_bytes(),
        }
    }
}

impl DistFile {
    /// A file with a name and URL and nothing else listed.
    pub fn new(filename: String, url: String) -> DistFile {
        DistFile {
            filename,
            url,
            hashes: Hashes::new(),
            requires_python: None,
            yanked: Yanked::default(),
            core_metadata: None,
            gpg_sig: None,
            size: None,
            upload_time: None,
            provenance: None,
            data_dist_info: DataDistInfo::Absent,
            extra: UnknownKeys::default(),
        }
    }

    /// `data-dist-info-metadata` as the upstream listed it.
    pub fn data_dist_info_metadata(&self) -> Option<ListedRef<'_>> {
        match &self.data_dist_info {
            DataDistInfo::Absent => None,
            DataDistInfo::SameAsCore => self.core_metadata.as_ref().map(ListedRef::Known),
            DataDistInfo::Listed(listed) => Some(match listed.as_ref() {
                ListedMetadata::Known(metadata) => ListedRef::Known(metadata),
                ListedMetadata::Other(value) => ListedRef::Other(value),
            }),
        }
    }

    /// Sets `data-dist-info-metadata` as listed: held as a marker when it equals
    /// `core_metadata`, so set that first.
    fn set_data_dist_info_metadata(&mut self, listed: Option<ListedMetadata>) {
        self.data_dist_info = match listed {
            None => DataDistInfo::Absent,
            Some(ListedMetadata::Known(known)) if self.core_metadata.as_ref() == Some(&known) => {
                DataDistInfo::SameAsCore
            }
            Some(listed) => DataDistInfo::Listed(Box::new(listed)),
        };
    }

    /// Changes the file's core metadata, keeping `data-dist-info-metadata` as it was listed
    /// (the client page offers metadata for a wheel that its upstream lists without).
    pub fn set_core_metadata(&mut self, metadata: Option<CoreMetadata>) {
        if self.data_dist_info == DataDistInfo::SameAsCore {
            let listed = self.core_metadata.take().map(ListedMetadata::Known);
            self.data_dist_info = listed.map_or(DataDistInfo::Absent, |l| DataDistInfo::Listed(Box::new(l)));
        }
        self.core_metadata = metadata;
    }

    /// Bytes this entry holds, inline and on the heap: an estimate for the page cache's
    /// weigher, so its memory cap holds for the parsed form as well as the rendered ones.
    pub fn held_bytes(&self) -> usize {
        let optional = |text: &Option<Box<str>>| text.as_deref().map_or(0, text_bytes);
        size_of::<DistFile>()
            + text_bytes(&self.filename)
            + text_bytes(&self.url)
            + self.hashes.heap_bytes()
            + optional(&self.requires_python)
            + match &self.yanked {
                Yanked::Reason(reason) => text_bytes(reason),
                Yanked::Flag(_) => 0,
            }
            + self.core_metadata.as_ref().map_or(0, CoreMetadata::heap_bytes)
            + optional(&self.upload_time)
            + optional(&self.provenance)
            + match &self.data_dist_info {
                DataDistInfo::Absent | DataDistInfo::SameAsCore => 0,
                DataDistInfo::Listed(listed) => {
                    size_of::<ListedMetadata>()
                        + PER_ALLOCATION
                        + match listed.as_ref() {
                            ListedMetadata::Known(metadata) => metadata.heap_bytes(),
                            ListedMetadata::Other(value) => value_bytes(value),
                        }
                }
            }
            + self.extra.heap_bytes()
    }
    /// Whether a PEP 658 `.metadata` file is offered for this file.
    pub fn has_metadata(&self) -> bool {
        self.core_metadata.as_ref().is_some_and(CoreMetadata::is_available)
    }

    /// The sha256 (as listed) of a wheel whose upstream offers no metadata file: pipgate can
    /// read METADATA out of it and offer it itself. Sdists have no reliable static metadata,
    /// and a file without a sha256 could not be verified or cached, so both are left alone.
    pub fn wheel_without_metadata(&self) -> Option<&str> {
        if !self.filename.ends_with(".whl") || self.has_metadata() {
            return None;
        }
        let sha256 = self.hashes.get("sha256")?;
        (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha256)
    }
}

impl ProjectPage {
    /// Bytes the page holds (see [`DistFile::held_bytes`]).
    pub fn held_bytes(&self) -> usize {
        let texts =
            |items: &[String]| items.iter().map(|item| size_of::<String>() + text_bytes(item)).sum::<usize>();
        size_of::<ProjectPage>()
            + self.files.capacity() * size_of::<DistFile>()
            + self.files.iter().map(|file| file.held_bytes() - size_of::<DistFile>()).sum::<usize>()
            + texts(&self.versions)
            + texts(&self.tracks)
            + texts(&self.alternate_locations)
            + text_bytes(&self.name)
            + map_bytes(&self.meta.extra)
            + map_bytes(&self.extra)
    }

    fn finish_parse(&mut self, project: &str) {
        self.files.retain(|file| {
            if !is_safe_filename(&file.filename) {
                tracing::warn!(project, filename = ?file.filename, "dropping a file whose name is not a plain file name");
                return false;
            }
            if !filename::names_project(project, &file.filename) {
                tracing::warn!(project, filename = ?file.filename, "dropping a file that belongs to another project");
                return false;
            }
            true
        });
        self.derive_versions_if_missing(project);
        // The list grew by doubling as it was read: a cached page keeps what it holds.
        self.files.shrink_to_fit();
        self.versions.shrink_to_fit();
    }

    fn derive_versions_if_missing(&mut self, project: &str) {
        if !self.versions.is_empty() {
            return;
        }
        // A set, not a scan of the list: a page of thousands of files has hundreds of versions.
        // Files come grouped by version, so the one just seen is checked before the set's hash.
        let mut seen = std::collections::HashSet::new();
        let mut last = None;
        for file in &self.files {
            if let Some(version) = version_from_filename(project, &file.filename)
                && last != Some(version)
            {
                last = Some(version);
                if seen.insert(version) {
                    self.versions.push(version.to_owned());
                }
            }
        }
    }
}

/// An upstream href as it may be shown in a log line or an error: without its query string
/// and fragment, which can carry a signature (Azure's SAS tokens) or a hash we do not need.
pub fn shown_href(href: &str) -> &str {
    href.split(['?', '#']).next().unwrap_or("")
}

/// Resolves `href` against `base` and splits off a `#name=digest` fragment into a hash. An
/// href that is canonical already (most are) is kept as it is, without a parse or a copy: a
/// page lists thousands.
fn absolute_url(base: &url::Url, mut href: String) -> Result<(String, Option<(String, String)>), BadHref> {
    let cut = href.find('#');
    let (without_fragment, fragment) = match cut {
        Some(at) => (&href[..at], Some(&href[at + 1..])),
        None => (href.as_str(), None),
    };
    if canonical_url::is_canonical_absolute(without_fragment)
        && fragment.is_none_or(canonical_url::is_plain_fragment)
    {
        let hash = fragment.and_then(fragment_hash);
        if let Some(at) = cut {
            href.truncate(at);
        }
        return Ok((href, hash));
    }
    let mut url =
        base.join(&href).map_err(|source| BadHref { source, shown: shown_href(&href).to_owned() })?;
    let hash = url.fragment().and_then(fragment_hash);
    url.set_fragment(None);
    Ok((url.into(), hash))
}

/// An href that does not resolve, as it may be shown ([`shown_href`]).
#[derive(Debug)]
struct BadHref {
    source: url::ParseError,
    shown: String,
}

impl BadHref {
    fn of_file(self, filename: String) -> PageError {
        PageError::BadUrl { filename, url: self.shown, source: self.source }
    }
}

/// `name=digest`, both lowercased, from a URL fragment.
fn fragment_hash(fragment: &str) -> Option<(String, String)> {
    let (name, digest) = fragment.split_once('=')?;
    (!name.is_empty() && !digest.is_empty()).then(|| (name.to_ascii_lowercase(), digest.to_ascii_lowercase()))
}

/// The hash to put in an HTML link fragment: sha256 when present, else the first one.
fn preferred_hash(hashes: &Hashes) -> Option<(&str, &str)> {
    hashes.get_key_value("sha256").or_else(|| hashes.iter().next())
}

/// The last path segment of a URL as [`absolute_url`] returns it, percent-decoded: PEP 503
/// says the link text is the file name, and that name must match the URL's last segment; the
/// URL cannot carry markup. An `http(s)` URL in that form has its path from the third `/` to
/// the query, so the segment is found without parsing the URL again (a page lists thousands).
fn filename_from_url(url: &str) -> Option<String> {
    let parsed;
    let segment = if url.starts_with("https://") || url.starts_with("http://") {
        let path = url.split(['?', '#']).next()?;
        path.splitn(4, '/').nth(3)?.rsplit('/').next()?
    } else {
        parsed = url::Url::parse(url).ok()?;
        parsed.path_segments()?.next_back()?
    };
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

/// Whether a file name is a plain file name: not empty, no path separators, no control
/// characters. Anything else on an upstream page is dropped rather than served.
pub fn is_safe_filename(filename: &str) -> bool {
    // One pass with no early exit, which the compiler vectorizes: a large page checks
    // thousands of names, and a byte-at-a-time check was 9% of its parse's instructions.
    let (mut unsafe_bytes, mut all_bytes) = (0u8, 0u8);
    for &b in filename.as_bytes() {
        unsafe_bytes |= u8::from((b < 0x20) | (b == 0x7f) | (b == b'/') | (b == b'\\'));
        all_bytes |= b;
    }
    unsafe_bytes == 0
        && !filename.is_empty()
        && filename != "."
        && filename != ".."
        // Non-ASCII control characters (U+0080 to U+009F) need the full check.
        && (all_bytes.is_ascii() || !filename.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check agrees with the rule as written over chars, for every ASCII byte and
    /// for non-ASCII control and non-control characters, anywhere in a name.
    #[test]
    fn safe_file_names_are_the_plain_ones() {
        let rule = |name: &str| {
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control())
        };
        let odd = ['\u{85}', '\u{9f}', '\u{a0}', '\u{e9}', '\u{2028}', '\u{1f600}'];
        let characters = (0u8..0x80).map(char::from).chain(odd);
        let mut unsafe_names = 0;
        for c in characters {
            for name in [format!("{c}"), format!("x-1.0{c}.whl"), format!("{c}x-1.0.tar.gz")] {
                assert_eq!(is_safe_filename(&name), rule(&name), "{name:?}");
                unsafe_names += usize::from(!rule(&name));
            }
        }
        assert!(unsafe_names > 3 * 34, "control characters, DEL and both slashes are refused");
        for name in ["", ".", "..", "...", "x-1.0.whl"] {
            assert_eq!(is_safe_filename(name), rule(name), "{name:?}");
        }
    }

    /// The string split finds the segment the URL parser finds, for URLs as `absolute_url`
    /// returns them.
    #[test]
    fn file_names_from_urls_match_the_url_parser() {
        let base = url::Url::parse("https://feed.example/simple/x/").unwrap();
        for href in [
            "https://files.example/packages/ab/x-1.0.whl",
            "https://files.example/x%20y-1.0.tar.gz?sig=a/b",
            "../../packages/x-1.0.whl#sha256=ab",
            "https://user:p%2Fw@files.example:8443/a/x-1.0.whl",
            "https://files.example/",
            "https://files.example/a/b/",
            "http://[::1]/x.whl",
            "x-1.0.whl",
            "https://files.example/caf\u{e9}.whl",
        ] {
            let (url, _) = absolute_url(&base, href.to_owned()).unwrap();
            let parsed = url::Url::parse(&url).unwrap();
            let expected = parsed
                .path_segments()
                .and_then(|mut s| s.next_back())
                .and_then(|s| percent_encoding::percent_decode_str(s).decode_utf8().ok())
                .filter(|s| !s.is_empty())
                .map(|s| s.into_owned());
            assert_eq!(filename_from_url(&url), expected, "{href} -> {url}");
        }
    }
}
