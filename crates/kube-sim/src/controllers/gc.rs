//! Garbage collection (background propagation): an object all of whose owners are gone
//! is deleted, and so on down the chain (Deployment → ReplicaSet → Pod) in one pass.

use crate::store::{DeleteOptions, Store};

/// Owner chains longer than this are finished by the next pass.
const MAX_DEPTH: usize = 8;

pub fn collect(store: &mut Store) {
    for _ in 0..MAX_DEPTH {
        if collect_once(store) == 0 {
            return;
        }
    }
}

/// Deletes the objects whose owners are all gone; how many were deleted.
fn collect_once(store: &mut Store) -> usize {
    let (uids, owned) = store.ownership();
    let mut deleted = 0;
    for (type_key, ns, name, owners) in owned {
        if owners.iter().any(|u| uids.contains(u)) {
            continue;
        }
        let Some(rt) = store.types().iter().find(|t| t.key() == type_key).cloned() else {
            continue;
        };
        if store
            .delete(&rt, &ns, &name, &DeleteOptions::default())
            .is_ok()
        {
            deleted += 1;
        }
    }
    deleted
}
