//! Lists and watches: label and field selectors, paging, resuming a watch, kube-runtime's
//! watchers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

use crate::{cm, conformance, eventually, rand_suffix};

conformance! {
    async fn label_and_field_selectors_filter_lists(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        for (name, labels) in [
            ("a", vec![("app", "web"), ("tier", "front")]),
            ("b", vec![("app", "web")]),
            ("c", vec![("app", "db"), ("tier", "back")]),
            ("d", vec![]),
        ] {
            cms.create(&PostParams::default(), &cm(name, &labels)).await.unwrap();
        }
        // kube-root-ca.crt, which the real server's publisher puts in every namespace, is
        // not one of ours.
        let names = |sel: &str, field: &str| {
            let cms = cms.clone();
            let (sel, field) = (sel.to_owned(), field.to_owned());
            async move {
                let mut lp = ListParams::default();
                if !sel.is_empty() {
                    lp = lp.labels(&sel);
                }
                if !field.is_empty() {
                    lp = lp.fields(&field);
                }
                let mut n: Vec<String> = cms
                    .list(&lp)
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|c| c.name_any())
                    .filter(|n| n != "kube-root-ca.crt")
                    .collect();
                n.sort();
                n.join(",")
            }
        };
        assert_eq!(names("app=web", "").await, "a,b");
        assert_eq!(names("app!=web", "").await, "c,d");
        assert_eq!(names("app in (db,web),tier", "").await, "a,c");
        assert_eq!(names("app notin (web)", "").await, "c,d");
        assert_eq!(names("!tier", "").await, "b,d");
        assert_eq!(names("", "metadata.name=c").await, "c");
        assert_eq!(names("app=web", "metadata.name!=a").await, "b");
        assert_eq!(names("", &format!("metadata.namespace={}", t.ns)).await, "a,b,c,d");
    }
}

conformance! {
    async fn lists_page_with_limit_and_continue(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        for i in 0..25 {
            cms.create(&PostParams::default(), &cm(&format!("cm-{i:02}"), &[("page", "me")]))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut lp = ListParams::default().labels("page=me").limit(10);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = cms.list(&lp).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= 10);
            seen.extend(page.items.iter().map(|c| c.name_any()));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
        assert_eq!(pages, 3);
        // Without a selector the server also says how many items remain.
        let page = cms.list(&ListParams::default().limit(10)).await.unwrap();
        let total = cms.list(&ListParams::default()).await.unwrap().items.len() as i64;
        assert_eq!(page.metadata.remaining_item_count, Some(total - 10));
    }
}

conformance! {
    async fn a_watch_resumes_after_a_disconnect_without_missing_or_duplicating_events(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        let start_rv = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let writer = {
            let cms = cms.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    cms.create(&PostParams::default(), &cm(&format!("w-{i}"), &[]))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        };
        let mut rv = start_rv;
        let mut added = Vec::new();
        let mut connections = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while added.len() < 40 && Instant::now() < deadline {
            connections += 1;
            // The server closes each watch after one second: a forced disconnect.
            let stream = cms.watch(&WatchParams::default().timeout(1), &rv).await.unwrap();
            let mut stream = stream.boxed();
            while let Some(event) = stream.try_next().await.unwrap() {
                match event {
                    WatchEvent::Added(c) => {
                        rv = c.resource_version().unwrap();
                        added.push(c.name_any());
                    }
                    WatchEvent::Modified(c) | WatchEvent::Deleted(c) => {
                        rv = c.resource_version().unwrap()
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                    WatchEvent::Error(e) => panic!("watch error {e:?}"),
                }
            }
        }
        writer.await.unwrap();
        assert!(connections >= 2, "the watch was never interrupted");
        assert_eq!(added.len(), 40, "missing or duplicated events: {added:?}");
        assert_eq!(added.iter().collect::<HashSet<_>>().len(), 40);
    }
}

conformance! {
    async fn kube_runtime_watchers_see_changes_with_list_watch_and_streaming_lists(t) {
        let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
        cms.create(&PostParams::default(), &cm("before", &[("app", "x")])).await.unwrap();
        for (i, config) in [
            watcher::Config::default().labels("app=x"),
            watcher::Config::default().labels("app=x").streaming_lists(),
        ]
        .into_iter()
        .enumerate()
        {
            let after = format!("after{i}-");
            let stream = watcher(cms.clone(), config).boxed();
            let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
            let collector = {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    while let Some(e) = stream.next().await {
                        match e.unwrap() {
                            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                                seen.lock().unwrap().insert(c.name_any());
                            }
                            _ => {}
                        }
                    }
                })
            };
            let s2 = seen.clone();
            eventually("the watcher's initial list", Duration::from_secs(10), move || {
                let seen = s2.clone();
                async move { seen.lock().unwrap().contains("before") }
            })
            .await;
            cms.create(
                &PostParams::default(),
                &cm(&format!("{after}{}", rand_suffix()), &[("app", "x")]),
            )
            .await
            .unwrap();
            cms.create(
                &PostParams::default(),
                &cm(&format!("other-{}", rand_suffix()), &[("app", "y")]),
            )
            .await
            .unwrap();
            let (seen2, after2) = (seen.clone(), after.clone());
            eventually(
                "watcher sees both labelled objects",
                Duration::from_secs(10),
                move || {
                    let (seen, after) = (seen2.clone(), after2.clone());
                    async move {
                        let s = seen.lock().unwrap();
                        s.contains("before") && s.iter().any(|n| n.starts_with(&after))
                    }
                },
            )
            .await;
            assert!(
                !seen.lock().unwrap().iter().any(|n| n.starts_with("other-")),
                "selector ignored"
            );
            collector.abort();
        }
    }
}
