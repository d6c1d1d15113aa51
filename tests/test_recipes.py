"""The scheduling recipes in docs/recipes are checked by the tools that read them: systemd's own
verifier for the units, a YAML parser for Kubernetes and Prometheus, pip for the Dockerfile's build,
and batch-inpaint's own parser for every command line they hold."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from batch_inpaint import cli

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"
UNITS = ("batch-inpaint.service", "batch-inpaint.timer", "batch-inpaint-watch.service")


def parses(args: list[str]) -> None:
    """``args`` (what follows ``batch-inpaint``) is a command line batch-inpaint accepts."""
    try:
        cli.build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"batch-inpaint rejects: {shlex.join(args)}") from exc


def exec_start(unit: str) -> list[str]:
    [line] = re.findall(r"^ExecStart=(.*)$", (RECIPES / unit).read_text(), re.M)
    return shlex.split(line)


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("CI checks the units with systemd-analyze: apt-get install systemd")
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    installed = shutil.which("batch-inpaint", path=str(Path(sys.executable).parent)) or shutil.which("batch-inpaint")
    assert installed, "the batch-inpaint command is not installed"
    for unit in UNITS:  # the verifier checks that ExecStart's program exists: this install's stands in for it
        text = (RECIPES / unit).read_text().replace("/usr/local/bin/batch-inpaint", installed)
        (tmp_path / unit).write_text(text)
    result = subprocess.run([analyze, "verify", *(str(tmp_path / u) for u in UNITS)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    (tmp_path / "broken.timer").write_text((tmp_path / "batch-inpaint.timer").read_text().replace(
        "OnCalendar=hourly", "OnCalendar=every hour"))  # the verifier does catch a mistake
    assert subprocess.run([analyze, "verify", str(tmp_path / "broken.timer")], capture_output=True,
                          timeout=60).returncode != 0


def test_the_units_run_batch_inpaint_as_it_expects_and_stop_gracefully() -> None:
    for unit in ("batch-inpaint.service", "batch-inpaint-watch.service"):
        command = exec_start(unit)
        assert command[0] == "/usr/local/bin/batch-inpaint"
        parses(command[1:])
        text = (RECIPES / unit).read_text()
        assert "CLIPDROP_API_KEY_FILE=%d/" in text and "LoadCredential=" in text  # the key never in the unit
        assert "--log-format json" in shlex.join(command)
    watch = (RECIPES / "batch-inpaint-watch.service").read_text()
    assert exec_start("batch-inpaint-watch.service")[1] == "watch"
    assert "SuccessExitStatus=143" in watch and "KillSignal=SIGTERM" in watch  # a stop is not a failure


def test_the_crontab_line_has_five_fields_and_a_command_batch_inpaint_accepts() -> None:
    lines = [line for line in (RECIPES / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    env = [line for line in lines if re.match(r"^[A-Z_]+=", line)]
    jobs = [line for line in lines if line not in env]
    assert env == ["CLIPDROP_API_KEY_FILE=/home/inpaint/.config/batch-inpaint/clipdrop-key"]
    [job] = jobs
    fields = job.split(None, 5)
    for field, (low, high) in zip(fields[:5], ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))):
        assert field == "*" or low <= int(field) <= high, field
    command = shlex.split(fields[5])
    assert command[:3] == ["flock", "-n", "/tmp/batch-inpaint.lock"] and command[3] == "batch-inpaint"
    parses(command[4:])


def test_the_kubernetes_cronjob_never_overlaps_and_takes_the_key_from_a_secret() -> None:
    job = yaml.safe_load((RECIPES / "cronjob.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "CronJob"
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= 15
    [container] = pod["containers"]
    parses(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert env["CLIPDROP_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "clipdrop", "key": "api-key"}
    assert "value" not in env["CLIPDROP_API_KEY"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    paths = [a for a in container["args"] if a.startswith("/")] + [env["XDG_STATE_HOME"]["value"]]
    assert all(any(p.startswith(m + "/") for m in mounts) for p in paths), "a path outside the mounted volume"
    assert {v["name"] for v in pod["volumes"]} == {m["name"] for m in container["volumeMounts"]}


def test_the_alert_rules_name_metrics_the_metrics_file_has() -> None:
    rules = yaml.safe_load((RECIPES / "alerts.yaml").read_text())["groups"][0]["rules"]
    written = set(re.findall(r'"(batch_inpaint_\w+)"', (ROOT / "src" / "batch_inpaint" / "metrics.py").read_text()))
    written |= {name + "_total" for name in written}  # counters are written with _total
    for rule in rules:
        for name in re.findall(r"batch_inpaint_\w+", rule["expr"]):
            assert name in written, f"{rule['alert']}: {name} is not a metric batch-inpaint writes"


def test_the_dockerfile_builds_what_readme_installs_and_runs_readmes_command(tmp_path: Path) -> None:
    text = (RECIPES / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
    assert python is not None and (int(python[1]), int(python[2])) >= (3, 11)
    assert project["requires-python"] == ">=3.11"
    assert re.search(r"^RUN pip install --no-cache-dir \. ", text, re.M)  # the project from its own files
    [entry] = re.findall(r'^ENTRYPOINT \["([\w-]+)"\]$', text, re.M)
    assert entry in project["scripts"]
    readme = (ROOT / "README.md").read_text()
    first = re.findall(r"```sh\n(.*?)\n```", readme, re.S)[0]
    assert "pip install -e . &&" in first  # README installs the same project, editable
    readme_run = shlex.split(first.split("&& batch-inpaint ", 1)[1])
    runs = [shlex.split(line) for line in re.findall(r"^#\s+docker run .*? batch-inpaint (run .*)$", text, re.M)]
    assert len(runs) == 2
    for args in runs:
        parses(args)
    [docker_args] = [args for args in runs if "sample_data/photos" in args]
    out = readme_run.index("--out")
    assert docker_args[:out + 1] == readme_run[:out + 1] and docker_args[out + 2:] == readme_run[out + 2:]
    # what the COPY lines bring in is enough for pip to build the package
    context = tmp_path / "context"
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for name in source.split():
            target = context / name
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / name, target)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "wheel"),
                            str(context)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("batch_inpaint-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "batch_inpaint/cli.py" in names and "batch_inpaint/report_assets/report.js" in names


def test_the_fleet_job_runs_one_job_in_parallel_pods_with_its_secrets_from_secrets() -> None:
    job = yaml.safe_load((RECIPES / "fleet-job.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["parallelism"] > 1 and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    [rule] = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and set(rule["onExitCodes"]["values"]) == {2, 3, 4}
    [container] = pod["containers"]
    assert rule["onExitCodes"]["containerName"] == container["name"]
    parses(container["args"])
    assert "--job" in container["args"]  # one name on every pod, whatever their mount paths
    env = {e["name"]: e for e in container["env"]}
    for name in ("CLIPDROP_API_KEY", "BATCH_INPAINT_MANIFEST"):
        assert "secretKeyRef" in env[name]["valueFrom"] and "value" not in env[name]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert all(any(a.startswith(m + "/") for m in mounts) for a in container["args"] if a.startswith("/"))


@pytest.mark.parametrize("script", ["fleet-slurm.sh", "fleet-ssh.sh"])
def test_the_fleet_scripts_are_valid_bash_and_run_commands_batch_inpaint_accepts(script: str) -> None:
    path = RECIPES / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert os.access(path, os.X_OK)
    text = path.read_text().replace("\\\n", " ")
    commands = [shlex.split(line.split("batch-inpaint", 1)[1].rstrip().removesuffix("'"))
                for line in text.splitlines() if re.match(r"\s*(exec |command=')?batch-inpaint ", line)]
    assert len(commands) >= 1
    for args in commands:
        parses(args)
        assert "--job" in args
    assert "PASSWORD" not in text and ":" not in re.findall(r"postgresql://([^@]*)@", text)[0]  # ~/.pgpass has it
