//! deploy/kubernetes/, checked offline: every document deserializes into its Kubernetes API type and serializes
//! back to exactly what was written (a misspelled or misplaced field is dropped by the typed object, so it fails);
//! the DaemonSet, ConfigMap and Secret agree with each other and with the image; and each device's config in the
//! ConfigMap passes `device-agent run --check` in the image, with the ConfigMap, the Secret (test TLS material) and
//! the bundles mounted where the DaemonSet mounts them.

use integration_tests::broker::{shared_dir, write_readable};
use integration_tests::container::Image;
use integration_tests::{models_dir, repo_root};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Where the DaemonSet mounts the Secret; the configs name their secret files below it.
const SECRET_DIR: &str = "/etc/edge-agent/secret/";

/// A YAML value as JSON, for serde; `at` names it in failures. Anything JSON cannot hold is refused.
fn to_json(yaml: &Yaml, at: &str) -> Value {
    match yaml {
        Yaml::String(text) => Value::from(text.as_str()),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::Real(text) => Value::from(text.parse::<f64>().unwrap_or_else(|e| panic!("{at}: {text}: {e}"))),
        Yaml::Boolean(flag) => Value::from(*flag),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => {
            Value::Array(items.iter().enumerate().map(|(i, item)| to_json(item, &format!("{at}[{i}]"))).collect())
        }
        Yaml::Hash(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, value)| {
                    let key = key.as_str().unwrap_or_else(|| panic!("{at}: the key {key:?} is not a string"));
                    (key.to_owned(), to_json(value, &format!("{at}.{key}")))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::BadValue => panic!("{at}: {yaml:?} (aliases are not used in these manifests)"),
    }
}

/// Every document of every `*.yaml` file in deploy/kubernetes/, as JSON, with the file and index it came from.
fn documents() -> Vec<(String, Value)> {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (index, document) in parsed.iter().enumerate() {
            let at = format!("{name}#{index}");
            documents.push((at.clone(), to_json(document, &at)));
        }
    }
    documents
}

/// `document` as a `T`, after checking that `T` serializes back to exactly `document`.
fn typed<T: DeserializeOwned + Serialize>(at: &str, document: &Value) -> T {
    let object: T = serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
    let again = serde_json::to_value(&object).expect("serialize");
    assert_eq!(&again, document, "{at}: fields the Kubernetes API does not have (or has elsewhere) are lost");
    object
}

struct Manifests {
    daemon_set: DaemonSet,
    config_map: ConfigMap,
    secret: Secret,
    namespace: Namespace,
}

fn manifests() -> Manifests {
    let (mut daemon_sets, mut config_maps, mut secrets, mut namespaces) = (vec![], vec![], vec![], vec![]);
    for (at, document) in documents() {
        match document["kind"].as_str() {
            Some("DaemonSet") => daemon_sets.push(typed::<DaemonSet>(&at, &document)),
            Some("ConfigMap") => config_maps.push(typed::<ConfigMap>(&at, &document)),
            Some("Secret") => secrets.push(typed::<Secret>(&at, &document)),
            Some("Namespace") => namespaces.push(typed::<Namespace>(&at, &document)),
            other => panic!("{at}: unexpected kind {other:?}"),
        }
    }
    let one = |what: &str, n: usize| assert_eq!(n, 1, "deploy/kubernetes/ has {n} {what}(s), not 1");
    one("DaemonSet", daemon_sets.len());
    one("ConfigMap", config_maps.len());
    one("Secret", secrets.len());
    one("Namespace", namespaces.len());
    Manifests {
        daemon_set: daemon_sets.remove(0),
        config_map: config_maps.remove(0),
        secret: secrets.remove(0),
        namespace: namespaces.remove(0),
    }
}

fn agent_container(daemon_set: &DaemonSet) -> &Container {
    let pod = daemon_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(pod.containers.len(), 1, "one container: the agent");
    &pod.containers[0]
}

/// The ConfigMap's device configs, by node name (`<node>.toml`).
fn device_configs(config_map: &ConfigMap) -> BTreeMap<String, String> {
    let data = config_map.data.clone().expect("ConfigMap data");
    assert!(!data.is_empty(), "the ConfigMap holds no config");
    data.into_iter()
        .map(|(key, text)| {
            let node = key.strip_suffix(".toml").unwrap_or_else(|| panic!("ConfigMap key {key}: not <node>.toml"));
            (node.to_owned(), text)
        })
        .collect()
}

/// Every string in `value` (a parsed config) that names a file of the Secret.
fn secret_files(value: &toml::Value, found: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => found.extend(text.strip_prefix(SECRET_DIR).map(str::to_owned)),
        toml::Value::Array(items) => items.iter().for_each(|item| secret_files(item, found)),
        toml::Value::Table(table) => table.values().for_each(|item| secret_files(item, found)),
        _ => {}
    }
}

/// systemd's stop timeout for the agent (cross/package/edge-agent.service): the drain the pod must allow too.
fn systemd_stop_timeout_secs() -> i64 {
    let unit = std::fs::read_to_string(repo_root().join("cross/package/edge-agent.service")).expect("unit");
    unit.lines()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .and_then(|value| value.parse().ok())
        .expect("TimeoutStopSec= in edge-agent.service")
}

