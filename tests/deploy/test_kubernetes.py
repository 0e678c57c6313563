"""deploy/kubernetes/, validated offline: core objects against Kubernetes' schemas (kubernetes-validate),
the KEDA ScaledObject against KEDA's CRD schema (vendored in tests/deploy/keda/), and what ties them
to the code: RQ's queue key, the job timeout against the grace period, a GPU per worker."""
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from redis import Redis

from service.settings import Settings
from worker.queue import open_queue

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
KEDA_CRD = Path(__file__).parent / "keda" / "keda.sh_scaledobjects.yaml"
KUBERNETES_VERSION = "1.31.0"


def documents() -> list[dict]:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    return [doc for name in listed for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def find(kind: str, name: str) -> dict:
    return next(doc for doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", [d for d in documents() if d["kind"] != "ScaledObject"], ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_objects_are_valid_kubernetes(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def scaled_object_schema() -> dict:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"]


def test_the_scaled_object_is_valid_for_kedas_crd():
    scaled = find("ScaledObject", "gdc-worker")
    jsonschema.validate(scaled, scaled_object_schema())
    with pytest.raises(jsonschema.ValidationError):  # the schema does refuse a broken one
        jsonschema.validate({**scaled, "spec": {"triggers": scaled["spec"]["triggers"]}}, scaled_object_schema())


def settings() -> Settings:
    """The settings the pods read from the ConfigMap."""
    data = find("ConfigMap", "gdc-settings")["data"]
    given = {key.removeprefix("GDC_").lower(): value for key, value in data.items() if key.startswith("GDC_")}
    return Settings(**given, redis_url=data["REDIS_URL"])


def test_every_setting_in_the_config_map_is_one_gdc_reads():
    known = {f"GDC_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL"}
    assert set(find("ConfigMap", "gdc-settings")["data"]) <= known


def test_keda_watches_rqs_list_of_waiting_jobs_on_the_workers_redis():
    trigger = find("ScaledObject", "gdc-worker")["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    queue = open_queue(Redis(), settings().queue)  # no connection is made
    assert trigger["metadata"]["listName"] == queue.key == "rq:queue:gdc"
    redis = Redis.from_url(settings().redis_url)
    kwargs = redis.connection_pool.connection_kwargs
    assert trigger["metadata"]["address"] == f"{kwargs['host']}:{kwargs['port']}"
    assert int(trigger["metadata"]["databaseIndex"]) == kwargs.get("db", 0)
    assert find("ScaledObject", "gdc-worker")["spec"]["scaleTargetRef"]["name"] == find("Deployment", "gdc-worker")["metadata"]["name"]


def test_a_worker_has_one_gpu_and_finishes_its_job_before_it_is_killed():
    pod = find("Deployment", "gdc-worker")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["GDC_FINISH_JOB_ON_STOP"] == "true"
    assert pod["terminationGracePeriodSeconds"] > settings().job_timeout


def test_the_api_has_a_service_and_the_queue_a_bound():
    api = find("Deployment", "gdc-api")
    service = find("Service", "gdc-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert "GDC_MAX_QUEUED" in find("ConfigMap", "gdc-settings")["data"] and settings().max_queued == 1000


def test_the_images_are_named_as_compose_builds_them_and_tagged_with_gdcs_version_in_one_place():
    from tests.packaging.docker_files import read_compose

    images = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["images"]
    compose = read_compose()["services"]
    assert {image["name"] for image in images} == {compose["api"]["image"], compose["worker"]["image"]}
    assert {image["newTag"] for image in images} == {version("gdc")}
    containers = [c for doc in documents() if doc["kind"] in ("Deployment", "StatefulSet")
                  for c in doc["spec"]["template"]["spec"]["containers"]]
    gdc_images = {container["image"].split(":")[0] for container in containers if container["image"].startswith("gdc-")}
    assert gdc_images == {image["name"] for image in images}


def test_the_docs_overlay_puts_every_gdc_image_in_the_registry_it_names(tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl to run kustomize")
    doc = (REPO / "docs" / "kubernetes.md").read_text()
    registry = re.search(r"^REGISTRY=(\S+)", doc, re.MULTILINE).group(1)
    overlay = re.search(r"cat > my-gdc/kustomization.yaml <<EOF\n(.*?)^EOF$", doc, re.DOTALL | re.MULTILINE).group(1)
    (tmp_path / "deploy").symlink_to(REPO / "deploy")  # the overlay sits at the repository's root
    (tmp_path / "my-gdc").mkdir()
    (tmp_path / "my-gdc" / "kustomization.yaml").write_text(overlay.replace("$REGISTRY", registry))
    built = subprocess.run(["kubectl", "kustomize", "my-gdc"], cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    pulled = set(re.findall(r"image: (\S+)", built.stdout))
    tag = version("gdc")
    assert pulled == {f"{registry}/gdc-api:{tag}", f"{registry}/gdc-worker-cuda:{tag}", "valkey/valkey:8"}
