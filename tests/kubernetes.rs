//! The manifests in `deploy/kubernetes/` agree with each other and with the `menshen.toml` their
//! ConfigMap carries: the config parses and compiles, listener and admin ports are the container
//! ports the Service and probes use, every path the config names is on the right mount, and the
//! pod can shut down within its grace period.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use menshen::config::file::FileConfig;
use menshen::observe::chain::ChainKey;
use serde::Deserialize;
use serde_yaml::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// Every document of every `*.yaml` file in `deploy/kubernetes/`.
fn manifests() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("read deploy/kubernetes")
        .map(|e| e.expect("list deploy/kubernetes").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a manifest");
        assert!(text.starts_with('#'), "{file:?} must start with a comment");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", file.display()));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name:?}"))
}

/// The value at a dotted path such as `spec.template.spec`; panics naming the path if absent.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let found = path.split('.').fold(v, |v, key| &v[key]);
    assert!(!found.is_null(), "missing {path}");
    found
}

/// The value at a dotted path as a `T` (a `String`, a number, a `Vec<Value>`, ...).
fn get<T: serde::de::DeserializeOwned>(v: &Value, path: &str) -> T {
    serde_yaml::from_value(at(v, path).clone()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config_text(docs: &[Value]) -> &str {
    at(find(docs, "ConfigMap", "menshen-config"), "data")["menshen.toml"]
        .as_str()
        .expect("data.menshen.toml is a string")
}

fn config(docs: &[Value]) -> FileConfig {
    toml::from_str(config_text(docs)).expect("the ConfigMap's menshen.toml fits the schema")
}

fn pod(docs: &[Value]) -> &Value {
    at(find(docs, "StatefulSet", "menshen"), "spec.template")
}

fn container(docs: &[Value]) -> Value {
    let containers: Vec<Value> = get(pod(docs), "spec.containers");
    assert_eq!(containers.len(), 1, "one container");
    containers.into_iter().next().expect("a container")
}

/// Container ports by name.
fn container_ports(docs: &[Value]) -> BTreeMap<String, u16> {
    let ports: Vec<Value> = get(&container(docs), "ports");
    ports
        .iter()
        .map(|p| (get(p, "name"), get(p, "containerPort")))
        .collect()
}

/// A port given by number or by container port name.
fn resolve_port(docs: &[Value], port: &Value) -> u16 {
    match port.as_str() {
        Some(name) => *container_ports(docs)
            .get(name)
            .unwrap_or_else(|| panic!("no container port named {name:?}")),
        None => serde_yaml::from_value(port.clone()).expect("a port number"),
    }
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .expect("config addr is ip:port")
        .port()
}

/// The volume mounted exactly at `dir`, checked to be a whole-directory mount (a subPath mount
/// never sees the kubelet's `..data` swap, so it would never reload).
fn volume_at(docs: &[Value], dir: &str) -> Value {
    let mount = mounts(docs)
        .into_iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
    assert!(mount["subPath"].is_null(), "{dir} uses subPath");
    let volumes: Vec<Value> = get(pod(docs), "spec.volumes");
    let claims: Vec<Value> = get(
        find(docs, "StatefulSet", "menshen"),
        "spec.volumeClaimTemplates",
    );
    let claims = claims.into_iter().map(|c| {
        // A claim template as a volume: `persistentVolumeClaim` holds its spec.
        let mut v = serde_yaml::Mapping::new();
        v.insert("name".into(), c["metadata"]["name"].clone());
        v.insert("persistentVolumeClaim".into(), c["spec"].clone());
        Value::Mapping(v)
    });
    volumes
        .into_iter()
        .chain(claims)
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume for the mount at {dir}"))
}

fn mounts(docs: &[Value]) -> Vec<Value> {
    get(&container(docs), "volumeMounts")
}

fn parent(file: &str) -> String {
    let dir = Path::new(file).parent().expect("an absolute file path");
    dir.display().to_string()
}

#[test]
fn the_config_parses_and_compiles() {
    let docs = manifests();
    let tls = config(&docs).tls.expect("a [tls] section");
    // Compile the real config beside stand-ins for what the pod mounts: the repository's
    // approved roots (the image's), and the Secret's placeholder files, which must be rejected
    // as certificates (not a config error) while everything else compiles.
    let dir = tempfile::tempdir().expect("temp dir");
    let live = dir.path().join("live");
    std::fs::create_dir(&live).expect("mkdir live");
    let files: BTreeMap<String, String> = get(find(&docs, "Secret", "menshen-certs"), "stringData");
    for (name, content) in files {
        std::fs::write(live.join(name), content).expect("write a placeholder");
    }
    let live = live.display().to_string();
    let mut text = config_text(&docs).replace(
        "/etc/menshen/certs/approved",
        concat!(env!("CARGO_MANIFEST_DIR"), "/certs/approved"),
    );
    for dir in &tls.certificates {
        text = text.replace(&format!("\"{dir}\""), &format!("\"{live}\""));
    }
    // The chain key stands in for Secret menshen-log-key (its placeholder is not a key).
    let log = config(&docs).access_log.expect("an [access_log] section");
    let key = dir.path().join("access-log.key");
    std::fs::write(&key, ChainKey::generate().expect("a key")).expect("write the key");
    text = text.replace(&log.chain_key_file, &key.display().to_string());
    let path = dir.path().join("menshen.toml");
    std::fs::write(&path, text).expect("write config");
    let load = menshen::config::load(&path, None).unwrap_or_else(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!(
            "the ConfigMap's config does not compile:\n{}",
            errors.join("\n")
        )
    });
    let snapshot = load.snapshot;
    assert!(snapshot.upstreams.contains_key("api"), "upstream api");
    assert!(
        !snapshot.cert_errors.is_empty(),
        "placeholders are rejected"
    );
    for e in &snapshot.cert_errors {
        assert!(e.to_string().contains(&live), "{e}");
    }
}

#[test]
fn listeners_are_container_ports_that_the_service_reaches() {
    let docs = manifests();
    let listeners: Vec<u16> = config(&docs)
        .listeners
        .iter()
        .map(|l| port_of(&l.addr))
        .collect();
    let container_ports = container_ports(&docs);
    for port in &listeners {
        assert!(
            container_ports.values().any(|p| p == port),
            "listener port {port} is not a containerPort"
        );
    }
    let service = find(&docs, "Service", "menshen");
    assert_eq!(get::<String>(service, "spec.type"), "LoadBalancer");
    assert_eq!(
        get::<String>(service, "spec.externalTrafficPolicy"),
        "Local"
    );
    let ports: Vec<Value> = get(service, "spec.ports");
    assert!(!ports.is_empty(), "the Service exposes ports");
    for port in &ports {
        let target = resolve_port(&docs, at(port, "targetPort"));
        assert!(
            listeners.contains(&target),
            "Service targets {target}, no listener"
        );
    }
}

#[test]
fn probes_use_the_admin_port() {
    let docs = manifests();
    let admin = config(&docs).admin.expect("an [admin] section");
    let container = container(&docs);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let http_get = at(&container, &format!("{probe}.httpGet"));
        assert_eq!(get::<String>(http_get, "path"), path, "{probe} path");
        let port = resolve_port(&docs, at(http_get, "port"));
        assert_eq!(port, port_of(&admin.addr), "{probe} port is admin.addr's");
    }
}

