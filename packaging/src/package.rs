//! Single-file packages (`<name>-<version>.bundle`): a bundle directory as an uncompressed ustar archive, for
//! over-the-air updates. Entries, in order:
//!
//! 1. `manifest.toml`, rewritten so that `[checksums]` lists the sha256 of every other file but the model;
//! 2. `manifest.sig`, optional: `ed25519 <public key> <signature>` over the exact bytes of entry 1;
//! 3. the model, then every other file, sorted by path.
//!
//! Entry names are relative, `/`-separated, at most two components of `[A-Za-z0-9._-]+` (never `.` or `..`),
//! and every entry is a regular file. Because the manifest and its signature come first, [`unpack`] verifies
//! the signature before it writes anything, and the sha256s cover everything after it.

use crate::error::{Error, Result};
use crate::hashing::{HashingReader, HashingWriter, hex_sha256};
use crate::selftest::{SelfTest, SelfTestInput};
use crate::signature::{self, PublicKey, SigningKey};
use runtime::manifest::{Manifest, is_package_path};
use runtime::{Bundle, MANIFEST_FILE, SIGNATURE_FILE};
use std::collections::BTreeSet;
use std::fs::{File, Permissions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The largest `manifest.toml` entry read; real ones are a few KiB.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The largest `manifest.sig` entry read; a valid one is 202 bytes.
const MAX_SIGNATURE_BYTES: u64 = 1024;

/// What a package says about itself, read without unpacking it.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The exact bytes of the `manifest.toml` entry (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The `manifest.sig` line without its newline; `None` for an unsigned package.
    pub signature: Option<String>,
    /// Bytes of the package file.
    pub size: u64,
    /// Lower-case hex sha256 of the whole package file.
    pub sha256: String,
}

/// Packs the bundle in `bundle_dir` into `out_path`, signed with `key` when given. The bundle is loaded (and
/// checked) first; every regular file of the directory, at most two levels deep, goes into the package, and
/// the manifest is rewritten with their sha256s. `bundle_dir` is not modified; `out_path` is replaced
/// atomically.
pub fn pack(bundle_dir: &Path, out_path: &Path, key: Option<&SigningKey>) -> Result<PackageInfo> {
    let fail = |message: String| Error::Package { path: out_path.to_owned(), message };
    let bundle = Bundle::load(bundle_dir)?;
    let mut manifest = bundle.manifest().clone();
    if !is_package_path(&manifest.model) {
        return Err(fail(format!("the model path {:?} cannot be an entry name", manifest.model)));
    }
    let mut files = Vec::new();
    for name in bundle_files(bundle_dir, &manifest.model, out_path)? {
        let path = bundle_dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        files.push((name, bytes));
    }
    manifest.checksums = files.iter().map(|(name, bytes)| (name.clone(), hex_sha256(bytes))).collect();
    let self_test = SelfTest::of_bundle(&bundle)?;
    let self_test_images = self_test.iter().flat_map(|test| &test.cases).filter_map(|case| match &case.input {
        SelfTestInput::Image(path) => Some(path),
        SelfTestInput::Sensor { .. } => None,
    });
    for referenced in manifest.labels_file.iter().chain(&manifest.self_test).chain(self_test_images) {
        if !manifest.checksums.contains_key(referenced) {
            return Err(fail(format!("{referenced:?} is not a file of the bundle directory {}", bundle_dir.display())));
        }
    }
    let manifest_text = manifest.to_toml().map_err(fail)?;
    let signature = key.map(|key| key.sign(manifest_text.as_bytes()).to_string());

    let temp = temp_file_beside(out_path)?;
    let io = |source| Error::Io { path: temp.path().to_owned(), source };
    let mut builder = tar::Builder::new(HashingWriter::new(BufWriter::new(temp.as_file())));
    append(&mut builder, MANIFEST_FILE, manifest_text.len() as u64, manifest_text.as_bytes()).map_err(io)?;
    if let Some(line) = &signature {
        let line = format!("{line}\n");
        append(&mut builder, SIGNATURE_FILE, line.len() as u64, line.as_bytes()).map_err(io)?;
    }
    let model = bundle.read_model()?;
    append(&mut builder, &manifest.model, model.len() as u64, model.as_slice()).map_err(io)?;
    for (name, bytes) in &files {
        append(&mut builder, name, bytes.len() as u64, bytes.as_slice()).map_err(io)?;
    }
    let (writer, size, sha256) = builder.into_inner().map_err(io)?.finish();
    writer.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    persist(temp, out_path)?;
    Ok(PackageInfo { manifest, manifest_bytes: manifest_text.into_bytes(), signature, size, sha256 })
}

