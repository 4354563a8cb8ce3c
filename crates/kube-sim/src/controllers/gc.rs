//! Garbage collection (background propagation): an object all of whose owners are gone
//! is deleted.

use crate::store::{DeleteOptions, Store};

pub fn collect(store: &mut Store) {
    let (uids, owned) = store.ownership();
    for (type_key, ns, name, owners) in owned {
        if owners.iter().any(|u| uids.contains(u)) {
            continue;
        }
        let Some(rt) = store.types().iter().find(|t| t.key() == type_key).cloned() else {
            continue;
        };
        let _ = store.delete(&rt, &ns, &name, &DeleteOptions::default());
    }
}
