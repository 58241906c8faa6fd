"""A sweep's trainings as jobs, through submitit: processes on this machine (--launcher local) or SLURM jobs
(--launcher slurm). Each job trains and tests one run with sweep.train_and_test; the sweep process waits for them,
shows progress, and lists the runs that failed with their reason and log.

- Files, under the sweep folder: jobs/ (submitit's pickles and logs, named by job id); logs/<run>.out and .err,
  links to the latest job's logs of that run; logs/<run>.json, the run's job record (every job id it was given).
- A second sweep process finds the jobs the first one submitted through these records: a run whose job is still
  queued or running is waited for, never submitted twice.
- Preemption and time limits: submitit's checkpoint hook requeues the job (SLURM sends USR2 before the time
  limit; a local job gets it at --time), and the requeued job resumes from the run's *_last.pth. A job requeued by
  the cluster itself (a preemption, `scontrol requeue`) starts again the same way.
- Job states come from squeue (SLURM) and the process table (local), not from sacct, which needs an accounting
  database that many clusters, and the test cluster, do not run.
"""
import argparse
import getpass
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import sweep
import train
from arg_types import positive_int
from errors import ProjectError
from files import make_folder, save_json

LAUNCHERS = ("serial", "local", "slurm")
# {dest: flag} of the flags only some launchers use
SLURM_FLAGS = {"partition": "--partition", "time": "--time", "cpus_per_run": "--cpus_per_run", "mem": "--mem",
               "account": "--account", "qos": "--qos", "slurm_args": "--slurm_arg"}
JOB_FLAGS = {"jobs": "--jobs", "gpus_per_run": "--gpus_per_run"}
LAUNCHER_TEXT = {"serial": "it trains one run after the other in this process",
                 "local": "it runs processes on this machine; --time is its only SLURM-like flag"}
SRC = Path(__file__).resolve().parent
DEFAULT_SLURM_MINUTES = 24 * 60
NO_TIME_LIMIT_MINUTES = 60 * 24 * 365  # a local job without --time: submitit's own default is 2 minutes
MOST_REQUEUES_AFTER_TIMEOUT = 20
LONGEST_POLL_SECONDS = 30  # squeue at most twice a minute once nothing has changed for a while
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}


def add_launcher_flags(parser):
    group = parser.add_argument_group("running the runs as jobs (submitit; see the README's \"Sweeps on several "
                                      "GPUs or a cluster\")")
    group.add_argument("--launcher", choices=LAUNCHERS, default="serial",
                       help="serial: one run after the other in this process (default); local: runs as processes "
                       "of this machine, --jobs at once; slurm: each run a SLURM job (one job array)")
    group.add_argument("--jobs", type=positive_int, default=None,
                       help="local: runs at once (default: one per --gpus_per_run GPUs on CUDA, 1 on a CPU, where "
                       "the cores are divided between them); slurm: the job array's limit of runs at once")
    group.add_argument("--gpus_per_run", type=positive_int, default=None,
                       help="GPUs of each run (default 1 on CUDA or with slurm, unless --device cpu); more than one "
                       "trains the run with DistributedDataParallel, one process per GPU, -b per process")
    group.add_argument("--collect", action="store_true",
                       help="submit nothing: say where every run stands and write REPORT.md from the finished ones")
    group.add_argument("--partition", help="slurm: the partition")
    group.add_argument("--time", type=positive_int, default=None, metavar="MINUTES",
                       help=f"slurm: each job's time limit (default {DEFAULT_SLURM_MINUTES}); a job that reaches "
                       "it is requeued and continues from its last epoch. local: the same, default none")
    group.add_argument("--cpus_per_run", type=positive_int, help="slurm: CPUs of each run (its threads)")
    group.add_argument("--mem", type=positive_int, metavar="GB", help="slurm: memory of each run in GB")
    group.add_argument("--account", help="slurm: the account to charge")
    group.add_argument("--qos", help="slurm: the quality of service")
    group.add_argument("--slurm_arg", dest="slurm_args", action="append", default=[], metavar="KEY=VALUE",
                       help="slurm: any other sbatch option, e.g. --slurm_arg constraint=a100 (repeatable)")