/// Reads a package's manifest and signature line, and hashes the whole file (read once).
pub fn inspect(path: &Path) -> Result<PackageInfo> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(HashingReader::new(BufReader::new(file)));
    let head = {
        let mut entries = archive.entries().map_err(|e| package_error(path, format!("not a tar archive: {e}")))?;
        read_head(&mut entries, path)?.0
    };
    let mut reader = archive.into_inner();
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
    let (size, sha256) = reader.finish();
    Ok(PackageInfo {
        manifest: head.manifest,
        manifest_bytes: head.manifest_bytes,
        signature: head.signature,
        size,
        sha256,
    })
}

/// Signs the package at `path` with `key`, adding or replacing `manifest.sig`. The file is replaced atomically
/// (a temporary file in the same directory, then a rename).
pub fn sign_package(path: &Path, key: &SigningKey) -> Result<()> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let mut archive = tar::Archive::new(BufReader::new(File::open(path).map_err(io)?));
    let mut entries = archive.entries().map_err(|e| package_error(path, format!("not a tar archive: {e}")))?;
    let (head, first) = read_head(&mut entries, path)?;
    let line = format!("{}\n", key.sign(&head.manifest_bytes));

    let temp = temp_file_beside(path)?;
    let write_error = |source| Error::Io { path: temp.path().to_owned(), source };
    let mut builder = tar::Builder::new(BufWriter::new(temp.as_file()));
    let manifest = head.manifest_bytes.as_slice();
    append(&mut builder, MANIFEST_FILE, manifest.len() as u64, manifest).map_err(write_error)?;
    append(&mut builder, SIGNATURE_FILE, line.len() as u64, line.as_bytes()).map_err(write_error)?;
    for entry in first.into_iter().map(Ok).chain(entries) {
        let entry = entry.map_err(|e| package_error(path, format!("cannot read an entry: {e}")))?;
        let name = entry_name(&entry, path)?;
        let size = entry.size();
        append(&mut builder, &name, size, entry).map_err(|e| package_error(path, format!("entry {name:?}: {e}")))?;
    }
    let writer = builder.into_inner().map_err(write_error)?;
    writer.into_inner().map_err(|e| write_error(e.into_error()))?.sync_all().map_err(write_error)?;
    persist(temp, path)
}