#[test]
fn every_path_in_the_config_is_on_the_right_mount() {
    let docs = manifests();
    let config = config(&docs);
    let args: Vec<String> = get(&container(&docs), "args");
    let flag = args.iter().position(|a| a == "--config");
    let file = args.get(flag.expect("--config") + 1).expect("its path");
    let volume = volume_at(&docs, &parent(file));
    assert_eq!(get::<String>(&volume, "configMap.name"), "menshen-config");

    let tls = config.tls.expect("a [tls] section");
    for dir in &tls.certificates {
        assert!(at(&volume_at(&docs, dir), "secret").is_mapping(), "{dir}");
    }
    let admin = config.admin.expect("an [admin] section");
    let token = admin.reload_token_file.expect("admin.reload_token_file");
    let volume = volume_at(&docs, &parent(&token));
    assert_eq!(get::<String>(&volume, "secret.secretName"), "menshen-admin");
    // The root filesystem is read-only: the access log needs a volume, and one that outlives the
    // pod for six months: a claim of the StatefulSet's, not an emptyDir.
    let log = config.access_log.expect("an [access_log] section");
    let logs = volume_at(&docs, &parent(&log.path));
    let modes: Vec<String> = get(&logs, "persistentVolumeClaim.accessModes");
    assert_eq!(modes, ["ReadWriteOnce"]);
    let key = volume_at(&docs, &parent(&log.chain_key_file));
    assert_eq!(get::<String>(&key, "secret.secretName"), "menshen-log-key");

    // The approved roots come from the image: a mount over them would hide them.
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read Dockerfile");
    assert!(dockerfile.contains("/etc/menshen/certs/approved"));
    for ca in &tls.approved_cas {
        assert!(ca.starts_with("/etc/menshen/certs/approved"), "{ca}");
        for mount in mounts(&docs) {
            let mounted: String = get(&mount, "mountPath");
            assert!(!Path::new(ca).starts_with(&mounted), "{mounted} hides {ca}");
        }
    }
}

