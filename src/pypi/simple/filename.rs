//! What distribution file names say: the project they belong to, and their version (for pages
//! whose upstream sends no `versions`).

use crate::pypi::name::normalizes_to;

const SDIST_SUFFIXES: [&str; 6] = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];

/// The version in a wheel, egg or sdist file name of `project` (a normalized name), or `None`
/// when the name does not follow any of those conventions.
pub fn version_from_filename<'a>(project: &str, filename: &'a str) -> Option<&'a str> {
    if let Some(stem) = filename.strip_suffix(".whl").or_else(|| filename.strip_suffix(".egg")) {
        // {distribution}-{version}(-{build})?-{python}-{abi}-{platform}: no '-' inside parts.
        return stem.split('-').nth(1).filter(|v| !v.is_empty());
    }
    let stem = SDIST_SUFFIXES.iter().find_map(|suffix| filename.strip_suffix(suffix))?;
    // Legacy sdists keep '-' in the name part, so find the split whose prefix is the project.
    stem.match_indices('-').find_map(|(at, _)| {
        let (name, version) = (&stem[..at], &stem[at + 1..]);
        let same = normalizes_to(name, project);
        (same && !version.is_empty()).then_some(version)
    })
}

/// Whether `filename` is a file of `project` (a normalized name). A wheel or egg names its
/// distribution before the first `-` (a `-` inside the name is escaped); an sdist or any other
/// file must start with the project's name, a `-` and something that starts like a version.
/// A public page that lists a file under a private project's name fails this and the file is
/// dropped.
pub fn names_project(project: &str, filename: &str) -> bool {
    if let Some(stem) = filename.strip_suffix(".whl").or_else(|| filename.strip_suffix(".egg")) {
        let name = stem.split('-').next().unwrap_or("");
        return normalizes_to(name, project);
    }
    filename.match_indices('-').any(|(at, _)| {
        let (name, rest) = (&filename[..at], &filename[at + 1..]);
        let version = rest.strip_prefix(['v', 'V']).unwrap_or(rest);
        version.starts_with(|c: char| c.is_ascii_digit()) && normalizes_to(name, project)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_belong_to_their_project() {
        for (project, filename, belongs) in [
            ("acme-core", "acme_core-1.0.0-py3-none-any.whl", true),
            ("acme-core", "Acme.Core-1.0.0-py3-none-any.whl", true),
            ("acme-core", "acme_core_evil-1.0-py3-none-any.whl", false),
            ("acme-core", "acme_core-1.0.tar.gz", true),
            ("acme-core", "acme-core-1.0.tar.gz", true),
            ("acme-core", "acme-core-v2.zip", true),
            ("acme-core", "acme-core-evil-1.0.tar.gz", false),
            ("acme-core", "six-1.16.0-py2.py3-none-any.whl", false),
            ("acme-core", "other-1.0.tar.gz", false),
            ("zope-interface", "zope.interface-5.4.0.tar.gz", true),
            ("six", "six-1.16.0-py2.7.egg", true),
        ] {
            assert_eq!(names_project(project, filename), belongs, "{project} {filename}");
        }
    }

    #[test]
    fn versions_from_names() {
        for (project, filename, expected) in [
            ("acme-core", "acme_core-1.0.0-py3-none-any.whl", Some("1.0.0")),
            ("acme-core", "acme_core-2.1-1-cp311-cp311-manylinux_2_17_x86_64.whl", Some("2.1")),
            ("acme-core", "acme_core-1.0.0.tar.gz", Some("1.0.0")),
            ("acme-core", "acme-core-1.0rc1.zip", Some("1.0rc1")),
            ("zope-interface", "zope.interface-5.4.0.tar.gz", Some("5.4.0")),
            ("six", "six-1.16.0-py2.7.egg", Some("1.16.0")),
            ("acme-core", "README.txt", None),
            ("acme-core", "other-1.0.tar.gz", None),
        ] {
            assert_eq!(version_from_filename(project, filename), expected, "{filename}");
        }
    }
}
