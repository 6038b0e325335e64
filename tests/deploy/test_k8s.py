"""The Kubernetes manifests: they render with kustomize, every object passes its schema, and the
pieces fit together (queues, autoscalers, probes, secrets, graceful stops)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from tests.deploy.conftest import DEPLOY, consumed_queues

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"
KEDA_SCHEMA = json.loads((DEPLOY.parent / "tests/deploy/schemas/keda-v2.json").read_text())


def load_documents(path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    """Every object the kustomization names, read straight from its files."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_documents(K8S / name)]


def by_kind(manifests, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def pod_spec(workload: dict) -> dict | None:
    """The pod spec of a Deployment, Job or CronJob; None for other kinds."""
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if workload["kind"] in ("Deployment", "Job"):
        return workload["spec"]["template"]["spec"]
    return None


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    assert spec is not None, f"a {workload['kind']} has no containers"
    return spec["containers"]


def worker_pools(manifests) -> dict[str, dict]:
    return {
        name: deployment
        for name, deployment in by_kind(manifests, "Deployment").items()
        if containers(deployment)[0]["command"][:4] == ["celery", "-A", "mailhub", "worker"]
    }


def test_kustomize_renders_every_manifest_in_one_namespace(manifests):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: kustomize rendering not checked")
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(rendered) == len(manifests)
    namespaced = [doc for doc in rendered if doc["kind"] != "Namespace"]
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {"mailhub"}
    images = {
        container["image"] for doc in rendered if pod_spec(doc) for container in containers(doc)
    }
    assert images == {"registry.example.com/mailhub:0.1.0"}


def test_every_kubernetes_object_passes_the_kubernetes_schema(manifests):
    native = [doc for doc in manifests if not doc["apiVersion"].startswith("keda.sh/")]
    assert native
    for doc in native + load_documents(K8S / "secret.example.yaml"):
        # strict: a field Kubernetes does not know is an error, not silently dropped.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_schema_check_rejects_a_misspelt_field(manifests):
    deployment = copy.deepcopy(by_kind(manifests, "Deployment")["mailhub-web"])
    containers(deployment)[0]["readinessProbe"]["periodSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_keda_object_passes_the_keda_schema(manifests):
    keda = [doc for doc in manifests if doc["apiVersion"].startswith("keda.sh/")]
    assert {doc["kind"] for doc in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        jsonschema.validate(doc, KEDA_SCHEMA)
    misspelt = copy.deepcopy(by_kind(manifests, "ScaledObject")["mailhub-worker"])
    misspelt["spec"]["triggers"][0]["metadata"]["queuename"] = "mail.normal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(misspelt, KEDA_SCHEMA)


def test_the_scale_down_behaviour_of_each_scaled_object_is_a_valid_hpa_behaviour(manifests):
    for name, scaled in by_kind(manifests, "ScaledObject").items():
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "maxReplicas": scaled["spec"]["maxReplicaCount"],
                "behavior": behavior,
            },
        }
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def test_each_queue_has_a_scaled_object_on_a_pool_that_consumes_it(manifests, queues):
    pools = worker_pools(manifests)
    scaled_objects = by_kind(manifests, "ScaledObject")
    triggered = {}
    for name, scaled in scaled_objects.items():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert target in pools, f"{name} scales {target}, which is no worker Deployment"
        [trigger] = scaled["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        queue = trigger["metadata"]["queueName"]
        assert queue in consumed_queues(containers(pools[target])[0]["command"])
        assert trigger["authenticationRef"]["name"] in by_kind(manifests, "TriggerAuthentication")
        triggered[queue] = target
    ticks = {
        name.removeprefix(settings.MAILHUB_QUEUE_PREFIX)
        for name in (settings.MAILHUB_DISPATCH_QUEUE, settings.MAILHUB_WEBHOOK_TICK_QUEUE)
    }
    # The dispatcher's and the webhook ticks are a handful at any time: nothing to scale on.
    assert set(triggered) == set(queues) - ticks
    # One ScaledObject per Deployment: KEDA refuses a second one on the same target.
    assert len(set(triggered.values())) == len(triggered)


def test_every_celery_queue_is_consumed_and_the_reserved_pool_takes_only_high_priority(
    manifests, queues
):
    pools = worker_pools(manifests)
    consumed = {name: consumed_queues(containers(d)[0]["command"]) for name, d in pools.items()}
    assert set().union(*consumed.values()) == set(queues)
    assert consumed["mailhub-worker-high"] == {"mail.high", "mailhub.dispatch"}
    assert {"mail.high", "mail.normal", "mail.low"} <= consumed["mailhub-worker"]
    # Beat's webhook ticks: on both, so that one runs even while every webhook process waits.
    assert consumed["mailhub-worker-webhooks"] == {"webhooks", "webhooks.tick"}
    assert "webhooks.tick" in consumed["mailhub-worker"]
    high = by_kind(manifests, "ScaledObject")["mailhub-worker-high"]
    assert high["spec"]["minReplicaCount"] >= 1
    assert (
        by_kind(manifests, "PodDisruptionBudget")["mailhub-worker-high"]["spec"]["minAvailable"]
        == 1
    )


def test_workers_get_time_to_finish_their_deliveries_before_they_are_killed(manifests):
    longest_delivery = settings.MAILHUB_SMTP_DATA_TIMEOUT_SECONDS
    for name, deployment in worker_pools(manifests).items():
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > longest_delivery, name
        # The node name carries the pod's name: unique per replica, as Flower and Attempt rows need.
        command = containers(deployment)[0]["command"]
        assert command[command.index("-n") + 1].endswith("@%h"), name


def test_exactly_one_beat_that_nothing_scales(manifests):
    beat = by_kind(manifests, "Deployment")["mailhub-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in by_kind(manifests, "ScaledObject").values()
    }
    scaled |= {
        d["spec"]["scaleTargetRef"]["name"]
        for d in by_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    assert "mailhub-beat" not in scaled
    assert containers(beat)[0]["command"][:4] == ["celery", "-A", "mailhub", "beat"]


def test_the_api_probes_health_and_readiness_with_an_allowed_host(manifests):
    web = by_kind(manifests, "Deployment")["mailhub-web"]
    [container] = containers(web)
    allowed = by_kind(manifests, "ConfigMap")["mailhub-config"]["data"]["DJANGO_ALLOWED_HOSTS"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        # Django answers 400 to a Host outside ALLOWED_HOSTS, and the pod IP is not in it.
        assert headers["Host"] in allowed.split(","), probe
    assert "deploy/gunicorn.conf.py" in container["command"]
    assert by_kind(manifests, "HorizontalPodAutoscaler")["mailhub-web"]["spec"]["minReplicas"] >= 2


def test_every_secret_and_config_key_the_manifests_use_exists(manifests):
    [secret] = load_documents(K8S / "secret.example.yaml")
    secret_keys = set(secret["stringData"])
    config_names = set(by_kind(manifests, "ConfigMap"))
    for doc in manifests:
        if pod_spec(doc):
            for container in containers(doc):
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        assert source["secretRef"]["name"] == secret["metadata"]["name"]
                    else:
                        assert source["configMapRef"]["name"] in config_names
                for variable in container.get("env", []):
                    ref = variable.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secret_keys, ref
    for auth in by_kind(manifests, "TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secret_keys
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= secret_keys


def test_every_pod_runs_as_the_images_user_on_a_read_only_root(manifests):
    for doc in manifests:
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsUser"] == 10001, doc["metadata"]["name"]
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["image"] == "mailhub"


def test_old_mail_is_purged_nightly_one_run_at_a_time(manifests):
    purge = by_kind(manifests, "CronJob")["mailhub-purge"]
    assert purge["spec"]["concurrencyPolicy"] == "Forbid"
    command = containers(purge)[0]["command"]
    assert command[:3] == ["python", "manage.py", "purge"]
    assert command[command.index("--older-than") + 1] == "30d"


def test_smtp_submission_is_served_on_587_from_2587_with_the_tls_secret_mounted(manifests):
    deployment = by_kind(manifests, "Deployment")["mailhub-submission"]
    [container] = containers(deployment)
    assert container["command"] == ["python", "manage.py", "submission_smtp"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["MAILHUB_SUBMISSION_BIND"] == "0.0.0.0:2587"
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("smtp", 2587)
    service = by_kind(manifests, "Service")["mailhub-submission"]
    [published] = service["spec"]["ports"]
    assert (published["port"], published["targetPort"]) == (587, "smtp")
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "mailhub-submission-tls"
    for name in ("MAILHUB_SUBMISSION_TLS_CERT", "MAILHUB_SUBMISSION_TLS_KEY"):
        assert env[name].startswith(mounts["tls"] + "/"), name


def test_the_bounces_server_is_served_on_25_from_2526(manifests):
    deployment = by_kind(manifests, "Deployment")["mailhub-bounces"]
    [container] = containers(deployment)
    assert container["command"] == ["python", "manage.py", "bounces_smtp"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["MAILHUB_BOUNCES_BIND"] == "0.0.0.0:2526"
    service = by_kind(manifests, "Service")["mailhub-bounces"]
    [port] = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (25, "smtp")