#[test]
fn the_manifests_are_kubernetes_objects_that_agree_with_each_other_and_the_image() {
    let Manifests { daemon_set, config_map, secret, namespace } = manifests();
    let namespace_name = namespace.metadata.name.as_deref();
    for namespaced in [&daemon_set.metadata, &config_map.metadata, &secret.metadata] {
        assert_eq!(namespaced.namespace.as_deref(), namespace_name, "{:?} is in another namespace", namespaced.name);
    }
    let spec = daemon_set.spec.as_ref().expect("DaemonSet spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(
        spec.selector.match_labels.as_ref(),
        spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
        "the selector selects the template's pods"
    );
    assert!(pod.termination_grace_period_seconds >= Some(systemd_stop_timeout_secs()), "time to drain");
    let security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!((security.run_as_user, security.run_as_non_root), (Some(10001), Some(true)), "the image's user");

    let container = agent_container(&daemon_set);
    let image = container.image.as_deref().expect("image");
    assert!(image.ends_with(&format!("/edge-agent:{}", env!("CARGO_PKG_VERSION"))), "{image}: not this version");
    assert_eq!(
        container.args.as_deref(),
        Some(&["run".to_owned(), "--config".to_owned(), "/etc/edge-agent/$(NODE_NAME).toml".to_owned()][..])
    );
    let node_name = container.env.iter().flatten().find(|e| e.name == "NODE_NAME").expect("NODE_NAME");
    let field = node_name.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
    assert_eq!(field, Some("spec.nodeName"));

    // Mounts: config, Secret and bundles read-only; the state on the node's disk, at the image's volume.
    let volumes: BTreeMap<&str, _> = pod.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    let mounts: BTreeMap<&str, _> =
        container.volume_mounts.iter().flatten().map(|m| (m.mount_path.as_str(), m)).collect();
    for (path, read_only) in
        [("/etc/edge-agent", true), ("/etc/edge-agent/secret", true), ("/models", true), ("/var/lib/edge-agent", false)]
    {
        let mount = mounts.get(path).unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        assert_eq!(mount.read_only.unwrap_or(false), read_only, "{path}");
        assert!(volumes.contains_key(mount.name.as_str()), "{path}: no volume {}", mount.name);
    }
    let volume_at = |path: &str| volumes[mounts[path].name.as_str()];
    assert_eq!(
        volume_at("/etc/edge-agent").config_map.as_ref().map(|c| c.name.as_str()),
        config_map.metadata.name.as_deref()
    );
    assert_eq!(
        volume_at("/etc/edge-agent/secret").secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        secret.metadata.name.as_deref()
    );
    assert!(volume_at("/var/lib/edge-agent").host_path.is_some(), "the state survives pods: a hostPath");

    // The liveness probe asks /metrics on the port every config listens on.
    let metrics = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some("metrics")).expect("port");
    let probe = container.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("liveness httpGet");
    assert_eq!(probe.path.as_deref(), Some("/metrics"));

    // One config per node, each with the node's name as device_id, naming only files the Secret has.
    let secret_keys: Vec<&String> = secret.string_data.iter().flatten().map(|(key, _)| key).collect();
    for (node, text) in device_configs(&config_map) {
        let config: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{node}.toml: {e}"));
        assert_eq!(config["device_id"].as_str(), Some(node.as_str()), "{node}.toml: device_id is the node's name");
        let listen = config["metrics"]["listen"].as_str().unwrap_or_else(|| panic!("{node}.toml: no metrics.listen"));
        assert!(listen.ends_with(&format!(":{}", metrics.container_port)), "{node}.toml: {listen}");
        let mut files = Vec::new();
        secret_files(&config, &mut files);
        assert!(!files.is_empty(), "{node}.toml names no file of the Secret");
        for file in files {
            assert!(secret_keys.contains(&&file), "{node}.toml names {SECRET_DIR}{file}, which the Secret lacks");
        }
    }
}

#[test]
fn each_device_config_passes_the_agents_check_in_the_image_with_the_daemon_sets_mounts() {
    let Manifests { daemon_set, config_map, secret, .. } = manifests();
    let image = Image::build();
    // The ConfigMap and the Secret as the kubelet writes them; real TLS material in place of the placeholders.
    let config_dir = shared_dir();
    for (node, text) in device_configs(&config_map) {
        write_readable(&config_dir.path().join(format!("{node}.toml")), text.as_bytes());
    }
    let secret_dir = shared_dir();
    let pki = mqtt::testing::Pki::generate();
    let material: BTreeMap<&str, &Path> =
        [("ca.pem", pki.ca.as_path()), ("client.pem", &pki.client_cert), ("client.key", &pki.client_key)].into();
    for key in secret.string_data.iter().flatten().map(|(key, _)| key.as_str()) {
        let contents = match material.get(key) {
            Some(path) => std::fs::read(path).expect("test PKI file"),
            None => b"test-password".to_vec(),
        };
        write_readable(&secret_dir.path().join(key), &contents);
    }
    // The Secret's mount point inside the read-only ConfigMap mount (the kubelet makes it likewise).
    std::fs::create_dir(config_dir.path().join("secret")).expect("mount point");
    let models = models_dir();
    let host_dirs: BTreeMap<&str, &Path> = [
        ("/etc/edge-agent", config_dir.path()),
        ("/etc/edge-agent/secret", secret_dir.path()),
        ("/models", models.as_path()),
    ]
    .into();
    let mounts: Vec<(&Path, &str)> = agent_container(&daemon_set)
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| host_dirs.get(m.mount_path.as_str()).map(|host| (*host, m.mount_path.as_str())))
        .collect();
    assert_eq!(mounts.len(), 3, "config, Secret and bundles are mounted");
    for node in device_configs(&config_map).keys() {
        let config = format!("/etc/edge-agent/{node}.toml");
        let output = image.run_once(&mounts, &["run", "--check", "--config", &config]);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{node}: device-agent run --check failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("is valid"), "{node}: {stdout}");
    }
}
