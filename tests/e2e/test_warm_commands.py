"""The commands the tests fork from a warm interpreter (tests/zygote.py) behave as cold `python SCRIPT` ones do:
their own pid, working directory, environment, arguments and output; signals, exit codes and timeouts as
subprocess.Popen reports them. Each test holds in both modes (REGBENCH_TESTS_COLD=1 runs them cold)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPORT = '''
import json, os, sys
print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:], "marker": os.environ.get("MARKER"),
                  "path0": sys.path[0]}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
'''
# Writes its pid, then waits for a signal.
WAIT = '''
import os, pathlib, sys, time
pathlib.Path("started").write_text(str(os.getpid()))
try:
    time.sleep(300)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(3)
'''


def write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return name


def wait_for(path: Path, process) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_command_gets_its_own_process_folder_environment_arguments_and_output(run_command, cli_env, tmp_path):
    script = write(tmp_path, "report.py", REPORT)
    done = run_command(["a", "b c"], tmp_path, env={**cli_env, "MARKER": "set", "EXIT_CODE": "7"}, script=script)
    report = json.loads(done.stdout)
    assert done.returncode == 7 and done.stderr == "to stderr\n"
    assert report["pid"] != os.getpid() and report["cwd"] == str(tmp_path) and report["argv"] == ["a", "b c"]
    assert report["marker"] == "set" and report["path0"] == str(tmp_path)
    again = run_command([], tmp_path, script=script)
    assert again.returncode == 0 and json.loads(again.stdout)["marker"] is None  # nothing left from the last one


@pytest.mark.parametrize("signum, returncode, stderr", [(signal.SIGINT, 3, "interrupted\n"),
                                                        (signal.SIGTERM, -signal.SIGTERM, ""),
                                                        (signal.SIGKILL, -signal.SIGKILL, "")],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_started_command_runs_until_signalled_and_reports_as_popen_does(start_command, tmp_path, signum,
                                                                         returncode, stderr):
    process = start_command([], tmp_path, script=write(tmp_path, "wait.py", WAIT))
    wait_for(tmp_path / "started", process)
    assert int((tmp_path / "started").read_text()) == process.pid and process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == returncode and process.poll() == returncode
    assert err.endswith(stderr)


def test_a_command_past_its_timeout_is_killed_and_reported(run_command, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        run_command([], tmp_path, timeout=2, script=write(tmp_path, "wait.py", WAIT))
    pid = int((tmp_path / "started").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
