import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import launcher
import reproduce
import sweep
from conftest import ROOT
from errors import ProjectError

RUNS = ("ResNet34_Unet_bs8", "HRNet_bs8")
# Sweeps of two small runs on the sample at 32 px.
SWEEP = [sys.executable, str(ROOT / "src" / "reproduce.py"), "--quick", "--image_size", "32", "--device", "cpu",
         "-lr", "1e-3"]
WAIT_SECONDS = 300


def sweep_command(out, *flags):
    runs = [] if "--runs" in flags else ["--runs", ",".join(name.replace("_bs", ":") for name in RUNS)]
    return [*SWEEP, "--out", str(out), *runs, *flags]


def run_sweep(out, *flags, env=None):
    return subprocess.run(sweep_command(out, *flags), capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=WAIT_SECONDS)


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def history(out, name):
    path = out / "checkpoints" / f"{name}_history.json"
    return json.loads(path.read_text())["history"] if path.exists() else []


def trained(out, name):
    """What a run learned, epoch by epoch: its history without the timings."""
    return [{key: value for key, value in row.items() if key not in ("seconds", "images_per_second")}
            for row in history(out, name)]


def scores(out, name):
    row = json.loads((out / "checkpoints" / f"{name}_test.json").read_text())
    return {key: row[key] for key in ("dice", "iou", "dataset_dice", "dataset_iou", "band_accuracy", "boundary_iou")}


def weights(out, name):
    return torch.load(out / "saved_models" / f"{name}_best_model.pth", weights_only=True)["model"]


def records(out):
    return {path.stem: json.loads(path.read_text()) for path in (out / "logs").glob("*.json")}


def log_text(out, name, seed=0):
    """Everything the jobs of a run printed (their .out and .err logs)."""
    return "".join((out / "logs" / f"{name}_seed{seed}{suffix}").read_text() for suffix in (".out", ".err"))


def epochs_trained(out, name, seed=0):
    """The epoch numbers train.py printed a summary line for, over every job of the run."""
    return [int(line.split("/")[0].split()[-1]) for line in log_text(out, name, seed).splitlines()
            if line.startswith("epoch ") and ": train loss" in line]


