//! Which bundle each source starts with when updates are on: its model's active slot, else the previous
//! one, else the factory bundle the config names. A slot that does not load is skipped with an error, so
//! the device always boots into a model that loads.

use super::slots::{Recovery, SlotStore};
use runtime::Manifest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "lock";

/// The slot stores of the models the sources serve, opened (and recovered) once per model name.
pub struct ModelSlots {
    state_dir: PathBuf,
    stores: HashMap<String, (SlotStore, Recovery)>,
}

impl ModelSlots {
    /// Takes the state directory for this process: two agents on one directory would overwrite each other's
    /// slots, so a second one is refused. The lock lasts until the process exits.
    pub fn open(state_dir: &Path) -> std::io::Result<ModelSlots> {
        std::fs::create_dir_all(state_dir)?;
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(state_dir.join(LOCK_FILE))?;
        lock.try_lock().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!("{} is in use by another agent", state_dir.display()),
            )
        })?;
        // Held, not closed: closing the file would release the lock.
        std::mem::forget(lock);
        Ok(ModelSlots { state_dir: state_dir.to_owned(), stores: HashMap::new() })
    }

    /// The bundle directories to try, best first, for a source whose config names `factory`. A factory
    /// bundle whose manifest does not parse has no slots: loading it reports the problem.
    pub fn candidates(&mut self, factory: &Path) -> std::io::Result<Vec<PathBuf>> {
        let Some(name) = model_name(factory) else {
            return Ok(vec![factory.to_owned()]);
        };
        if !self.stores.contains_key(&name) {
            let opened = SlotStore::open(&self.state_dir, &name, factory)?;
            self.stores.insert(name.clone(), opened);
        }
        Ok(self.stores[&name].0.boot_order())
    }

    /// The stores, by model name, with what each recovered at open.
    pub fn into_stores(self) -> HashMap<String, (SlotStore, Recovery)> {
        self.stores
    }
}

fn model_name(bundle_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bundle_dir.join(runtime::MANIFEST_FILE)).ok()?;
    Manifest::parse(&text).ok().map(|manifest| manifest.name)
}