/// Unpacks the package at `package_path` into `dest_dir` (created if missing; files already there are never
/// replaced, so give a fresh directory) and loads the bundle, which checks every sha256.
///
/// The signature is verified against `trusted` right after the manifest is read, before anything is written;
/// an unsigned package is refused ([`Error::Unsigned`]). Every entry is checked on the way: names and order as
/// in the module docs, regular files only, only files the manifest lists (`model` and `[checksums]`), none of
/// them missing, and no more bytes than the package holds. Each file is fsynced.
pub fn unpack(package_path: &Path, dest_dir: &Path, trusted: &[PublicKey]) -> Result<Bundle> {
    let fail = |message: String| package_error(package_path, message);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let file = File::open(package_path).map_err(io(package_path))?;
    let package_size = file.metadata().map_err(io(package_path))?.len();
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut entries = archive.entries().map_err(|e| fail(format!("not a tar archive: {e}")))?;
    let (head, first) = read_head(&mut entries, package_path)?;
    signature::verify(&head.manifest_bytes, head.signature.as_deref(), trusted)?;

    let manifest = &head.manifest;
    if !is_package_path(&manifest.model) {
        return Err(fail(format!("manifest.toml: the model path {:?} cannot be an entry name", manifest.model)));
    }
    for referenced in manifest.labels_file.iter().chain(&manifest.self_test) {
        if !manifest.checksums.contains_key(referenced) {
            return Err(fail(format!("manifest.toml names {referenced:?}, which its [checksums] do not list")));
        }
    }
    let mut missing: BTreeSet<&str> = manifest.checksums.keys().map(String::as_str).collect();
    std::fs::create_dir_all(dest_dir).map_err(io(dest_dir))?;
    let mut written = head.manifest_bytes.len() as u64;
    let mut directories = BTreeSet::from([dest_dir.to_owned()]);
    let manifest_size = head.manifest_bytes.len() as u64;
    write_new(&dest_dir.join(MANIFEST_FILE), &mut head.manifest_bytes.as_slice(), manifest_size)?;
    if let Some(line) = &head.signature {
        let line = format!("{line}\n");
        written += line.len() as u64;
        write_new(&dest_dir.join(SIGNATURE_FILE), &mut line.as_bytes(), line.len() as u64)?;
    }

    let mut model_seen = false;
    let mut previous: Option<String> = None;
    for entry in first.into_iter().map(Ok).chain(entries) {
        let mut entry = entry.map_err(|e| fail(format!("cannot read an entry: {e}")))?;
        let name = entry_name(&entry, package_path)?;
        if !model_seen {
            if name != manifest.model {
                return Err(fail(format!(
                    "entry {name:?}: expected the model {:?} right after the manifest",
                    manifest.model
                )));
            }
            model_seen = true;
        } else {
            if !missing.remove(name.as_str()) {
                let why = if manifest.checksums.contains_key(&name) || name == manifest.model {
                    "appears twice"
                } else {
                    "is not listed in the manifest's [checksums]"
                };
                return Err(fail(format!("entry {name:?} {why}")));
            }
            if previous.as_ref().is_some_and(|previous| *previous > name) {
                return Err(fail(format!(
                    "entry {name:?}: out of order (the files after the model are sorted by path)"
                )));
            }
            previous = Some(name.clone());
        }
        let size = entry.size();
        written = written.saturating_add(size);
        if written > package_size {
            return Err(fail(format!("entry {name:?}: the entries hold more bytes than the package ({package_size})")));
        }
        let path = dest_dir.join(&name);
        if let Some(parent) = path.parent().filter(|parent| !directories.contains(*parent)) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            directories.insert(parent.to_owned());
        }
        write_new(&path, &mut entry, size).map_err(|error| match error {
            Error::Package { message, .. } => fail(format!("entry {name:?}: {message}")),
            other => other,
        })?;
    }
    if !model_seen {
        return Err(fail(format!("the model {:?} is missing", manifest.model)));
    }
    if !missing.is_empty() {
        return Err(fail(format!("files the manifest lists are missing: {missing:?}")));
    }
    for directory in &directories {
        File::open(directory).and_then(|dir| dir.sync_all()).map_err(io(directory))?;
    }
    let bundle = Bundle::load(dest_dir)?;
    for case in SelfTest::of_bundle(&bundle)?.iter().flat_map(|test| &test.cases) {
        if let SelfTestInput::Image(image) = &case.input
            && !manifest.checksums.contains_key(image)
        {
            return Err(fail(format!("the self-test reads {image:?}, which the manifest's [checksums] do not list")));
        }
    }
    Ok(bundle)
}

/// The manifest and signature entries of a package.
struct Head {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Option<String>,
}