def given(args, flags):
    """The flags of {dest: flag} that the command gave."""
    return [flag for dest, flag in flags.items() if getattr(args, dest) not in (None, [])]


def check_launcher_flags(args):
    """ProjectError for launcher flags that the chosen launcher would not use, or a cluster that cannot take the
    jobs, before anything is submitted."""
    unused = {"serial": {**SLURM_FLAGS, **JOB_FLAGS}, "local": {k: v for k, v in SLURM_FLAGS.items() if k != "time"},
              "slurm": {}}[args.launcher]
    if given(args, unused):
        flags = given(args, unused)
        raise ProjectError(f"{', '.join(flags)}: the {args.launcher} launcher does not use "
                           f"{'this flag' if len(flags) == 1 else 'these flags'} ({LAUNCHER_TEXT[args.launcher]}); "
                           "choose the --launcher that does, or drop them.")
    if args.launcher != "serial":
        require_submitit()
    if args.launcher == "slurm" and args.device == "cpu" and args.gpus_per_run:
        raise ProjectError(f"--gpus_per_run {args.gpus_per_run} with --device cpu: the runs would hold GPUs they do "
                           "not use; drop one of the two.")
    if args.launcher == "slurm" and not args.collect:
        check_slurm(args)


def require_submitit():
    if importlib.util.find_spec("submitit") is None:
        raise ProjectError("--launcher local and slurm run the sweep's runs as jobs through submitit, which is not "
                           "installed; run pip install -r requirements-submitit.txt (make test installs it).")


def check_slurm(args):
    """ProjectError without SLURM's commands, or for a partition the cluster does not have."""
    missing = [command for command in ("sbatch", "squeue", "scontrol") if shutil.which(command) is None]
    if missing:
        raise ProjectError(f"--launcher slurm needs SLURM's commands, and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not on PATH; run the sweep on a machine of the "
                           "cluster (a login node), or use --launcher local.")
    if args.partition:
        shown = subprocess.run(["scontrol", "show", "partition", args.partition], capture_output=True, text=True)
        if shown.returncode:
            raise ProjectError(f"--partition {args.partition}: the cluster has no such partition "
                               f"({(shown.stderr or shown.stdout).strip()}); sinfo lists the partitions.")
    for item in args.slurm_args:
        if "=" not in item or not item.partition("=")[0].strip():
            raise ProjectError(f"--slurm_arg {item!r} is not KEY=VALUE; write sbatch options without their dashes, "
                               "e.g. --slurm_arg constraint=a100 --slurm_arg exclusive=true.")


class RunJob:
    """What one job runs: one training of the sweep, found from the sweep folder's files when the job starts, so
    that a requeued job resumes from the *_last.pth its earlier start saved."""

    def __init__(self, args, run, seed, out):
        self.args, self.run, self.seed, self.out = args, run, seed, out

    def __call__(self):
        rank = export_distributed_environment()
        item = sweep.planned(self.args, self.run, self.seed, self.out)
        if rank:  # the other processes of a run on several GPUs; rank 0 writes every file and tests
            train.main(item.args)
            return None
        return sweep.train_and_test(item, self.out / "checkpoints")

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption or time-out: requeue the same training; the files hold its progress."""
        import submitit
        return submitit.helpers.DelayedSubmission(RunJob(self.args, self.run, self.seed, self.out))


def export_distributed_environment():
    """In a job of several processes (one per GPU), torch.distributed's variables as torchrun sets them, so that
    train.py trains with DistributedDataParallel; returns this process's rank (0 in a job of one process)."""
    import submitit
    environment = submitit.JobEnvironment()
    if environment.num_tasks == 1:
        return 0
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=True)
    return environment.global_rank


