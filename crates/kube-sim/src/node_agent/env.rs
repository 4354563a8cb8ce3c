//! A container's environment, resolved at start as the kubelet resolves it: `envFrom`
//! (ConfigMaps and Secrets, with prefixes), then `env` in order — `value` with `$(VAR)`
//! references to earlier variables, `fieldRef`, `configMapKeyRef`, `secretKeyRef` (and
//! their `optional`). Read through the API with the agent's own identity.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};

/// Key → value of a ConfigMap or Secret; `None` when it does not exist.
async fn read_map(
    client: &Client,
    namespace: &str,
    secret: bool,
    name: &str,
) -> Result<Option<Vec<(String, String)>>, String> {
    if secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading secret {namespace}/{name}: {e}"))?;
        Ok(found.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
                .collect()
        }))
    } else {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading configmap {namespace}/{name}: {e}"))?;
        Ok(found.map(|c| c.data.unwrap_or_default().into_iter().collect()))
    }
}

fn field(pod: &Pod, path: &str, pod_ip: Ipv4Addr, node_ip: Ipv4Addr) -> Result<String, String> {
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => node_ip.to_string(),
        other => {
            if let Some(label) = quoted("metadata.labels['") {
                pod.labels().get(&label).cloned().unwrap_or_default()
            } else if let Some(annotation) = quoted("metadata.annotations['") {
                pod.annotations()
                    .get(&annotation)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef {other}"));
            }
        }
    })
}

pub async fn resolve_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    pod_ip: Ipv4Addr,
    node_ip: Ipv4Addr,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let refs = [
            source
                .config_map_ref
                .as_ref()
                .map(|r| (false, r.name.clone(), r.optional)),
            source
                .secret_ref
                .as_ref()
                .map(|r| (true, r.name.clone(), r.optional)),
        ];
        for (secret, name, optional) in refs.into_iter().flatten() {
            match read_map(client, &namespace, secret, &name).await? {
                Some(pairs) => {
                    env.extend(pairs.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)))
                }
                None if optional == Some(true) => {}
                None => {
                    let kind = if secret { "secret" } else { "configmap" };
                    return Err(format!("{kind} \"{name}\" not found"));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            let expanded = expand(value, &env);
            env.push((var.name.clone(), expanded));
            continue;
        }
        let Some(from) = &var.value_from else {
            env.push((var.name.clone(), String::new()));
            continue;
        };
        let value = if let Some(f) = &from.field_ref {
            Some(field(pod, &f.field_path, pod_ip, node_ip)?)
        } else {
            let reference = from
                .config_map_key_ref
                .as_ref()
                .map(|r| (false, r.name.clone(), r.key.clone(), r.optional))
                .or_else(|| {
                    from.secret_key_ref
                        .as_ref()
                        .map(|r| (true, r.name.clone(), r.key.clone(), r.optional))
                });
            match reference {
                Some((secret, name, key, optional)) => {
                    let value = read_map(client, &namespace, secret, &name)
                        .await?
                        .and_then(|pairs| pairs.into_iter().find(|(k, _)| *k == key))
                        .map(|(_, v)| v);
                    match value {
                        Some(v) => Some(v),
                        None if optional == Some(true) => None,
                        None => {
                            let kind = if secret { "secret" } else { "configmap" };
                            return Err(format!(
                                "couldn't find key {key} in {kind} {namespace}/{name}"
                            ));
                        }
                    }
                }
                None => return Err(format!("env {}: unsupported valueFrom", var.name)),
            }
        };
        if let Some(v) = value {
            env.push((var.name.clone(), v));
        }
    }
    Ok(env)
}

/// `$(VAR)` references to variables defined earlier, as Kubernetes expands them
/// (`$$(VAR)` stays literal `$(VAR)`).
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
            continue;
        }
        if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
            continue;
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_to_earlier_variables_and_unknown_ones_stay() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x-$(A)-$(B)", &env), "x-1-$(B)");
        assert_eq!(expand("$$(A) costs $5", &env), "$(A) costs $5");
    }
}