def kill_session(process):
    """Stop a sweep process started in its own session, and every job it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


# ---------------------------------------------------------------- local jobs

@pytest.mark.slow
def test_local_jobs_train_bit_for_bit_like_the_serial_sweep_and_a_failed_run_stops_no_other(tmp_path):
    serial, local = tmp_path / "serial", tmp_path / "local"
    threads = max(1, launcher.cpu_cores() // 2)  # what each of 2 local jobs gets: the same arithmetic
    assert run_sweep(serial, "-e", "1", env={"OMP_NUM_THREADS": str(threads)}).returncode == 0
    # A third run, waiting for a free slot, that crashes as it starts (its lock file cannot be opened): the others
    # go on, and it is listed with its reason.
    (local / "checkpoints" / ".DeepLabV3Plus_bs8_seed0.lock").mkdir(parents=True)
    flags = ["-e", "1", "--launcher", "local", "--jobs", "2", "--runs", "ResNet34_Unet:8,HRNet:8,DeepLabV3Plus:8"]
    assert run_sweep(local, *flags).returncode != 0
    for name in RUNS:
        assert len(trained(local, name)) == 1
        assert trained(local, name) == trained(serial, name)
        assert scores(local, name) == scores(serial, name)
        local_weights, serial_weights = weights(local, name), weights(serial, name)
        assert local_weights.keys() == serial_weights.keys()
        assert all(torch.equal(tensor, serial_weights[key]) for key, tensor in local_weights.items())
    report = (local / "REPORT.md").read_text()
    not_reported = report.split("## Runs not in this report")[1].split("##")[0]
    assert "DeepLabV3Plus_bs8" in not_reported and "IsADirectoryError" in not_reported
    assert not any(name in not_reported for name in RUNS) and "| HRNet |" in report
    assert not (local / "saved_models" / "DeepLabV3Plus_bs8_last.pth").exists()
    assert "IsADirectoryError" in (local / "logs" / "DeepLabV3Plus_bs8_seed0.err").read_text()

    assert run_sweep(local, *flags, "--collect").returncode != 0
    assert all(len(record["jobs"]) == 1 for record in records(local).values())  # --collect submits nothing


@pytest.mark.slow
def test_a_sweep_process_killed_while_its_jobs_run_is_continued_without_training_a_run_twice(tmp_path):
    out, flags = tmp_path / "sweep", ["-e", "2", "--launcher", "local", "--runs", "ResNet34_Unet:8"]
    first = subprocess.Popen(sweep_command(out, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_for(lambda: records(out) if (out / "logs").exists() else {}, "the job to start")
        first.send_signal(signal.SIGKILL)  # the sweep process alone: its jobs go on
        first.wait()
        jobs = {name: record["jobs"][0]["job_id"] for name, record in records(out).items()}
        assert all(launcher.local_job_alive(job, out / "jobs") for job in jobs.values())
        again = run_sweep(out, *flags)
        assert again.returncode == 0, again.stderr
        assert {name: [job["job_id"] for job in record["jobs"]] for name, record in records(out).items()} == {
            name: [job] for name, job in jobs.items()}
        assert [row["epoch"] for row in history(out, "ResNet34_Unet_bs8")] == [1, 2]
        assert epochs_trained(out, "ResNet34_Unet_bs8") == [1, 2]
        assert scores(out, "ResNet34_Unet_bs8")
    finally:
        kill_session(first)


@pytest.mark.slow
def test_a_job_of_several_processes_trains_its_run_with_distributed_data_parallel(tmp_path):
    """--gpus_per_run N's job: N processes, one run (here on the CPU with gloo; on GPUs the same with NCCL)."""
    out = tmp_path / "sweep"
    args = reproduce.parse_args(["--quick", "--image_size", "32", "--device", "cpu", "-e", "1", "--out", str(out)])
    executor = launcher.local_executor(out, (), 2, 1, None)
    job = executor.submit(launcher.RunJob(args, sweep.Run("ResNet34_Unet", 8), 0, out))
    rank_0, rank_1 = job.results()
    assert rank_0["model_type"] == "ResNet34_Unet" and rank_1 is None  # rank 0 alone tests
    assert "Training ResNet34_Unet_bs8 on cpu (2 processes)" in job.stdout()
    assert [row["epoch"] for row in history(out, "ResNet34_Unet_bs8")] == [1]


# ---------------------------------------------------------------- flags refused before anything is submitted

def sweep_main(tmp_path, *flags):
    return reproduce.main(reproduce.parse_args(["--quick", "--image_size", "32", "--device", "cpu", "--out",
                                                str(tmp_path / "sweep"), *flags]))


@pytest.mark.parametrize("flags", [
    ["--launcher", "local", "--partition", "gpu"],
    ["--launcher", "local", "--slurm_arg", "constraint=a100"],
    ["--jobs", "2"],
    ["--gpus_per_run", "1"],
    ["--time", "60"],
    ["--launcher", "local", "--gpus_per_run", "1"],
])
def test_flags_the_launcher_would_not_use_are_refused(tmp_path, flags):
    with pytest.raises(ProjectError):
        sweep_main(tmp_path, *flags)
    assert not (tmp_path / "sweep" / "logs").exists()


def test_jobs_must_be_at_least_one():
    with pytest.raises(SystemExit) as exit:
        reproduce.parse_args(["--launcher", "local", "--jobs", "0"])
    assert exit.value.code == 2