def job_setup(threads):
    """Shell lines run before each job's Python starts: src/ importable, and the job's CPU threads set before torch
    starts (under SLURM, the CPUs it was given)."""
    threads = threads or "${SLURM_CPUS_PER_TASK:-1}"
    return [f"export PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}}",
            f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"]


def cpu_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---------------------------------------------------------------- job records

def record_path(out, item):
    return out / "logs" / f"{item.key()}.json"


def read_record(out, item):
    path = record_path(out, item)
    return json.loads(path.read_text()) if path.exists() else None


def write_record(out, item, launcher, job, gpus=()):
    """Add a job to the run's record, and point logs/<run>.out and .err at its logs."""
    record = read_record(out, item) or {"run": item.key(), "jobs": []}
    record["jobs"].append({"launcher": launcher, "job_id": job.job_id, "gpus": list(gpus),
                           "submitted": datetime.now().isoformat(timespec="seconds")})
    save_json(record, record_path(out, item))
    for link, target in ((".out", job.paths.stdout), (".err", job.paths.stderr)):
        path = out / "logs" / f"{item.key()}{link}"
        path.unlink(missing_ok=True)
        path.symlink_to(os.path.relpath(target, path.parent))


def last_job(record):
    return record["jobs"][-1] if record and record["jobs"] else None


# ---------------------------------------------------------------- job states

def slurm_states():
    """{job id: state} of this user's jobs that SLURM still holds (queued, running, completing)."""
    listed = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"], capture_output=True,
                            text=True)
    if listed.returncode:
        raise ProjectError(f"squeue failed ({listed.stderr.strip()}); the sweep cannot see its jobs. The jobs go on; "
                           "run the same command again once SLURM answers.")
    return dict(line.split("|", 1) for line in listed.stdout.split())


def local_job_alive(job_id, jobs_folder):
    """Whether a local job's controller process still runs (read from the process table where there is one)."""
    cmdline = Path(f"/proc/{job_id}/cmdline")
    if cmdline.parent.parent.exists() and Path("/proc/self").exists():
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "submitit" in text and str(jobs_folder) in text
    try:
        os.kill(int(job_id), 0)
    except (OSError, ValueError):
        return False
    return True


def job_state(job, out, states):
    """'queued', 'running' or 'ended' for a job of a record; states: squeue's answer, for SLURM jobs."""
    if job["launcher"] == "slurm":
        state = states.get(job["job_id"])
        return "ended" if state is None else "queued" if state in QUEUED else "running"
    return "running" if local_job_alive(job["job_id"], out / "jobs") else "ended"


def live_jobs(out):
    """'run (job id, state)' of every run in the sweep folder out whose last job is still queued or running."""
    jobs = {path.stem: last_job(json.loads(path.read_text())) for path in (out / "logs").glob("*.json")}
    slurm = any(job and job["launcher"] == "slurm" for job in jobs.values()) and shutil.which("squeue")
    states = slurm_states() if slurm else {}
    live = {run: job_state(job, out, states) for run, job in jobs.items() if job}
    return [f"{run} ({jobs[run]['job_id']}, {state})" for run, state in live.items() if state != "ended"]


