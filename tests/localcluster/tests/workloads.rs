//! Real workloads on the node agent: Secrets through volumes and env, service-account
//! identities, claims that outlive pods, names in place of DNS, probes that gate readiness,
//! and Services whose EndpointSlices route the API server to a pod.
//!
//! Run as root. Under `make test` the tests share the cluster named by LOCALCLUSTER_NAME.

mod common;

use std::time::Duration;

use common::{cluster, eventually, inside, log, object, pod_ip, ready};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use localcluster::{LocalCluster, test_namespace};
use serde_json::json;

#[tokio::test]
async fn a_secret_reaches_a_pod_through_a_volume_and_env_and_updates_arrive() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "secret")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret =
        object(json!({"metadata": {"name": "creds"}, "stringData": {"password": "first"}}));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let script =
        "echo env=$PASSWORD; while true; do echo file=$(cat /creds/password); sleep 1; done";
    let pod: Pod = object(json!({
        "metadata": {"name": "reader"},
        "spec": {
            "containers": [{
                "name": "reader", "image": "busybox", "command": ["sh", "-c", script],
                "env": [{"name": "PASSWORD", "valueFrom":
                    {"secretKeyRef": {"name": "creds", "key": "password"}}}],
                "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": true}],
            }],
            "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}],
        },
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "the pod reads the Secret",
        Duration::from_secs(60),
        || async {
            let text = log(&cluster, &ns, "reader", "reader");
            (text.contains("env=first") && text.contains("file=first")).then_some(())
        },
    )
    .await;

    let update = Patch::Merge(json!({"stringData": {"password": "second"}}));
    secrets
        .patch("creds", &PatchParams::default(), &update)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, took) = eventually(
        "the update reaches the volume",
        Duration::from_secs(60),
        || async {
            log(&cluster, &ns, "reader", "reader")
                .contains("file=second")
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "Secret update seen in the volume after {:.1}s",
        took.as_secs_f64()
    );
}

