"""A warm interpreter for the end-to-end tests. Each cold `python -m regbench` spends most of its seconds importing
torch, Lightning and the rest before it does anything; this process imports them once, then forks one child per
command. The child is a process of its own (its own pid, working directory, environment, stdout and stderr) that
runs the real entry point, `regbench.cli.main`, as `python -m regbench` would; only the imported modules are
shared, and nothing ran in this process before the fork but those imports.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout:
- {"op": "start", "args", "cwd", "env", "stdout", "stderr", "script"} forks the command (`python -m regbench ARGS`,
  or `python SCRIPT ARGS` where script is set) and replies {"pid"};
- {"op": "poll", "pid"} replies {"returncode"}, null while it runs;
- {"op": "wait", "pid", "timeout"} replies {"returncode"}, or {"timed_out": true} with the command still running.
At the end of stdin, commands still running are killed. Started by tests/conftest.py's `Zygote`."""
from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import time
import traceback


def warm_up() -> None:
    """What every training command imports. Not W&B (nor timm, which imports it): importing it makes a media
    folder that its exit handler deletes, so the first child to exit would delete it under every later one."""
    import lightning.pytorch  # noqa: F401
    import torch  # noqa: F401

    import regbench.cli  # noqa: F401
    import regbench.run.cli  # noqa: F401
    import regbench.run.job  # noqa: F401
    import regbench.run.train  # noqa: F401


def run_child(request: dict) -> None:
    """In the forked child: become the command, run it, exit with its code (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group, so a timeout also ends the processes it started (DDP ranks)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as in a fresh interpreter
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # stdin away from this process's request pipe; stdout and stderr to the files the test reads
        for stream, path, flags in ((0, os.devnull, os.O_RDONLY),
                                    (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                    (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            fd = os.open(path, flags, 0o644)
            os.dup2(fd, stream)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        script = request.get("script")
        # as `python -m` puts the working directory first, and `python SCRIPT` the script's folder
        sys.path[0] = os.path.dirname(os.path.abspath(script)) if script else request["cwd"]
        sys.argv = [script or sys.argv[0], *request["args"]]
        import torch

        # libgomp read OMP_NUM_THREADS when this interpreter loaded torch; the command may ask for another count.
        torch.set_num_threads(int(request["env"].get("OMP_NUM_THREADS") or os.cpu_count() or 1))
        import regbench.cli
        import regbench.run.cli

        regbench.run.cli._PROCESS_START[:] = [time.perf_counter()]  # its start-up is counted from the fork
        if script:
            runpy.run_path(script, run_name="__main__")
        else:
            regbench.cli.main()
        code = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
    except BaseException:  # as the interpreter reports an uncaught exception
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what the interpreter runs at exit (W&B, logging); os._exit skips it
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def returncode(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def wait(pid: int, timeout: float | None) -> dict:
    deadline = None if timeout is None else time.monotonic() + timeout
    while (code := returncode(pid)) is None:
        if deadline is not None and time.monotonic() > deadline:
            return {"timed_out": True}
        time.sleep(0.02)
    return {"returncode": code}


def start(request: dict) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        run_child(request)
    try:
        os.setpgid(pid, pid)  # as the child does: the group exists before the test can signal it
    except OSError:  # the child got there first, or is already gone
        pass
    return pid


def serve() -> None:
    warm_up()
    print(json.dumps({"ready": True}), flush=True)
    running: set[int] = set()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            pid = start(request)
            running.add(pid)
            reply = {"pid": pid}
        elif request["op"] == "poll":
            reply = {"returncode": returncode(request["pid"])}
        else:
            reply = wait(request["pid"], request["timeout"])
        if reply.get("returncode") is not None:
            running.discard(request["pid"])
        print(json.dumps(reply), flush=True)
    for pid in running:  # a test that failed before it waited for its command
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


if __name__ == "__main__":
    serve()