def failure_reason(out, job):
    """Why a job ended without finishing its run: the last line of its error, as submitit kept it."""
    from submitit.core.utils import JobPaths
    paths = JobPaths(out / "jobs", job["job_id"], task_id=0)
    outcome = None
    if paths.result_pickle.exists():
        with open(paths.result_pickle, "rb") as f:
            outcome = pickle.load(f)
    if outcome and outcome[0] == "error":
        lines = [line for line in str(outcome[1]).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "an error without a message"
    if outcome:
        return "the job ended, but the run's files say it is not finished"
    return "the job ended without a result (killed, out of memory, or stopped by the cluster)"


# ---------------------------------------------------------------- submitting

def local_executor(out, gpus, tasks, threads, minutes):
    import submitit
    executor = submitit.LocalExecutor(folder=out / "jobs", max_num_timeout=MOST_REQUEUES_AFTER_TIMEOUT)
    executor.update_parameters(timeout_min=minutes or NO_TIME_LIMIT_MINUTES, gpus_per_node=len(gpus),
                               visible_gpus=tuple(gpus), tasks_per_node=tasks, setup=job_setup(threads))
    return executor


def slurm_executor(args, out, gpus_per_run, runs_at_once):
    import submitit
    executor = submitit.SlurmExecutor(folder=out / "jobs", max_num_timeout=MOST_REQUEUES_AFTER_TIMEOUT)
    tasks = max(1, gpus_per_run)
    parameters = {"job_name": f"sweep-{out.name}", "time": args.time or DEFAULT_SLURM_MINUTES, "nodes": 1,
                  "ntasks_per_node": tasks, "setup": job_setup(None),
                  "additional_parameters": dict(item.split("=", 1) for item in args.slurm_args)}
    if gpus_per_run:
        parameters["gpus_per_node"] = gpus_per_run
    if args.cpus_per_run:
        parameters["cpus_per_task"] = max(1, args.cpus_per_run // tasks)
    if args.mem:
        parameters["mem"] = f"{args.mem}G"
    if runs_at_once:
        parameters["array_parallelism"] = runs_at_once
    parameters.update({key: getattr(args, key) for key in ("partition", "account", "qos") if getattr(args, key)})
    executor.update_parameters(**parameters)
    return executor


# ---------------------------------------------------------------- the sweep's jobs

def progress(states):
    """'3/10 finished, 2 running, 4 queued, 1 failed' from {run: state}."""
    counts = {state: list(states.values()).count(state) for state in ("running", "queued", "pending", "failed")}
    return ", ".join([f"{list(states.values()).count('finished')}/{len(states)} finished"]
                     + [f"{count} {state}" for state, count in counts.items() if count])


class Jobs:
    """The sweep's unfinished trainings and their jobs: submits them, waits for them, and says how each ended."""

    def __init__(self, args, out, items, device):
        self.args, self.out, self.items, self.device = args, out, items, device
        self.slots = self.gpu_slots() if args.launcher == "local" else []
        self.to_start = []  # local trainings waiting for a free slot
        self.handles = {}  # key: the submitit job of a local job this process started (polled, which reaps it)
        self.failed = {}  # key: (reason, log) of runs whose last job ended without finishing them

    def gpu_slots(self):
        """The GPU sets of the local runs that may run at once: [()] * jobs on a CPU."""
        per_run = self.args.gpus_per_run
        if self.device.type != "cuda":
            if per_run:
                raise ProjectError(f"--gpus_per_run {per_run}: this sweep trains on the {self.device.type}; drop "
                                   "the flag, or train on CUDA.")
            return [()] * (self.args.jobs or 1)
        import torch
        count, per_run = torch.cuda.device_count(), per_run or 1
        if per_run > count:
            raise ProjectError(f"--gpus_per_run {per_run}, and this machine has {count} GPU"
                               f"{'' if count == 1 else 's'}; ask for {count} or fewer.")
        slots = [tuple(range(start, start + per_run)) for start in range(0, count - per_run + 1, per_run)]
        return slots[:self.args.jobs] if self.args.jobs else slots

    def states(self):
        """{key: 'finished', 'running', 'queued', 'pending' (not submitted yet) or 'failed'} of every training."""
        records = {item.key(): read_record(self.out, item) for item in self.items}
        slurm = any(job and job["launcher"] == "slurm" for job in map(last_job, records.values()))
        answer = slurm_states() if slurm else {}
        states = {}
        for item in self.items:
            key, job = item.key(), last_job(records[item.key()])
            if key in self.handles:
                self.handles[key].done()
            if sweep.test_result_path(item.args).exists():
                states[key] = "finished"
            elif job is None or key in self.to_start:
                states[key] = "pending"
            else:
                state = job_state(job, self.out, answer)
                states[key] = "failed" if state == "ended" else state
                if state == "ended" and key not in self.failed:
                    self.failed[key] = (failure_reason(self.out, job), self.out / "logs" / f"{key}.err")
        return states

    def failures(self):
        """{label: (reason, log)} of the runs that failed."""
        return {item.label(True): self.failed[item.key()] for item in self.items if item.key() in self.failed}

    def collect(self):
        """Say where each training stands, submitting nothing; returns {label: why it is not in the report}."""
        states = self.states()
        print(f"--collect: {progress(states)}")
        missing = {}
        for item in self.items:
            state = states[item.key()]
            if state == "failed":
                missing[item.label(True)] = self.failed[item.key()]
            elif state != "finished":
                missing[item.label(True)] = ({"pending": "not finished, and no job of it is queued or running"}
                                             .get(state, state), None)
            if state != "finished":
                print(f"  {item.label(True)}: {state}")
        return missing

    def run(self):
        """Submit what is neither finished nor queued or running, wait for every job, and return {label: (reason,
        log)} of the runs that failed."""
        states = self.states()
        fresh = [item for item in self.items if states[item.key()] in ("pending", "failed")]
        for item in fresh:
            self.failed.pop(item.key(), None)  # submitted again: an earlier failure is history
        found = sum(state in ("queued", "running") for state in states.values())
        if found:
            print(f"{found} run{'s are' if found > 1 else ' is'} still queued or running from an earlier sweep "
                  "process: waited for, not submitted again.")
        if self.args.launcher == "slurm":
            self.submit_slurm(fresh)
        else:
            self.to_start = [item.key() for item in fresh]
        self.wait()
        return self.failures()

    def job(self, item):
        """What a job of item runs, with absolute paths: a SLURM job may start in another folder."""
        args = argparse.Namespace(**{**vars(self.args), "data_path": os.path.abspath(self.args.data_path)})
        return RunJob(args, item.run, item.seed, self.out.resolve())

    def submit_slurm(self, items):
        if not items:
            return
        gpus = self.args.gpus_per_run or (0 if self.args.device == "cpu" else 1)
        executor = slurm_executor(self.args, self.out, gpus, self.args.jobs)
        make_folder(self.out / "logs")
        from submitit.core.utils import FailedJobError, FailedSubmissionError
        try:
            with executor.batch():
                jobs = [executor.submit(self.job(item)) for item in items]
        except (subprocess.CalledProcessError, FailedSubmissionError, FailedJobError) as error:
            raise ProjectError(f"sbatch refused the sweep's {len(items)} jobs ({error}); nothing was submitted. "
                               "Its message is above; check --partition, --account, --qos and --slurm_arg.") from None
        for item, job in zip(items, jobs):
            write_record(self.out, item, "slurm", job)
        print(f"Submitted {len(items)} run{'s' if len(items) > 1 else ''} as SLURM job array "
              f"{jobs[0].job_id.split('_')[0]}; their logs: {self.out / 'logs'}/<run>.out and .err")

    def start_local(self, key, gpus, threads):
        item = next(item for item in self.items if item.key() == key)
        executor = local_executor(self.out, gpus, max(1, len(gpus)), threads, self.args.time)
        make_folder(self.out / "logs")
        job = executor.submit(self.job(item))
        write_record(self.out, item, "local", job, gpus)
        self.handles[key] = job
        self.to_start.remove(key)
        on = f", GPU {','.join(map(str, gpus))}" if gpus else f", {threads} CPU thread{'s' if threads > 1 else ''}"
        print(f"started {item.label(True)} (job {job.job_id}{on}; log {self.out / 'logs' / key}.err)")

    def free_slots(self, states):
        """The slots no running local job holds (a job found from an earlier sweep process holds its GPUs)."""
        jobs = [last_job(read_record(self.out, item)) for item in self.items if states[item.key()] == "running"]
        busy = [job for job in jobs if job["launcher"] == "local"]
        used = [tuple(job["gpus"]) for job in busy]
        return [slot for slot in self.slots if slot == () or slot not in used][:max(0, len(self.slots) - len(busy))]

    def wait(self):
        """Start local trainings as slots free up, and print progress until no job is queued or running."""
        threads = max(1, cpu_cores() // max(1, len(self.slots)))
        shown, reported, quiet_since = None, set(), time.monotonic()
        while True:
            states = self.states()
            for slot in self.free_slots(states)[:len(self.to_start)]:
                self.start_local(self.to_start[0], slot, threads)
            states = self.states()
            summary = progress(states)
            if summary != shown:
                print(f"[{datetime.now():%H:%M:%S}] {summary}", flush=True)
                for key in self.failed.keys() - reported:
                    print(f"  failed: {key}: {self.failed[key][0]} (log: {self.failed[key][1]})", flush=True)
                reported |= self.failed.keys()
                shown, quiet_since = summary, time.monotonic()
            if not self.to_start and not any(state in ("queued", "running") for state in states.values()):
                return
            time.sleep(min(LONGEST_POLL_SECONDS, 1 + (time.monotonic() - quiet_since) / 20))