/// Reads the manifest and the optional signature, and returns the entry after them (the model, in a
/// well-formed package).
fn read_head<'a, R: Read>(entries: &mut tar::Entries<'a, R>, path: &Path) -> Result<(Head, Option<tar::Entry<'a, R>>)> {
    let fail = |message: String| package_error(path, message);
    let mut next = || entries.next().transpose().map_err(|e| fail(format!("cannot read an entry: {e}")));
    let mut manifest_entry = next()?.ok_or_else(|| fail("the archive is empty".to_owned()))?;
    let name = entry_name(&manifest_entry, path)?;
    if name != MANIFEST_FILE {
        return Err(fail(format!("entry {name:?}: the first entry must be {MANIFEST_FILE}")));
    }
    let manifest_bytes =
        read_small(&mut manifest_entry, MAX_MANIFEST_BYTES).map_err(|m| fail(format!("entry {name:?}: {m}")))?;
    let manifest = std::str::from_utf8(&manifest_bytes)
        .map_err(|e| e.to_string())
        .and_then(Manifest::parse)
        .map_err(|m| fail(format!("entry {name:?}: {m}")))?;
    drop(manifest_entry);
    let mut following = next()?;
    let mut signature = None;
    if let Some(mut entry) = following.take_if(|entry| entry.path_bytes().as_ref() == SIGNATURE_FILE.as_bytes()) {
        entry_name(&entry, path)?;
        let bytes =
            read_small(&mut entry, MAX_SIGNATURE_BYTES).map_err(|m| fail(format!("entry {SIGNATURE_FILE:?}: {m}")))?;
        let line = String::from_utf8(bytes).map_err(|_| fail(format!("entry {SIGNATURE_FILE:?}: not UTF-8 text")))?;
        signature = Some(line.strip_suffix('\n').unwrap_or(&line).to_owned());
        drop(entry);
        following = next()?;
    }
    Ok((Head { manifest, manifest_bytes, signature }, following))
}

/// The entry's name, if it is a regular file with a name the format allows.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>, path: &Path) -> Result<String> {
    let bytes = entry.path_bytes();
    let name = String::from_utf8_lossy(&bytes);
    if !is_package_path(&name) {
        return Err(package_error(
            path,
            format!("entry {name:?}: not a relative path of at most two components of [A-Za-z0-9._-] (and no `..`)"),
        ));
    }
    let kind = entry.header().entry_type();
    if kind != tar::EntryType::Regular {
        return Err(package_error(path, format!("entry {name:?}: a {kind:?} entry; packages hold regular files only")));
    }
    Ok(name.into_owned())
}

fn read_small(reader: &mut impl Read, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

/// Creates `path` (which must not exist), fills it with exactly `size` bytes of `data` and fsyncs it.
fn write_new(path: &Path, data: &mut impl Read, size: u64) -> Result<()> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
    let copied = std::io::copy(data, &mut file).map_err(io)?;
    if copied != size {
        return Err(package_error(path, format!("truncated: {copied} of {size} bytes")));
    }
    file.sync_all().map_err(io)
}

/// Appends a regular file with a fixed mode, owner and time, so that the same bundle packs to the same bytes.
fn append<W: Write>(builder: &mut tar::Builder<W>, name: &str, size: u64, data: impl Read) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    builder.append_data(&mut header, name, data)
}

