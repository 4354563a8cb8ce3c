//! The kubectl binary: apply, get with printer columns, patch, create, scale, wait,
//! delete, and its protobuf-speaking generators.

use crate::{SHELL_IMAGE, conformance, widget_crd};

conformance! {
    async fn kubectl_gets_applies_patches_scales_waits_and_deletes(t) {
        let dir = tempfile::tempdir().unwrap();
        let crd_file = dir.path().join("crd.json");
        std::fs::write(&crd_file, serde_json::to_vec(&widget_crd(t)).unwrap()).unwrap();
        let (ok, out, err) = t.kubectl(&["apply", "--server-side", "-f", crd_file.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
        let crd = format!("crd/{}", t.crd_name());
        let (ok, _, err) = t.kubectl(&["wait", "--for=condition=Established", &crd, "--timeout=30s"]);
        assert!(ok, "{err}");
        let manifest = dir.path().join("w.yaml");
        std::fs::write(
            &manifest,
            format!("apiVersion: {}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 7\n", t.group),
        )
        .unwrap();
        // kubectl's discovery cache may not know the new group for a moment.
        let mut applied = (false, String::new(), String::new());
        for _ in 0..50 {
            applied = t.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
            if applied.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let (ok, out, err) = applied;
        assert!(ok && out.contains("serverside-applied"), "{out}{err}");
        let (ok, out, err) = t.kubectl(&["get", &t.short_name]);
        assert!(ok, "{err}");
        let header = out.lines().next().unwrap_or_default();
        assert!(
            header.contains("NAME") && header.contains("SIZE") && header.contains("PHASE") && header.contains("AGE"),
            "{out}"
        );
        assert!(out.lines().nth(1).unwrap_or_default().contains('7'), "{out}");
        let widget = format!("widget.{}", t.group);
        let (ok, out, _) = t.kubectl(&["get", &widget, "w1", "-o", "yaml"]);
        assert!(
            ok && out.contains("size: 7") && out.contains("color: red") && out.contains("resourceVersion"),
            "{out}"
        );
        let (ok, _, err) = t.kubectl(&["patch", &t.short_name, "w1", "--type=merge", "-p", "{\"spec\":{\"size\":8}}"]);
        assert!(ok, "{err}");
        let (ok, out, _) = t.kubectl(&["get", &t.short_name, "w1", "-o", "jsonpath={.spec.size}"]);
        assert!(ok && out == "8", "{out}");
        let (ok, _, err) = t.kubectl(&["patch", &t.short_name, "w1", "--type=merge", "-p", "{\"spec\":{\"size\":\"x\"}}"]);
        assert!(!ok && err.contains("Invalid"), "{err}");

        let deployment = dir.path().join("d.yaml");
        std::fs::write(&deployment, format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sleeper\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: sleeper}}\n  template:\n    metadata:\n      labels: {{app: sleeper}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - {{name: sleeper, image: '{SHELL_IMAGE}', args: ['-c', 'exec sleep 600']}}\n")).unwrap();
        let (ok, out, err) = t.kubectl(&["create", "-f", deployment.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
        let (ok, _, err) = t.kubectl(&["create", "-f", deployment.to_str().unwrap()]);
        assert!(!ok && err.contains("AlreadyExists"), "{err}");
        let (ok, _, err) = t.kubectl(&["scale", "deployment", "sleeper", "--replicas=3"]);
        assert!(ok, "{err}");
        let (ok, _, err) = t.kubectl(&["wait", "--for=condition=Available", "deployment/sleeper", "--timeout=60s"]);
        assert!(ok, "{err}");
        let (ok, _, err) = t.kubectl(&["rollout", "status", "deployment/sleeper", "--timeout=60s"]);
        assert!(ok, "{err}");
        let (ok, out, _) = t.kubectl(&["get", "deploy", "sleeper"]);
        assert!(ok && out.contains("3/3"), "{out}");
        let (ok, out, _) = t.kubectl(&["get", "pods", "-l", "app=sleeper", "-o", "name"]);
        assert!(ok && out.lines().count() == 3, "{out}");
        // kubectl's generators send protobuf.
        let (ok, _, err) = t.kubectl(&["create", "configmap", "c1", "--from-literal=a=b"]);
        assert!(ok, "{err}");
        let (ok, out, err) = t.kubectl(&["get", "configmap", "c1", "-o", "jsonpath={.data.a}"]);
        assert!(ok && out == "b", "{out}{err}");
        let (ok, _, err) = t.kubectl(&["delete", "deployment", "sleeper"]);
        assert!(ok, "{err}");
        let (ok, _, err) = t.kubectl(&["wait", "--for=delete", "pod", "-l", "app=sleeper", "--timeout=60s"]);
        assert!(ok, "{err}");
    }
}