#[tokio::test]
async fn a_pod_uses_its_own_service_account_identity() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "identity")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let roles = format!(
        "{{\"apiVersion\": \"rbac.authorization.k8s.io/v1\", \"kind\": \"Role\",
          \"metadata\": {{\"name\": \"pods\", \"namespace\": \"{ns}\"}},
          \"rules\": [{{\"apiGroups\": [\"\"], \"resources\": [\"pods\"], \"verbs\": [\"list\"]}}]}}"
    );
    let role: k8s_openapi::api::rbac::v1::Role =
        serde_json::from_str(&roles).unwrap_or_else(|e| panic!("{e}"));
    Api::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = object(json!({
        "metadata": {"name": "pods", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }));
    Api::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "TOKEN=$(cat {sa}/token); NS=$(cat {sa}/namespace); \
         for what in pods secrets; do \
           code=$(curl -s -o /dev/null -w '%{{http_code}}' --cacert {sa}/ca.crt \
             -H \"Authorization: Bearer $TOKEN\" \
             https://kubernetes.default.svc/api/v1/namespaces/$NS/$what); \
           echo $what=$code; done"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = object(json!({
        "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "client", "image": "debian", "command": ["sh", "-c", script]}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (text, _) = eventually("the client's answers", Duration::from_secs(60), || async {
        let text = log(&cluster, &ns, "client", "client");
        text.contains("secrets=").then_some(text)
    })
    .await;
    assert!(
        text.contains("pods=200"),
        "its role lets it list pods: {text}"
    );
    assert!(text.contains("secrets=403"), "and nothing else: {text}");
}

#[tokio::test]
async fn a_replacement_pod_finds_the_data_on_its_claim() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "claim")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let script = "[ -f /data/first ] || echo \"written by $(hostname) $$\" > /data/first; \
                  echo found=$(cat /data/first); sleep 3600";
    let set: StatefulSet = object(json!({
        "metadata": {"name": "keeper"},
        "spec": {
            "replicas": 1, "serviceName": "keeper",
            "selector": {"matchLabels": {"app": "keeper"}},
            "template": {"metadata": {"labels": {"app": "keeper"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "keeper", "image": "busybox",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            }},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }));
    sets.create(&PostParams::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (first, _) = eventually("the first pod writes", Duration::from_secs(90), || async {
        let text = log(&cluster, &ns, "keeper-0", "keeper");
        text.lines()
            .find(|l| l.starts_with("found="))
            .map(str::to_string)
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let old = pods.get("keeper-0").await.unwrap_or_else(|e| panic!("{e}"));
    pods.delete("keeper-0", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "a replacement reads the same data",
        Duration::from_secs(90),
        || async {
            let pod = pods.get("keeper-0").await.ok()?;
            if pod.metadata.uid == old.metadata.uid {
                return None;
            }
            let text = log(&cluster, &ns, "keeper-0", "keeper");
            (text.lines().filter(|l| *l == first).count() >= 2).then_some(())
        },
    )
    .await;
}

/// An OpenBao server with TLS, behind a headless Service, Ready only once unsealed.
#[tokio::test]
async fn names_resolve_and_an_https_probe_waits_for_unseal() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "names")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hosts: Vec<String> = [
        "bao-0.bao",
        &format!("bao-0.bao.{ns}.svc"),
        "bao",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cert, key) = cluster
        .serving_cert(&hosts)
        .unwrap_or_else(|e| panic!("{e}"));
    let ca = cluster.ca_pem().unwrap_or_else(|e| panic!("{e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let tls: Secret = object(json!({"metadata": {"name": "bao-tls"},
        "stringData": {"tls.crt": cert, "tls.key": key, "ca.crt": ca}}));
    secrets
        .create(&PostParams::default(), &tls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = "storage \"raft\" { path = \"/bao/data\"\n node_id = \"bao-0\" }\n\
                  listener \"tcp\" { address = \"0.0.0.0:8200\"\n\
                    tls_cert_file = \"/bao/tls/tls.crt\"\n tls_key_file = \"/bao/tls/tls.key\" }\n\
                  api_addr = \"https://127.0.0.1:8200\"\n\
                  cluster_addr = \"https://127.0.0.1:8201\"\n";
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let map: ConfigMap = object(json!({"metadata": {"name": "bao"}, "data": {"bao.hcl": config}}));
    maps.create(&PostParams::default(), &map)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service: Service = object(json!({"metadata": {"name": "bao"}, "spec": {
        "clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "bao"},
        "ports": [{"name": "https", "port": 8200}]}}));
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let set: StatefulSet = object(json!({
        "metadata": {"name": "bao"},
        "spec": {
            "replicas": 1, "serviceName": "bao",
            "selector": {"matchLabels": {"app": "bao"}},
            "template": {"metadata": {"labels": {"app": "bao"}}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {"name": "bao", "image": "openbao/openbao",
                     "args": ["server", "-config=/bao/config/bao.hcl"],
                     "readinessProbe": {"periodSeconds": 1, "httpGet": {
                         "scheme": "HTTPS", "port": 8200,
                         "path": "/v1/sys/health?standbyok=true"}},
                     "volumeMounts": [
                         {"name": "tls", "mountPath": "/bao/tls"},
                         {"name": "config", "mountPath": "/bao/config"},
                         {"name": "data", "mountPath": "/bao/data"}]},
                    {"name": "client", "image": "debian", "command": ["sh", "-c",
                     "sleep 2; getent hosts bao-0.bao; \
                      curl -s --cacert /bao/tls/ca.crt https://bao-0.bao:8200/v1/sys/seal-status; \
                      echo; sleep 3600"],
                     "volumeMounts": [{"name": "tls", "mountPath": "/bao/tls"}]},
                ],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "bao-tls"}},
                    {"name": "config", "configMap": {"name": "bao"}},
                    {"name": "data", "emptyDir": {}},
                ],
            }},
        },
    }));
    sets.create(&PostParams::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (pod, _) = eventually("bao-0 running", Duration::from_secs(90), || async {
        let pod = pods.get("bao-0").await.ok()?;
        let statuses = pod.status.as_ref()?.container_statuses.clone()?;
        statuses
            .iter()
            .all(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()))
            .then_some(pod)
    })
    .await;
    let ip = pod_ip(&pod);
    let (text, _) = eventually(
        "the sidecar reaches bao-0 by name",
        Duration::from_secs(60),
        || async {
            let text = log(&cluster, &ns, "bao-0", "client");
            text.contains("\"sealed\"").then_some(text)
        },
    )
    .await;
    assert!(
        text.contains(&ip),
        "bao-0.bao resolves to the pod's address: {text}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sealed = pods.get("bao-0").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !ready(&sealed),
        "an uninitialised, sealed server is not Ready"
    );

    // Initialise and unseal from inside the cluster's namespace.
    let url = format!("https://{ip}:8200/v1");
    let init = inside_curl(
        &cluster,
        &[
            "-X",
            "PUT",
            "-d",
            r#"{"secret_shares":1,"secret_threshold":1}"#,
            &format!("{url}/sys/init"),
        ],
    );
    let init: serde_json::Value =
        serde_json::from_str(&init).unwrap_or_else(|e| panic!("{e}: {init}"));
    let key = init["keys"][0].as_str().unwrap_or_default().to_string();
    let body = json!({"key": key}).to_string();
    inside_curl(
        &cluster,
        &["-X", "PUT", "-d", &body, &format!("{url}/sys/unseal")],
    );
    let (_, took) = eventually(
        "bao-0 Ready once unsealed",
        Duration::from_secs(30),
        || async { ready(&pods.get("bao-0").await.ok()?).then_some(()) },
    )
    .await;
    eprintln!("Ready {:.1}s after unseal", took.as_secs_f64());
}