/// The files of a bundle directory that go into its package besides the manifest and the model: regular files
/// (symbolic links followed) at most two levels deep, sorted by path. `skip` (the package being written) is
/// left out if it lies there.
fn bundle_files(bundle_dir: &Path, model: &str, skip: &Path) -> Result<Vec<String>> {
    let skip = std::fs::canonicalize(skip).ok();
    let mut files = Vec::new();
    let mut pending = vec![(bundle_dir.to_owned(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let io = |source| Error::Io { path: dir.clone(), source };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let name = format!("{prefix}{file_name}");
            let metadata = std::fs::metadata(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            if name == model || name == MANIFEST_FILE || name == SIGNATURE_FILE {
                continue;
            }
            if skip.is_some() && std::fs::canonicalize(&path).ok() == skip {
                continue;
            }
            if !is_package_path(&name) {
                return Err(package_error(
                    &path,
                    "bundles hold files at most two levels deep, named with [A-Za-z0-9._-] only".to_owned(),
                ));
            }
            if metadata.is_dir() {
                pending.push((path, format!("{name}/")));
            } else if metadata.is_file() {
                files.push(name);
            } else {
                return Err(package_error(&path, "not a regular file or a directory".to_owned()));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn package_error(path: &Path, message: String) -> Error {
    Error::Package { path: path.to_owned(), message }
}

/// A new file in `target`'s directory, to be [`persist`]ed over it when complete; removed if dropped before.
fn temp_file_beside(target: &Path) -> Result<NamedTempFile> {
    let dir = parent_dir(target);
    tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        // As `File::create`: the umask decides, so a package is as readable as any file its owner writes.
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|source| Error::Io { path: dir, source })
}

/// Renames `temp` over `target` and fsyncs the directory, so the rename survives a power cut.
fn persist(temp: NamedTempFile, target: &Path) -> Result<()> {
    temp.persist(target).map_err(|e| Error::Io { path: target.to_owned(), source: e.error })?;
    let dir = parent_dir(target);
    File::open(&dir).and_then(|dir| dir.sync_all()).map_err(|source| Error::Io { path: dir, source })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{EngineOptions, Pipeline};

    fn models() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    /// Entry names and contents, in archive order.
    type Entries = Vec<(String, Vec<u8>)>;

    /// The entries of a package, in order.
    fn entries(package: &Path) -> Entries {
        let mut archive = tar::Archive::new(File::open(package).unwrap());
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            entries.push((String::from_utf8(entry.path_bytes().into_owned()).unwrap(), bytes));
        }
        entries
    }

    /// Writes `entries` as a tar archive without any check of their names, as an attacker would.
    fn write_raw(package: &Path, entries: &Entries, kind: impl Fn(&str) -> tar::EntryType) {
        let mut builder = tar::Builder::new(File::create(package).unwrap());
        for (name, bytes) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind(name));
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).unwrap();
        }
        builder.finish().unwrap();
    }

    fn regular(_: &str) -> tar::EntryType {
        tar::EntryType::Regular
    }

    /// Packs shipped bundle `name` (signed with `key` when given) into a temporary directory.
    fn packed(name: &str, key: Option<&SigningKey>) -> (tempfile::TempDir, PathBuf, PackageInfo) {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join(format!("{name}.bundle"));
        let info = pack(&models().join(name), &package, key).unwrap();
        (dir, package, info)
    }

    fn unpack_err(package: &Path, trusted: &[PublicKey]) -> (Error, PathBuf) {
        let dest = package.with_extension("unpacked");
        let error = unpack(package, &dest, trusted).expect_err("the package is refused");
        (error, dest)
    }

    #[test]
    fn pack_inspect_unpack_round_trip() {
        let key = SigningKey::generate().unwrap();
        let (dir, package, info) = packed("activity-classifier", Some(&key));
        let names: Vec<String> = entries(&package).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["manifest.toml", "manifest.sig", "model.onnx", "labels.txt"]);
        let bytes = std::fs::read(&package).unwrap();
        assert_eq!((info.size, info.sha256.as_str()), (bytes.len() as u64, hex_sha256(&bytes).as_str()));
        let labels_sha = hex_sha256(&std::fs::read(models().join("activity-classifier/labels.txt")).unwrap());
        assert_eq!(info.manifest.checksums.get("labels.txt"), Some(&labels_sha));

        let inspected = inspect(&package).unwrap();
        assert_eq!(inspected.manifest, info.manifest);
        assert_eq!(inspected.manifest_bytes, info.manifest_bytes);
        assert_eq!(inspected.signature, info.signature);
        assert_eq!((inspected.size, &inspected.sha256), (info.size, &info.sha256));
        let signer = signature::verify(&inspected.manifest_bytes, inspected.signature.as_deref(), &[key.public_key()]);
        assert_eq!(signer.unwrap(), key.public_key());

        let bundle = unpack(&package, &dir.path().join("unpacked"), &[key.public_key()]).unwrap();
        let original = Bundle::load(models().join("activity-classifier")).unwrap();
        assert_eq!(bundle.identity(), original.identity());
        assert_eq!(bundle.labels(), original.labels());
        assert_eq!(bundle.manifest().checksums, info.manifest.checksums);
        assert!(bundle.dir().join(SIGNATURE_FILE).is_file());

        let again = dir.path().join("again.bundle");
        pack(&models().join("activity-classifier"), &again, Some(&key)).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes, "the same bundle packs to the same bytes");
    }

    #[test]
    fn signing_adds_or_replaces_the_signature() {
        let (first, second) = (SigningKey::generate().unwrap(), SigningKey::generate().unwrap());
        let (dir, package, info) = packed("image-classifier", None);
        assert_eq!(info.signature, None);
        assert_eq!(unpack_err(&package, &[first.public_key()]).0.kind().as_str(), "unsigned");
        sign_package(&package, &first).unwrap();
        sign_package(&package, &second).unwrap();
        let names: Vec<String> = entries(&package).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["manifest.toml", "manifest.sig", "model.onnx", "labels.txt"]);
        let inspected = inspect(&package).unwrap();
        assert_eq!(inspected.manifest_bytes, info.manifest_bytes, "signing leaves the manifest as it is");
        assert_eq!(unpack_err(&package, &[first.public_key()]).0.kind().as_str(), "untrusted_key");
        let bundle = unpack(&package, &dir.path().join("ok"), &[first.public_key(), second.public_key()]).unwrap();
        assert_eq!(bundle.labels().len(), 1000);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!leftovers.iter().any(|name| name.to_string_lossy().ends_with(".tmp")), "{leftovers:?}");
    }

    #[test]
    fn a_tampered_model_is_a_checksum_mismatch() {
        let key = SigningKey::generate().unwrap();
        let (_dir, package, _) = packed("activity-classifier", Some(&key));
        let mut archive = tar::Archive::new(File::open(&package).unwrap());
        let model_at = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|entry| entry.path_bytes().as_ref() == b"model.onnx")
            .map(|entry| entry.raw_file_position() + entry.size() / 2)
            .unwrap();
        let mut bytes = std::fs::read(&package).unwrap();
        bytes[model_at as usize] ^= 0x01;
        std::fs::write(&package, bytes).unwrap();
        let (error, _) = unpack_err(&package, &[key.public_key()]);
        assert_eq!(error.kind().as_str(), "checksum_mismatch", "{error}");
        assert!(error.to_string().contains("model.onnx"), "{error}");
    }

    #[test]
    fn a_manifest_edited_after_signing_is_a_bad_signature_and_nothing_is_written() {
        let key = SigningKey::generate().unwrap();
        let (_dir, package, _) = packed("activity-classifier", Some(&key));
        let mut edited = entries(&package);
        let text = String::from_utf8(edited[0].1.clone()).unwrap();
        edited[0].1 = text.replace("version = \"1.0.0\"", "version = \"9.0.0\"").into_bytes();
        assert_ne!(edited[0].1, text.as_bytes());
        write_raw(&package, &edited, regular);
        let (error, dest) = unpack_err(&package, &[key.public_key()]);
        assert_eq!(error.kind().as_str(), "bad_signature", "{error}");
        assert!(!dest.exists(), "nothing is written before the signature is checked");
    }

    #[test]
    fn malformed_entries_are_refused_with_their_names() {
        let key = SigningKey::generate().unwrap();
        let (_dir, package, _) = packed("activity-classifier", Some(&key));
        let good = entries(&package);
        let refused = |edit: &dyn Fn(&mut Entries), kind: &dyn Fn(&str) -> tar::EntryType| {
            let mut edited = good.clone();
            edit(&mut edited);
            write_raw(&package, &edited, kind);
            let (error, dest) = unpack_err(&package, &[key.public_key()]);
            std::fs::remove_dir_all(&dest).ok();
            assert_eq!(error.kind().as_str(), "package", "{error}");
            error.to_string()
        };
        let escaping = refused(&|e| e.push(("../evil".into(), b"x".to_vec())), &regular);
        assert!(escaping.contains("entry \"../evil\"") && escaping.contains(".bundle"), "{escaping}");
        assert!(!package.parent().unwrap().join("evil").exists());
        let unlisted = refused(&|e| e.push(("extra.txt".into(), b"x".to_vec())), &regular);
        assert!(unlisted.contains("entry \"extra.txt\" is not listed"), "{unlisted}");
        let missing = refused(&|e| e.truncate(3), &regular);
        assert!(missing.contains("missing") && missing.contains("labels.txt"), "{missing}");
        let twice = refused(&|e| e.push(e[3].clone()), &regular);
        assert!(twice.contains("appears twice"), "{twice}");
        let model_last = refused(&|e| e.swap(2, 3), &regular);
        assert!(model_last.contains("expected the model"), "{model_last}");
        let manifest_second = refused(&|e| e.swap(0, 2), &regular);
        assert!(manifest_second.contains("the first entry must be manifest.toml"), "{manifest_second}");
        let link = refused(&|_| {}, &|name| {
            if name == "labels.txt" { tar::EntryType::Symlink } else { tar::EntryType::Regular }
        });
        assert!(link.contains("entry \"labels.txt\"") && link.contains("regular files only"), "{link}");
        let deep = refused(&|e| e.push(("a/b/c".into(), b"x".to_vec())), &regular);
        assert!(deep.contains("entry \"a/b/c\""), "{deep}");
    }

    #[test]
    fn a_packed_self_test_runs_after_unpacking() {
        let ort = crate::selftest::tests::onnx_runtime();
        let staging = tempfile::tempdir().unwrap();
        for file in ["manifest.toml", "model.onnx", "labels.txt"] {
            std::fs::copy(models().join("image-classifier").join(file), staging.path().join(file)).unwrap();
        }
        std::fs::create_dir(staging.path().join("selftest")).unwrap();
        std::fs::copy(models().join("frames/cat.jpg"), staging.path().join("selftest/cat.jpg")).unwrap();
        let bundle = Bundle::load(staging.path()).unwrap();
        let mut pipeline = Pipeline::new(&ort, &bundle, &EngineOptions::default()).unwrap();
        let inputs = vec![SelfTestInput::Image("selftest/cat.jpg".into())];
        let self_test = SelfTest::record(&bundle, inputs, &mut pipeline).unwrap();
        std::fs::write(staging.path().join("selftest.json"), self_test.to_json()).unwrap();
        let mut manifest = bundle.manifest().clone();
        manifest.self_test = Some("selftest.json".into());
        std::fs::write(staging.path().join("manifest.toml"), manifest.to_toml().unwrap()).unwrap();

        let key = SigningKey::generate().unwrap();
        let out = tempfile::tempdir().unwrap();
        let package = out.path().join("image-classifier-1.0.0.bundle");
        let info = pack(staging.path(), &package, Some(&key)).unwrap();
        let names: Vec<String> = entries(&package).into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["manifest.toml", "manifest.sig", "model.onnx", "labels.txt", "selftest.json", "selftest/cat.jpg"]
        );
        assert_eq!(info.manifest.checksums.len(), 3);

        let unpacked = unpack(&package, &out.path().join("unpacked"), &[key.public_key()]).unwrap();
        let loaded = SelfTest::of_bundle(&unpacked).unwrap().expect("the self-test is loaded");
        assert_eq!(loaded, self_test);
        let mut pipeline = Pipeline::new(&ort, &unpacked, &EngineOptions::default()).unwrap();
        loaded.run(&unpacked, &mut pipeline).unwrap();

        std::fs::write(unpacked.dir().join("selftest/cat.jpg"), b"not the cat").unwrap();
        let error = Bundle::load(unpacked.dir()).unwrap_err();
        assert_eq!(error.kind().as_str(), "checksum_mismatch", "{error}");
        assert!(error.to_string().starts_with("file ") && error.to_string().contains("cat.jpg"), "{error}");
    }
}
