"""cluster/kuberay/: the RayCluster and the three RayJobs against a strict ray.io/v1 schema (a misspelled
field anywhere fails), pinned to the project's Ray, GPUs requested the Kubernetes way, and entrypoints that
the jobs' own argparse accepts, chained featurize -> train -> label."""

import copy
import glob
import json
import os
import re
import shlex

import jsonschema
import pytest
import ray
import yaml

from tests.cluster.helpers import CLUSTER, JOBS, parse_job_command, pyproject_deps

KUBERAY = os.path.join(CLUSTER, "kuberay")
SCHEMA = json.load(open(os.path.join(KUBERAY, "schemas", "kuberay-ray.io-v1.schema.json")))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MANIFESTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(KUBERAY, "*.yaml")))
# maps whose keys are data, not field names (labels, rayStartParams, resource names, ...)
FREE_FORM = {"labels", "annotations", "rayStartParams", "limits", "requests", "nodeSelector", "clusterSelector",
             "headServiceAnnotations"}


def load(name: str) -> dict:
    with open(os.path.join(KUBERAY, name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    assert len(docs) == 1, f"{name}: one object per file"
    return docs[0]


def errors(doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def cluster_specs(doc) -> list[dict]:
    return [doc["spec"]] if doc["kind"] == "RayCluster" else [doc["spec"]["rayClusterSpec"]]


def containers(spec) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [(g.get("groupName", "head"), c) for g in groups for c in g["template"]["spec"]["containers"]]


def test_the_manifests_are_there():
    assert MANIFESTS == ["raycluster.yaml", "rayjob-featurize.yaml", "rayjob-label.yaml", "rayjob-train.yaml"]
    assert [load(m)["kind"] for m in MANIFESTS] == ["RayCluster", "RayJob", "RayJob", "RayJob"]


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_matches_the_strict_schema(name):
    assert errors(load(name)) == []


def field_paths(node, path=()):
    """Every field name in a manifest (keys of free-form maps excluded), as key paths."""
    if isinstance(node, dict):
        for k, v in node.items():
            if path and path[-1] in FREE_FORM or path == ("spec", "metadata"):   # RayJob's metadata map
                continue
            yield path + (k,)
            yield from field_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from field_paths(v, path + (i,))


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_misspelled_field_fails(name):
    """Mutation test: each field name of the manifest, one at a time, misspelled -> a schema error naming it."""
    doc = load(name)
    paths = list(field_paths(doc))
    assert len(paths) > 40
    for path in paths:
        bad = copy.deepcopy(doc)
        parent = bad
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        parent[key + "x"] = parent.pop(key)
        errs = errors(bad)
        assert errs, f"{name}: misspelling {'/'.join(map(str, path))} as {key}x passed the schema"


@pytest.mark.parametrize("name, path, value", [
    ("raycluster.yaml", ("spec", "workerGroupSpecs", 1, "template", "spec", "containers", 0, "imagePullPolicy"), "IfNotPresnt"),
    ("raycluster.yaml", ("spec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),                  # must be a string
    ("raycluster.yaml", ("spec", "workerGroupSpecs", 1, "template", "spec", "containers", 0, "resources", "limits", "memory"), "28 GB"),
    ("rayjob-train.yaml", ("spec", "submissionMode"), "K8sJob"),
    ("rayjob-train.yaml", ("apiVersion",), "ray.io/v1alpha1"),
])
def test_wrong_values_fail(name, path, value):
    doc = load(name)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    assert errors(doc)


@pytest.mark.parametrize("name", MANIFESTS)
def test_pinned_to_the_projects_ray_and_gpus_requested(name):
    doc = load(name)
    for spec in cluster_specs(doc):
        assert spec["rayVersion"] == ray.__version__
        groups = {g["groupName"]: g for g in spec.get("workerGroupSpecs", [])}
        for g in groups.values():
            assert g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"], g["groupName"]
        for group, c in containers(spec):
            m = re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py311-(cpu|gpu)", c["image"])
            assert m, f"{group}: image {c['image']}"
            res = c["resources"]
            gpus = res.get("limits", {}).get("nvidia.com/gpu", 0)
            if m.group(1) == "gpu":
                assert gpus >= 1 and res["requests"].get("nvidia.com/gpu") == gpus, group
            else:
                assert not gpus, group
        head = spec["headGroupSpec"]["rayStartParams"]
        assert head["num-cpus"] == "0" and int(head["object-store-memory"]) > 0
        assert all(int(g["rayStartParams"]["object-store-memory"]) > 0 for g in groups.values())


def rayjobs() -> dict:
    return {job: load(f"rayjob-{job}.yaml") for job in JOBS}


def test_rayjob_entrypoints_are_the_readme_commands_and_parse():
    parsed = {}
    for job, doc in rayjobs().items():
        spec = doc["spec"]
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
        argv = shlex.split(spec["entrypoint"])
        assert argv[:2] == ["python", f"pipelines/{job}.py"]
        name, ns = parse_job_command(argv)
        assert name == job
        parsed[job] = ns
    f, t, lab = parsed["featurize"], parsed["train"], parsed["label"]
    assert all(i.startswith("s3://") for i in f.input) and f.input and f.output.startswith("s3://")  # --input repeats
    assert t.features == f.output                                     # train reads featurize's output
    assert lab.model == f"{t.output}/{t.name}/model.pt"              # label uses the trained model
    assert t.use_gpu and t.num_workers >= 1 and lab.num_gpus_per_actor > 0
    # the GPU jobs get as many GPUs as they ask for
    docs = rayjobs()
    for job, want in (("train", t.num_workers), ("label", lab.actors * lab.num_gpus_per_actor)):
        spec = docs[job]["spec"]["rayClusterSpec"]
        have = sum(g["maxReplicas"] * c["resources"]["limits"].get("nvidia.com/gpu", 0)
                   for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"])
        assert have >= want, job


def test_runtime_env_ships_the_code_and_the_projects_dependencies():
    from ray.runtime_env import RuntimeEnv

    want = [d for d in pyproject_deps() if not d.startswith("ray")]   # ray itself is the image's
    for job, doc in rayjobs().items():
        env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
        RuntimeEnv(**env)                                                # Ray's own runtime_env checks
        assert re.fullmatch(r"(s3|https)://\S+\.zip", env["working_dir"]), job
        assert env["pip"]["packages"] == want, job