/// Names made after a pod started reach it through the agent's watch: another pod by
/// `<pod>.<headless-svc>.<ns>.svc` and `.svc.cluster.local`, and a ClusterIP Service by its
/// short name and `<svc>.<ns>.svc`.
#[tokio::test]
async fn a_pod_resolves_a_pod_and_services_made_after_it() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "peers")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names = [
        format!("peer-b.peers.{ns}.svc"),
        format!("peer-b.peers.{ns}.svc.cluster.local"),
        "web".to_string(),
        format!("web.{ns}.svc"),
    ];

    // A looks every name up each second, printing `name=address` (nothing when unknown).
    let script = format!(
        "while true; do for n in {}; do set -- $(getent hosts \"$n\"); echo \"$n=$1\"; \
         done; sleep 1; done",
        names.join(" ")
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let a: Pod = object(json!({"metadata": {"name": "peer-a"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", script]}]}}));
    pods.create(&PostParams::default(), &a)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let unknown = format!("web.{ns}.svc=\n");
    eventually(
        "peer-a looks names up before they exist",
        Duration::from_secs(60),
        || async {
            log(&cluster, &ns, "peer-a", "main")
                .contains(&unknown)
                .then_some(())
        },
    )
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for service in [
        json!({"metadata": {"name": "peers"}, "spec": {"clusterIP": "None",
            "selector": {"app": "peer"}, "ports": [{"name": "http", "port": 8080}]}}),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "peer"},
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}),
    ] {
        services
            .create(&PostParams::default(), &object(service))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let b: Pod = object(
        json!({"metadata": {"name": "peer-b", "labels": {"app": "peer"}},
        "spec": {"hostname": "peer-b", "subdomain": "peers", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}),
    );
    pods.create(&PostParams::default(), &b)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (b_ip, _) = eventually("peer-b Ready", Duration::from_secs(60), || async {
        let pod = pods.get("peer-b").await.ok()?;
        (ready(&pod) && !pod_ip(&pod).is_empty()).then(|| pod_ip(&pod))
    })
    .await;
    let a_ip = pod_ip(&pods.get("peer-a").await.unwrap_or_else(|e| panic!("{e}")));
    assert_ne!(a_ip, b_ip, "two pods, two addresses");

    let wanted: Vec<String> = names.iter().map(|n| format!("{n}={b_ip}\n")).collect();
    let (_, took) = eventually(
        "peer-a resolves every name to peer-b",
        Duration::from_secs(60),
        || async {
            let text = log(&cluster, &ns, "peer-a", "main");
            wanted.iter().all(|line| text.contains(line)).then_some(())
        },
    )
    .await;
    eprintln!(
        "names reached peer-a {:.1}s after peer-b was Ready",
        took.as_secs_f64()
    );
}

fn inside_curl(cluster: &LocalCluster, args: &[&str]) -> String {
    let mut curl = vec!["curl", "-sk", "--max-time", "10"];
    curl.extend_from_slice(args);
    inside(cluster, &curl).1
}

/// A validating webhook served by a pod behind a Service with a selector: the controller
/// manager's EndpointSlice lists the pod once it is Ready, and the API server calls it there.
#[tokio::test]
async fn endpoint_slices_list_ready_pods_and_route_a_webhook_to_one() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "route")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = cluster
        .serving_cert(&[format!("hook.{ns}.svc")])
        .unwrap_or_else(|e| panic!("{e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let tls: Secret = object(json!({"metadata": {"name": "hook-tls"},
        "stringData": {"tls.crt": cert, "tls.key": key}}));
    secrets
        .create(&PostParams::default(), &tls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A small admission webhook in Python, which the host has: refuses labelled ConfigMaps.
    let server = r#"
import http.server, json, ssl
class Review(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        request = review['request']
        labels = request['object']['metadata'].get('labels') or {}
        denied = labels.get('deny') == 'yes'
        response = {'uid': request['uid'], 'allowed': not denied}
        if denied:
            response['status'] = {'code': 403, 'message': 'refused by the pod webhook'}
        body = json.dumps({'apiVersion': 'admission.k8s.io/v1', 'kind': 'AdmissionReview',
                           'response': response}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain('/tls/tls.crt', '/tls/tls.key')
server = http.server.HTTPServer(('0.0.0.0', 8443), Review)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = object(json!({
        "metadata": {"name": "hook", "labels": {"app": "hook"}},
        "spec": {"containers": [{
            "name": "hook", "image": "debian", "command": ["python3", "-c", server],
            "ports": [{"name": "https", "containerPort": 8443}],
            "readinessProbe": {"periodSeconds": 1, "tcpSocket": {"port": "https"}},
            "volumeMounts": [{"name": "tls", "mountPath": "/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "hook-tls"}}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service: Service = object(json!({"metadata": {"name": "hook"}, "spec": {
        "selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": "https"}]}}));
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (running, _) = eventually("the hook pod Ready", Duration::from_secs(60), || async {
        let pod = pods.get("hook").await.ok()?;
        ready(&pod).then_some(pod)
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the EndpointSlice lists the pod",
        Duration::from_secs(30),
        || async {
            let params = ListParams::default().labels("kubernetes.io/service-name=hook");
            let items = slices.list(&params).await.ok()?.items;
            let addresses: Vec<String> = items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.clone())
                .collect();
            (addresses == [pod_ip(&running)]).then_some(())
        },
    )
    .await;

    use base64::Engine;
    let ca = cluster.ca_pem().unwrap_or_else(|e| panic!("{e}"));
    let configs: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    let config = object(json!({
        "metadata": {"name": format!("pod-hook-{ns}")},
        "webhooks": [{
            "name": "pod-hook.localcluster.test",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}],
            "clientConfig": {
                "service": {"namespace": ns, "name": "hook", "path": "/", "port": 443},
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
        }],
    }));
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let labelled: ConfigMap = object(json!({"metadata": {"name": "x", "labels": {"deny": "yes"}}}));
    eventually(
        "the pod's webhook refuses",
        Duration::from_secs(30),
        || async {
            match maps.create(&PostParams::default(), &labelled).await {
                Err(kube::Error::Api(s)) => s
                    .message
                    .contains("refused by the pod webhook")
                    .then_some(()),
                Ok(_) => {
                    let _ = maps.delete("x", &DeleteParams::default()).await;
                    None
                }
                Err(_) => None,
            }
        },
    )
    .await;
    let _ = configs
        .delete(&format!("pod-hook-{ns}"), &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn sub_paths_mount_one_file_inside_another_volume() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "subpath")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let map: ConfigMap = object(json!({"metadata": {"name": "app"},
        "data": {"app.conf": "setting = 1\n", "other": "x"}}));
    maps.create(&PostParams::default(), &map)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let script = "cat /data/conf/app.conf; ls /data/conf; cat /etc/app/app.conf; \
                  echo written > /data/out; echo done";
    let pod: Pod = object(json!({
        "metadata": {"name": "sub"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "sub", "image": "busybox", "command": ["sh", "-c", script],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "app", "mountPath": "/data/conf/app.conf", "subPath": "app.conf"},
                {"name": "app", "mountPath": "/etc/app/app.conf", "subPath": "app.conf",
                 "readOnly": true},
            ]}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "app", "configMap": {"name": "app"}}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (text, _) = eventually("the pod finishes", Duration::from_secs(60), || async {
        let text = log(&cluster, &ns, "sub", "sub");
        text.contains("done").then_some(text)
    })
    .await;
    assert_eq!(
        text.matches("setting = 1").count(),
        2,
        "both sub-path files read: {text}"
    );
    assert!(
        !text.contains("other"),
        "only the one key is mounted: {text}"
    );
    assert!(
        !std::path::Path::new("/etc/app").exists(),
        "the host is unchanged"
    );
}
