"""cluster/aws.yaml: Ray's own cluster-launcher validation (what `ray up` runs), misspellings rejected,
the whole `ray up` bootstrap against a mocked EC2/IAM (moto, in process), and its commands pinned."""

import copy
import os
import re

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.cluster.helpers import CLUSTER, commands_in_text, parse_job_command, pyproject_deps

AWS_YAML = os.path.join(CLUSTER, "aws.yaml")


def load() -> dict:
    with open(AWS_YAML) as f:
        return yaml.safe_load(f)


def ray_validate(config: dict) -> dict:
    """What `ray up` does before it talks to AWS (commands._bootstrap_config): merge the provider's
    defaults, then validate against ray/autoscaler/ray-schema.json and the cross-field rules."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_passes_ray_cluster_launcher_validation():
    prepared = ray_validate(load())
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert types["head"]["resources"] == {"CPU": 0}
    assert types["gpu_worker"]["resources"]["GPU"] >= 1 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["cpu_worker"]["max_workers"] > types["cpu_worker"]["min_workers"] == 0   # autoscaling
    assert prepared["max_workers"] == sum(t.get("max_workers", 0) for t in types.values())


@pytest.mark.parametrize("path, typo", [
    ((), ("setup_commands", "setup_comands")),
    ((), ("head_start_ray_commands", "head_start_commands")),
    ((), ("idle_timeout_minutes", "idle_timeout_minute")),
    (("available_node_types", "cpu_worker"), ("max_workers", "max_worker")),
    (("available_node_types", "gpu_worker"), ("resources", "resource")),
    (("available_node_types", "gpu_worker", "docker"), ("worker_image", "worker_img")),
    (("docker",), ("container_name", "containr_name")),       # Ray's docker check: the name is required
])
def test_misspelled_key_fails_validation(path, typo):
    config = load()
    node = config
    for k in path:
        node = node[k]
    good, bad = typo
    node[bad] = node.pop(good)
    with pytest.raises((jsonschema.ValidationError, ValueError, AssertionError)) as e:  # schema, cross-field, docker
        ray_validate(config)
    assert bad in str(e.value) or good in str(e.value) or "container" in str(e.value)


def test_node_configs_are_valid_ec2_run_instances_parameters():
    """node_config goes to EC2 RunInstances as is, and Ray's schema does not look inside it: botocore's
    own model of the API (shipped with botocore, no network) catches a misspelled EC2 field."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    for name, node_type in load()["available_node_types"].items():
        report = ParamValidator().validate(dict(node_type["node_config"], MinCount=1, MaxCount=1), shape)
        assert not report.has_errors(), f"{name}: {report.generate_report()}"
    bad = dict(load()["available_node_types"]["gpu_worker"]["node_config"], MinCount=1, MaxCount=1)
    bad["InstanceTyp"] = bad.pop("InstanceType")
    assert "InstanceTyp" in ParamValidator().validate(bad, shape).generate_report()


def _clear_ray_aws_caches():
    from ray.autoscaler._private.aws import config as aws_config
    from ray.autoscaler._private.aws import utils as aws_utils

    for mod in (aws_config, aws_utils):
        for obj in vars(mod).values():
            if callable(getattr(obj, "cache_clear", None)):
                obj.cache_clear()


def test_ray_up_bootstrap_on_mocked_aws(monkeypatch, tmp_path):
    """The rest of `ray up` before it launches anything (commands._bootstrap_config), in process against
    moto's EC2/IAM: instance-type lookup, validate_config, IAM profiles, key pair, subnets, security
    group. The instance types exist and their vCPUs/GPUs are what
    the node types declare to the autoscaler."""
    from moto import mock_aws
    from ray.autoscaler._private.commands import _bootstrap_config

    for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("HOME", str(tmp_path))          # ray up writes the generated key pair to ~/.ssh
    config = load()
    _clear_ray_aws_caches()
    try:
        with mock_aws():
            import boto3

            iam = boto3.client("iam", region_name="us-west-2")
            profiles = {t["node_config"]["IamInstanceProfile"]["Name"] for t in config["available_node_types"].values()}
            for name in profiles:
                iam.create_instance_profile(InstanceProfileName=name)
            resolved = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
            ec2 = boto3.client("ec2", region_name="us-west-2")
            for name, t in config["available_node_types"].items():
                itype = t["node_config"]["InstanceType"]
                info = ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"][0]
                assert info["VCpuInfo"]["DefaultVCpus"] >= t["resources"]["CPU"], name
                gpus = sum(g["Count"] for g in info.get("GpuInfo", {}).get("Gpus", []))
                assert gpus == t["resources"].get("GPU", 0), f"{name}: {itype} has {gpus} GPUs"
    finally:
        _clear_ray_aws_caches()
    for name, t in resolved["available_node_types"].items():
        nc = t["node_config"]
        assert nc["SubnetIds"] and nc["SecurityGroupIds"] and nc["KeyName"], name
        assert nc["IamInstanceProfile"] == config["available_node_types"][name]["node_config"]["IamInstanceProfile"]
    assert resolved["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1


def test_setup_installs_the_project_at_its_pins_and_sizes_the_object_store():
    config = load()
    setup = " ".join(config["setup_commands"])
    pins = {re.split(r"[=<>\[]", d)[0]: d for d in pyproject_deps()}
    for pkg in ("torch", "torchaudio"):
        assert pins[pkg] in setup
    assert pins["ray"] == f"ray[train,data,default]=={ray.__version__}" and f"'{pins['ray']}'" in setup
    assert "pip install -q -e ~/music-speech" in setup and config["file_mounts"]["~/music-speech"] == "."
    images = [config["docker"]["image"]] + [t["docker"]["worker_image"] for t in config["available_node_types"].values()
                                            if "docker" in t]
    assert images and all(re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py311-(cpu|gpu)", i) for i in images)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all(re.search(r"--object-store-memory=\d{9,}", c) for c in start), key


def test_no_credentials_in_the_file():
    text = open(AWS_YAML).read()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY|ssh_private_key", text)
    for t in load()["available_node_types"].values():
        assert "IamInstanceProfile" in t["node_config"]                  # S3 through the instance profile


def test_example_commands_parse_with_the_jobs_argparse():
    commands = commands_in_text(open(AWS_YAML).read())
    assert commands
    for argv in commands:
        parse_job_command(argv)
