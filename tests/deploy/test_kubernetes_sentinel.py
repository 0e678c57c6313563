"""deploy/kubernetes-sentinel/, the Sentinel variant, validated offline like the base manifests.

Its new objects (the Sentinels) against Kubernetes' schemas; its patches name objects of the
base; its settings are ones gdc reads, and the Sentinels they list are the StatefulSet's pods.
"""
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.deploy.test_kubernetes import KUBERNETES_VERSION, documents

OVERLAY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes-sentinel"


def kustomization() -> dict:
    return yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())


def overlay_documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((OVERLAY / name).read_text()) if doc]


def test_kustomization_lists_every_file_of_the_variant():
    listed = set(kustomization()["resources"][1:]) | {patch["path"] for patch in kustomization()["patches"]}
    assert kustomization()["resources"][0] == "../kubernetes"
    assert listed == {path.name for path in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", overlay_documents("sentinels.yaml"), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_the_sentinels_are_valid_kubernetes(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_patch_names_an_object_of_the_base():
    base = {(doc["kind"], doc["metadata"]["name"]) for doc in documents()}
    for patch in kustomization()["patches"]:
        for doc in overlay_documents(patch["path"]):
            assert (doc["kind"], doc["metadata"]["name"]) in base, patch["path"]


def test_the_settings_point_gdc_and_keda_at_the_sentinel_pods():
    data = overlay_documents("settings.yaml")[0]["data"]
    assert data.pop("REDIS_URL") is None  # removed from the base's ConfigMap
    settings = Settings(**{key.removeprefix("GDC_").lower(): value for key, value in data.items()})
    sentinels = overlay_documents("sentinels.yaml")[1]
    pods = {f"{sentinels['metadata']['name']}-{n}.{sentinels['spec']['serviceName']}:26379" for n in range(sentinels["spec"]["replicas"])}
    assert set(settings.redis_sentinels) == pods
    trigger = overlay_documents("keda-scaledobject.yaml")[0]["spec"]["triggers"][0]["metadata"]
    assert set(trigger["addresses"].split(",")) == pods and trigger["sentinelMaster"] == settings.redis_sentinel_master


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_variant_builds_with_kustomize_into_valid_objects():
    built = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    for doc in objects:
        if doc["kind"] != "ScaledObject":
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    settings = next(doc for doc in objects if doc["kind"] == "ConfigMap")["data"]
    assert "REDIS_URL" not in settings and settings["GDC_REDIS_SENTINELS"]
    redis = next(doc for doc in objects if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "gdc-redis")
    assert redis["spec"]["replicas"] == 2
