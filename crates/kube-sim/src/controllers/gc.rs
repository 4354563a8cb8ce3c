//! Garbage collection (background propagation): an object all of whose owners are gone
//! is deleted.

use std::collections::HashSet;

use crate::store::{DeleteOptions, Store};

pub fn collect(store: &mut Store) {
    let types: Vec<_> = {
        let mut seen = HashSet::new();
        store
            .types()
            .iter()
            .filter(|t| seen.insert(t.key()))
            .cloned()
            .collect()
    };
    let mut uids = HashSet::new();
    let mut all = Vec::new();
    for t in &types {
        for o in store.all(t) {
            if let Some(uid) = o["metadata"]["uid"].as_str() {
                uids.insert(uid.to_owned());
            }
            all.push((t.clone(), o));
        }
    }
    for (t, o) in all {
        let Some(refs) = o["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        if refs.is_empty() {
            continue;
        }
        let orphaned = refs
            .iter()
            .all(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)));
        if orphaned {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let _ = store.delete(&t, ns, name, &DeleteOptions::default());
        }
    }
}
