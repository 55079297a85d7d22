"""Security properties of k8s/, docker/ and docs/deploy.md that need no server (issue 18).

What the servers themselves enforce (the MinIO policies, MLflow's basic auth) is checked in
tests/integration/test_security_servers.py; `make lint` runs checkov and hadolint.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
PLACEHOLDER = "CHANGE_ME"
ROOT_SECRET = "mmm-minio-root"
# The MinIO server and its one-off setup Job (which needs admin rights to create the users).
ROOT_READERS = {("Deployment", "mmm-minio"), ("Job", "mmm-minio-buckets")}
MIN_UID = 10000  # above the UIDs a node's own users get
DOCKERFILES = [REPO / "docker" / "Dockerfile.cpu", REPO / "docker" / "Dockerfile.gpu"]
MLFLOW_DOCKERFILE = K8S / "mlflow-image" / "Dockerfile"

Resource = dict


def documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[tuple[Path, Resource]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in documents(path)]


def pod_spec(resource: Resource) -> dict | None:
    spec = resource.get("spec", {}).get("template", {}).get("spec")
    return spec if spec and spec.get("containers") else None  # patches have no containers


def workloads() -> list[tuple[Path, Resource]]:
    """Every manifest that defines a pod (Deployment, StatefulSet, Job) in k8s/."""
    found = [(path, doc) for path, doc in all_documents() if pod_spec(doc) is not None]
    assert {doc["metadata"]["name"] for _, doc in found} >= {
        "mmm-minio",
        "mmm-minio-buckets",
        "mmm-postgres",
        "mmm-mlflow",
        "mmm-gpu-check",
    }
    return found


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def secret_templates() -> dict[str, dict[str, str]]:
    templates = {}
    for path in sorted((K8S / "secrets").glob("*.template.yaml")):
        (doc,) = documents(path)
        assert doc["kind"] == "Secret" and "data" not in doc, path  # stringData only
        templates[doc["metadata"]["name"]] = {k: str(v) for k, v in doc["stringData"].items()}
    return templates


def secrets_read_by(spec: dict) -> set[str]:
    """Names of the Secrets a pod reads: env, envFrom, secret and projected volumes."""
    names = set()
    for container in containers(spec):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


# --------------------------------------------------------------------------- secrets


SENSITIVE_KEY = re.compile(r"PASSWORD|SECRET|KEY|TOKEN|URI|\.ini$")
CREDENTIAL_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|USERNAME")
NAME_VALUE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # a user or database name, not a credential


def urls_in(text: str) -> list[str]:
    return re.findall(r"[a-z][a-z0-9+.-]*://\S+", text)


def test_secret_templates_hold_no_real_value():
    templates = secret_templates()
    assert {
        ROOT_SECRET,
        "mmm-storage-credentials",
        "mmm-mlflow-storage",
        "mmm-mlflow-db",
        "mmm-mlflow-auth",
        "mmm-tracking-credentials",
    } <= set(templates)
    for name, data in templates.items():
        for key, value in data.items():
            where = f"{name}.{key}"
            if SENSITIVE_KEY.search(key):
                assert PLACEHOLDER in value, f"{where} must hold a {PLACEHOLDER} placeholder"
            else:
                assert NAME_VALUE.match(value) or value == PLACEHOLDER, f"{where}: {value!r}"
            for url in urls_in(value):  # DSNs: the password part is the placeholder
                parts = urlsplit(url)
                if parts.username:
                    assert parts.password == PLACEHOLDER, f"{where}: {url}"
    ini = configparser.ConfigParser()
    ini.read_string(templates["mmm-mlflow-auth"]["basic_auth.ini"])
    assert urlsplit(ini["mlflow"]["database_uri"]).password == PLACEHOLDER
    assert "admin_password" not in ini["mlflow"]  # the password comes from its own key


def test_no_secret_or_credential_outside_the_templates():
    for path, doc in all_documents():
        if path.parent.name == "secrets":
            continue
        assert doc["kind"] != "Secret", f"{path}: Secrets are created by the user, not applied"
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc.get("data", {}) if CREDENTIAL_KEY.search(k)], path
        text = path.read_text()
        assert "minioadmin" not in text and "minio123" not in text, path
        for url in urls_in(text):
            assert urlsplit(url.rstrip('",')).password is None, f"{path}: {url}"


def test_minio_root_credentials_stay_with_minio():
    readers = set()
    for _, doc in workloads():
        spec = pod_spec(doc)
        text = yaml.safe_dump(doc)
        if ROOT_SECRET in secrets_read_by(spec) or "MINIO_ROOT_" in text:
            readers.add((doc["kind"], doc["metadata"]["name"]))
    assert readers == ROOT_READERS
    minio = next(doc for _, doc in workloads() if doc["metadata"]["name"] == "mmm-minio")
    assert secrets_read_by(pod_spec(minio)) == {ROOT_SECRET}
    # the pipeline's and the MLflow server's Secrets are other ones, with other keys
    templates = secret_templates()
    assert set(templates[ROOT_SECRET]) == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    for name, data in templates.items():
        if name != ROOT_SECRET:
            assert not [k for k in data if k.startswith("MINIO_ROOT")], name


def test_pipeline_pods_get_no_root_credentials():
    from pipelines import kube

    attached = {kube.STORAGE_SECRET, kube.TRACKING_SECRET}
    assert ROOT_SECRET not in attached
    assert set(kube.SECRET_KEYS) == set(secret_templates()[kube.STORAGE_SECRET])
    assert set(kube.TRACKING_SECRET_KEYS) == {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }
    assert set(kube.TRACKING_SECRET_KEYS) == set(secret_templates()[kube.TRACKING_SECRET])
    for compiled in sorted((REPO / "pipelines" / "compiled").glob("*.yaml")):
        text = compiled.read_text()
        assert ROOT_SECRET not in text and "MINIO_ROOT" not in text, compiled


# --------------------------------------------------------------------------- pods and images


def test_every_workload_runs_unprivileged():
    for path, doc in workloads():
        name = f"{path.relative_to(REPO)}: {doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        assert spec.get("automountServiceAccountToken") is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] >= MIN_UID and pod["runAsGroup"] >= MIN_UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        for container in containers(spec):
            where = f"{name} container {container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert not context.get("privileged"), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (re.search(r"\d", tag) and tag != "latest"), where
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"])
                assert volume is not None or mount["name"] in claims, f"{where}: {mount}"
                if volume and ("secret" in volume or "configMap" in volume):
                    assert mount.get("readOnly") is True, f"{where}: {mount}"
                if volume and "secret" in volume:
                    assert volume["secret"].get("defaultMode", 0o644) & 0o007 == 0, where


PROJECT_IMAGES = "ghcr.io/mmm-vi-reid/"  # built by the user from this repository


def test_upstream_images_are_pinned_by_digest():
    """MinIO, mc and Postgres come from their publishers: pinned by the digest of their tag's
    multi-platform index, kept with the tag for readers. The images the user builds (the
    MLflow server, the pipeline's) have digests only in the user's registry: pinned there by
    an overlay (docs/deploy.md)."""
    upstream = []
    for path, doc in workloads():
        for container in containers(pod_spec(doc)):
            image = container["image"]
            if image.startswith(PROJECT_IMAGES):
                continue
            upstream.append(image)
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), (path, image)
    names = {image.split(":")[0] for image in upstream}
    assert names == {"quay.io/minio/minio", "quay.io/minio/mc", "postgres"}
    # one digest per tag everywhere (the Postgres image appears twice)
    by_tag: dict[str, set[str]] = {}
    for image in upstream:
        tag, _, digest = image.partition("@")
        by_tag.setdefault(tag, set()).add(digest)
    assert all(len(digests) == 1 for digests in by_tag.values()), by_tag


def test_writable_paths_are_volumes():
    """With a read-only root filesystem, what a server writes must be a mounted volume."""
    writable = {
        "mmm-minio": {"/data", "/tmp"},
        "mmm-minio-buckets": {"/tmp"},  # MC_CONFIG_DIR
        "mmm-postgres": {"/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"},
        "mmm-mlflow": {"/tmp"},  # HOME, temporary artifact files
        "mmm-gpu-check": {"/tmp"},
    }
    for _, doc in workloads():
        spec = pod_spec(doc)
        main = spec["containers"][0]
        mounted = {m["mountPath"] for m in main.get("volumeMounts", [])}
        assert writable[doc["metadata"]["name"]] <= mounted, doc["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in main.get("env", [])}
        for variable in ("HOME", "MC_CONFIG_DIR", "PGDATA"):
            if variable in env:
                assert any(env[variable].startswith(m) for m in mounted), (variable, env)


def final_user(dockerfile: Path) -> str:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)
    assert users, f"{dockerfile}: no USER"
    return users[-1]


@pytest.mark.parametrize(
    "dockerfile", [*DOCKERFILES, MLFLOW_DOCKERFILE], ids=lambda p: str(p.relative_to(REPO))
)
def test_images_run_as_the_manifests_user(dockerfile: Path):
    uid, _, gid = final_user(dockerfile).partition(":")
    assert uid.isdigit() and int(uid) >= MIN_UID, "numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) >= MIN_UID
    for _, doc in workloads():
        if doc["metadata"]["name"] in ("mmm-mlflow", "mmm-gpu-check"):
            assert pod_spec(doc)["securityContext"]["runAsUser"] == int(uid)
    for base in re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), flags=re.M):
        tag = base.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in base or re.fullmatch(r"v?\d+\.\d+\.\d+[\w.-]*", tag), base


def test_the_mlflow_image_has_a_healthcheck_on_the_probes_path():
    text = MLFLOW_DOCKERFILE.read_text().replace("\\\n", " ")  # join continued lines
    (check,) = re.findall(r"^HEALTHCHECK .*$", text, flags=re.M)
    assert "/health" in check and ":5000/" in check


# --------------------------------------------------------------------------- network


def network_policies() -> dict[str, Resource]:
    return {
        doc["metadata"]["name"]: doc for _, doc in all_documents() if doc["kind"] == "NetworkPolicy"
    }


def selects(policy: Resource, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


def test_default_deny_covers_every_pod_of_the_project():
    policies = network_policies()
    deny = policies["mmm-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    # the kustomization's common label reaches the pod templates, and that is what it selects
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    (labels,) = kustomization["labels"]
    assert labels["includeTemplates"] is True
    assert deny["podSelector"]["matchLabels"] == labels["pairs"]
    gpu_deny = policies["mmm-gpu-check-deny-ingress"]["spec"]
    assert gpu_deny["policyTypes"] == ["Ingress"] and not gpu_deny.get("ingress")


def test_servers_accept_only_their_clients():
    policies = network_policies()
    pods = {doc["metadata"]["name"]: doc for _, doc in workloads()}

    def allowed(server: str) -> list[dict]:
        labels = pods[server]["spec"]["template"]["metadata"]["labels"]
        rules = [
            rule
            for name, policy in policies.items()
            if name != "mmm-default-deny-ingress" and selects(policy, labels)
            for rule in policy["spec"].get("ingress", [])
        ]
        assert rules, f"no ingress rule for {server}"
        return rules

    def ports(server: str, name: str) -> list[dict]:
        (container,) = pods[server]["spec"]["template"]["spec"]["containers"]
        (port,) = [p for p in container["ports"] if p["name"] == name]
        return [{"protocol": "TCP", "port": port["containerPort"]}]

    same_namespace = [{"podSelector": {}}]  # the pipeline namespace, in this layout
    assert allowed("mmm-minio") == [{"from": same_namespace, "ports": ports("mmm-minio", "api")}]
    assert allowed("mmm-mlflow") == [{"from": same_namespace, "ports": ports("mmm-mlflow", "http")}]
    mlflow_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mmm-mlflow"}}}
    assert allowed("mmm-postgres") == [
        {"from": [mlflow_pods], "ports": ports("mmm-postgres", "postgres")}
    ]


# --------------------------------------------------------------------------- MinIO policies


def policy(name: str) -> list[dict]:
    return json.loads((K8S / "base" / "minio-setup" / f"{name}-policy.json").read_text())[
        "Statement"
    ]


def grants(statements: list[dict]) -> dict[str, set[str]]:
    """resource -> actions allowed on it."""
    granted: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for resource in statement["Resource"]:
            granted.setdefault(resource, set()).update(statement["Action"])
    return granted


READ_ONLY = {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}


def test_pipeline_policy_reads_data_and_writes_artifacts():
    granted = grants(policy("pipeline"))
    assert granted["arn:aws:s3:::datasets/*"] == {"s3:GetObject"}
    assert granted["arn:aws:s3:::datasets"] <= READ_ONLY
    for bucket in ("mlflow", "pipeline"):
        assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= granted[
            f"arn:aws:s3:::{bucket}/*"
        ]
    assert set(granted) == {
        f"arn:aws:s3:::{b}{s}" for b in ("datasets", "mlflow", "pipeline") for s in ("", "/*")
    }
    assert not [a for actions in granted.values() for a in actions if "*" in a]


def test_mlflow_policy_covers_its_bucket_only():
    granted = grants(policy("mlflow"))
    assert set(granted) == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    assert not [a for actions in granted.values() for a in actions if "*" in a]


# --------------------------------------------------------------------------- docs


def test_deploy_guide_covers_the_security_steps():
    guide = (REPO / "docs" / "deploy.md").read_text()
    for name in secret_templates():
        assert name in guide, name
    assert "crane digest" in guide and "imagetools inspect" in guide  # digest pinning
    assert "/api/2.0/mlflow/users/create" in guide  # creating MLflow users
    assert "MLFLOW_TRACKING_USERNAME" in guide and "MLFLOW_TRACKING_PASSWORD" in guide
    assert "NetworkPolicy" in guide