def fake_slurm(folder, partitions=()):
    """sbatch, squeue and scontrol stand-ins: scontrol knows only these partitions; sbatch leaves a mark if run."""
    folder.mkdir()
    scripts = {"sbatch": f"touch {folder}/sbatch-ran; exit 1", "squeue": "exit 0",
               "scontrol": " ".join(f'[ "$3" = "{name}" ] && exit 0;' for name in partitions) + " exit 1"}
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def test_slurm_without_its_commands_is_refused_before_anything_is_submitted(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ProjectError):
        sweep_main(tmp_path, "--launcher", "slurm")
    assert not (tmp_path / "sweep").exists()


def test_a_partition_the_cluster_does_not_have_is_refused_before_anything_is_submitted(tmp_path, monkeypatch):
    bin = fake_slurm(tmp_path / "bin", partitions=["gpu"])
    monkeypatch.setenv("PATH", f"{bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ProjectError):
        sweep_main(tmp_path, "--launcher", "slurm", "--partition", "nope")
    assert not (bin / "sbatch-ran").exists() and not (tmp_path / "sweep").exists()


def test_sbatch_refusing_the_jobs_is_a_clear_error(tmp_path, monkeypatch):
    bin = fake_slurm(tmp_path / "bin", partitions=["gpu"])
    monkeypatch.setenv("PATH", f"{bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(reproduce, "print_plan", lambda *args, **kwargs: None)
    with pytest.raises(ProjectError):
        sweep_main(tmp_path, "--launcher", "slurm", "--partition", "gpu")
    assert (bin / "sbatch-ran").exists() and not records(tmp_path / "sweep")


# ---------------------------------------------------------------- a real single-node SLURM cluster

SLURM_DAEMONS = ("munged", "slurmctld", "slurmd")
SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")


def program(name):
    """A program's path, also in the sbin folders that a user's PATH often lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root, host):
    """A one-node cluster: this machine's CPUs, no cgroups (proctrack/linuxproc, task/none), no accounting."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return "\n".join([
        "ClusterName=sweeptest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root}/munge.socket",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SchedulerType=sched/builtin", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none", "JobRequeue=1", "KillWait=1",
        "MinJobAge=3600",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


def start_daemons(root, env):
    """munged, slurmctld and slurmd for this cluster; returns their pid files."""
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    subprocess.run([program("munged"), "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
                   check=True, env=env, capture_output=True)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([program(daemon)], check=True, env=env, capture_output=True)
    return [root / f"{daemon}.pid" for daemon in SLURM_DAEMONS]


def stop_daemons(pid_files):
    """Stop exactly the daemons these pid files name."""
    for path in pid_files:
        if path.exists():
            try:
                os.kill(int(path.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def node_is_idle(env):
    shown = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
    return shown.stdout.strip() == "idle"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The environment (SLURM_CONF) of a SLURM cluster of this machine alone, for this module's tests; skipped
    where SLURM and munge are not installed (apt-get install slurm-wlm munge) or cannot start here."""
    missing = [name for name in SLURM_DAEMONS + SLURM_COMMANDS if program(name) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd starts jobs as their user only when it runs as root")
    root = tmp_path_factory.mktemp("slurm")
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "slurm.conf").write_text(slurm_conf(root, socket.gethostname().split(".")[0]))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    pid_files = []
    try:
        pid_files = start_daemons(root, env)
        deadline = time.monotonic() + 30
        while not node_is_idle(env):
            if time.monotonic() > deadline:
                logs = "".join(path.read_text()[-400:] for path in root.glob("*.log"))
                pytest.skip(f"the SLURM daemons did not bring the node up here: {logs}")
            time.sleep(0.5)
        yield env
        subprocess.run(["scancel", "--user", str(os.getuid())], env=env)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"a SLURM daemon could not start here: {error.stderr}")
    finally:
        stop_daemons(pid_files)


def squeue_state(job, env):
    return subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%T"], capture_output=True, text=True,
                          env=env).stdout.strip()


def start_now(job, env):
    """SLURM holds a requeued job for about two minutes before it may start again; let it start now."""
    wait_for(lambda: squeue_state(job, env) == "PENDING", f"job {job} to be pending again")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, env=env)


@pytest.mark.slow
def test_a_slurm_sweep_runs_as_a_job_array_and_requeued_or_preempted_jobs_resume_from_their_last_epoch(
        slurm, tmp_path):
    out = tmp_path / "sweep"
    # Enough epochs that training outlasts SLURM's kill of a requeued job (SIGTERM, which submitit ignores, then
    # SIGKILL: about 6 s here); with 3 epochs an idle machine finished the run first and the requeue resumed nothing.
    epochs = 12
    flags = ["-e", str(epochs), "--patience", "20", "--seeds", "0", "1", "--runs", "ResNet34_Unet:8", "--launcher",
             "slurm", "--cpus_per_run", "1", "--time", "30"]
    process = subprocess.Popen(sweep_command(out, *flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=slurm, start_new_session=True)
    try:
        histories = [out / f"seed{seed}" / "checkpoints" / "ResNet34_Unet_bs8_history.json" for seed in (0, 1)]
        wait_for(lambda: all(path.exists() and json.loads(path.read_text())["history"] for path in histories),
                 "the first epoch of both runs")
        jobs = [records(out)[f"ResNet34_Unet_bs8_seed{seed}"]["jobs"][0]["job_id"] for seed in (0, 1)]
        # Seed 0: the cluster requeues it (as a preemption with PreemptMode=REQUEUE does). Seed 1: the signal SLURM
        # sends before a time limit, which submitit's checkpoint hook answers by requeueing the job itself.
        subprocess.run(["scontrol", "requeue", jobs[0]], check=True, env=slurm)
        subprocess.run(["scancel", "--signal=USR2", jobs[1]], check=True, env=slurm)
        for job in jobs:
            start_now(job, slurm)
        output, _ = process.communicate(timeout=WAIT_SECONDS)
        assert process.returncode == 0, output
    finally:
        kill_session(process)
    for seed, job in enumerate(jobs):
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=slurm).stdout
        assert "Restarts=1" in shown
        assert log_text(out, "ResNet34_Unet_bs8", seed).count("Training ResNet34_Unet_bs8") == 2
        every_epoch = list(range(1, epochs + 1))
        assert sorted(epochs_trained(out, "ResNet34_Unet_bs8", seed)) == every_epoch  # once each, over both starts
        rows = json.loads(histories[seed].read_text())["history"]
        assert [row["epoch"] for row in rows] == every_epoch
        assert (out / f"seed{seed}" / "checkpoints" / "ResNet34_Unet_bs8_test.json").exists()
    assert "| ResNet34_Unet_bs8 (learning_rate=0.001) | 2 |" in (out / "REPORT.md").read_text()
    assert len({job.split("_")[0] for job in jobs}) == 1  # one job array


def test_restart_is_refused_while_jobs_of_the_earlier_study_run(tmp_path):
    out = tmp_path / "sweep"
    (out / "logs").mkdir(parents=True)
    # A process that the process table shows as a local job of this sweep folder.
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit", str(out / "jobs")])
    try:
        wait_for(lambda: launcher.local_job_alive(str(job.pid), out / "jobs"), "the process to start")
        (out / "logs" / "HRNet_bs8_seed0.json").write_text(json.dumps(
            {"run": "HRNet_bs8_seed0", "jobs": [{"launcher": "local", "job_id": str(job.pid), "gpus": []}]}))
        with pytest.raises(ProjectError):
            sweep_main(tmp_path, "--runs", "HRNet:8", "--restart")
        assert (out / "logs" / "HRNet_bs8_seed0.json").exists() and not list(tmp_path.glob("sweep.before-*"))
    finally:
        job.kill()
        job.wait()
    with pytest.raises(ProjectError):  # once it has ended, the study moves aside (and --collect finds nothing)
        sweep_main(tmp_path, "--runs", "HRNet:8", "--restart", "--collect")
    assert list(tmp_path.glob("sweep.before-*/logs/HRNet_bs8_seed0.json"))