#[test]
fn the_pod_is_locked_down_and_drains_in_time() {
    let docs = manifests();
    let security = at(&container(&docs), "securityContext").clone();
    assert!(get::<bool>(&security, "readOnlyRootFilesystem"));
    assert!(get::<bool>(&security, "runAsNonRoot"));
    assert!(!get::<bool>(&security, "allowPrivilegeEscalation"));
    let dropped: Vec<String> = get(&security, "capabilities.drop");
    assert_eq!(dropped, ["ALL"]);
    let grace: u64 = get(pod(&docs), "spec.terminationGracePeriodSeconds");
    let drain = config(&docs).server.grace_period.as_secs();
    // Long enough for a cloud load balancer to take the node out (README.md: Alibaba CLB,
    // Tencent CLB, AWS NLB health checks at their intervals and thresholds).
    let pre_stop: Vec<String> = get(&container(&docs), "lifecycle.preStop.exec.command");
    let sleep: u64 = pre_stop[1].parse().expect("sleep seconds");
    assert_eq!(pre_stop[0], "/bin/sleep");
    assert!(sleep >= 30, "preStop sleeps {sleep} s");
    assert!(
        grace > sleep + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain {drain}"
    );
}

#[test]
fn images_are_pinned_and_pods_spread_over_zones() {
    let docs = manifests();
    let image: String = get(&container(&docs), "image");
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read Dockerfile");
    let bases = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned());
    for image in bases.chain([image]) {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        // A version has a dot (1.95.0, 12.12-slim, 0.1.0): not `latest`, `1`, `1-bookworm`.
        let version = tag.split('-').next().unwrap_or("");
        assert!(
            image.contains("@sha256:") || version.contains('.'),
            "{image}: pin a version (or a digest), not a floating tag"
        );
    }
    let spread: Vec<Value> = get(pod(&docs), "spec.topologySpreadConstraints");
    let zone = spread
        .iter()
        .find(|c| c["topologyKey"] == "topology.kubernetes.io/zone")
        .expect("spread over zones");
    assert_eq!(get::<String>(zone, "whenUnsatisfiable"), "DoNotSchedule");
    let labels: BTreeMap<String, String> = get(pod(&docs), "metadata.labels");
    let selects: BTreeMap<String, String> = get(zone, "labelSelector.matchLabels");
    assert!(selects.iter().all(|(k, v)| labels.get(k) == Some(v)));
}

#[test]
fn the_admin_port_is_reachable_only_inside_the_cluster() {
    let docs = manifests();
    let policy = find(&docs, "NetworkPolicy", "menshen");
    let labels: BTreeMap<String, String> = get(pod(&docs), "metadata.labels");
    let selects: BTreeMap<String, String> = get(policy, "spec.podSelector.matchLabels");
    assert!(selects.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let admin = port_of(&config(&docs).admin.expect("[admin]").addr);
    let rules: Vec<Value> = get(policy, "spec.ingress");
    let mut admin_rules = 0;
    for rule in &rules {
        let ports: Vec<Value> = get(rule, "ports");
        if !ports
            .iter()
            .any(|p| resolve_port(&docs, &p["port"]) == admin)
        {
            continue;
        }
        admin_rules += 1;
        // Only pods of the cluster's namespaces: no ipBlock, no rule without `from`.
        let from: Vec<Value> = get(rule, "from");
        for peer in &from {
            assert!(peer["ipBlock"].is_null(), "admin open to {peer:?}");
            assert!(!peer["namespaceSelector"].is_null() || !peer["podSelector"].is_null());
        }
    }
    assert_eq!(admin_rules, 1, "one rule admits the admin port");
    // The public Service does not carry it either.
    let ports: Vec<Value> = get(find(&docs, "Service", "menshen"), "spec.ports");
    assert!(ports
        .iter()
        .all(|p| resolve_port(&docs, &p["targetPort"]) != admin));
}

#[test]
fn service_pdb_and_hpa_target_the_statefulset() {
    let docs = manifests();
    let labels: BTreeMap<String, String> = get(pod(&docs), "metadata.labels");
    let selects_pods = |manifest: &Value, path: &str| {
        let selector: BTreeMap<String, String> = get(manifest, path);
        assert!(!selector.is_empty(), "{path} selects nothing");
        for (k, v) in &selector {
            assert_eq!(labels.get(k), Some(v), "{path} selects {k} = {v}");
        }
    };
    let set = find(&docs, "StatefulSet", "menshen");
    selects_pods(set, "spec.selector.matchLabels");
    let headless = find(
        &docs,
        "Service",
        get::<String>(set, "spec.serviceName").as_str(),
    );
    assert_eq!(get::<String>(headless, "spec.clusterIP"), "None");
    selects_pods(find(&docs, "Service", "menshen"), "spec.selector");
    let pdb = find(&docs, "PodDisruptionBudget", "menshen");
    selects_pods(pdb, "spec.selector.matchLabels");
    assert_eq!(get::<u64>(pdb, "spec.minAvailable"), 1);

    let hpa = find(&docs, "HorizontalPodAutoscaler", "menshen");
    assert_eq!(get::<String>(hpa, "apiVersion"), "autoscaling/v2");
    let target = at(hpa, "spec.scaleTargetRef");
    assert_eq!(get::<String>(target, "kind"), "StatefulSet");
    assert_eq!(get::<String>(target, "name"), "menshen");
    let api: String = get(set, "apiVersion");
    assert_eq!(get::<String>(target, "apiVersion"), api);
    assert!(get::<u64>(hpa, "spec.minReplicas") >= 2);
}
