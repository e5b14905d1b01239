"""deploy/kubernetes: each overlay rendered as `kubectl apply -k` would (the Kustomize features the manifests use,
no others), then validated offline against Kubernetes' own schemas with kubernetes-validate, strictly, for 1.30
and the newest version it knows; and the references between the resources checked. What only a cluster can
show (images pulled, probes passing, GPUs scheduled, the loop running) is not tested here."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from clearml.utilities.pyhocon import ConfigFactory

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ["embedded", "external"]
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "images", "configMapGenerator", "generatorOptions"}
CLUSTER_SCOPED = {"Namespace"}
CREATED_BY_THE_USER = {("Secret", "clearml-credentials"), ("Secret", "app-login")}  # README: kubectl create secret


def render(folder: Path) -> list[dict]:
    """The resources of the kustomization in ``folder``; refuses a key this renderer does not implement."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZE_KEYS
    assert not unknown, f"{folder}: kustomization keys this test does not render: {unknown}"
    resources: list[dict] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        assert spec.get("generatorOptions", {}).get("disableNameSuffixHash"), "generated names must stay as written"
        data = {Path(name).name: (folder / name).read_text() for name in generator.get("files", [])}
        metadata = {
            "name": generator["name"],
            **({"namespace": generator["namespace"]} if "namespace" in generator else {}),
        }
        resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    resources = copy.deepcopy(resources)
    for resource in resources:
        if spec.get("namespace") and resource["kind"] not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            for container in containers(resource):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return resources


def containers(resource: dict) -> list[dict]:
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    return pod.get("initContainers", []) + pod.get("containers", [])


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> list[dict]:
    return render(DEPLOY / "kubernetes" / request.param)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_validates_strictly(rendered, version):
    for resource in rendered:
        kubernetes_validate.validate(resource, version, strict=True)
    # Strict: a field Kubernetes does not know (here the chart's mistake, nodeSelector in a container) is refused.
    deployment = copy.deepcopy(next(r for r in rendered if r["kind"] == "Deployment"))
    containers(deployment)[0]["nodeSelector"] = {"gpu": "true"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_references_resolve_and_every_container_has_probes_resources_and_the_image(rendered):
    defined = {(r["kind"], r["metadata"]["name"]) for r in rendered} | CREATED_BY_THE_USER
    assert all(r["metadata"].get("namespace") == "pets-loop" for r in rendered if r["kind"] != "Namespace")
    workloads = [r for r in rendered if r["kind"] in ("Deployment", "Job")]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in defined
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in defined
        for container in containers(workload):
            assert container["image"] == "pets-loop:0.1.0", workload["metadata"]["name"]
            assert container["resources"]["requests"], container["name"]
            for env in container.get("env", []):
                secret = env.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert ("Secret", secret["name"]) in defined
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in defined
        if workload["kind"] == "Deployment":
            for container in pod["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, workload["metadata"]["name"]
    services = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "Service"}
    for service in services.values():
        selected = [
            w
            for w in workloads
            if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
    gpu = next(w for w in workloads if w["metadata"]["name"] == "agent-gpu")
    assert containers(gpu)[0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert (
        "--services-mode"
        in containers(next(w for w in workloads if w["metadata"]["name"] == "agent-services"))[0]["command"]
    )


def test_the_pods_clearml_conf_parses_and_reaches_uploads_from_the_host():
    embedded = ConfigFactory.parse_string((DEPLOY / "kubernetes" / "embedded" / "clearml.conf").read_text())
    assert embedded["api"]["files_server"] == "http://clearml-server:8008/files"
    substitutions = embedded["sdk"]["storage"]["path_substitution"]
    assert {"registered_prefix": "http://127.0.0.1:8008/files", "local_prefix": "http://clearml-server:8008/files"} in [
        dict(s) for s in substitutions
    ]
    external = ConfigFactory.parse_string((DEPLOY / "kubernetes" / "external" / "clearml.conf").read_text())
    assert external["api"]["api_server"].startswith("https://")


def test_the_clearml_serving_helm_values_turn_off_what_the_loop_does_not_use():
    values = yaml.safe_load((DEPLOY / "clearml-serving-helm" / "values.yaml").read_text())
    for part in ("clearml_serving_statistics", "clearml_serving_triton", "kafka", "prometheus", "grafana"):
        assert values[part]["enabled"] is False, part
    inference = values["clearml_serving_inference"]
    assert inference["image"]["repository"] == "pets-loop"
    assert inference["nodeSelector"] == {} and inference["tolerations"] == []  # they render inside the container
    assert values["clearml"]["servingTaskId"] == ""
