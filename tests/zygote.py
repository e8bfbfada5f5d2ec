"""A warm interpreter for the end-to-end tests. Each cold `python -m regbench` spends most of its seconds importing
torch, Lightning and the rest before it does anything; this process imports them once, then forks one child per
command. The child is a process of its own (its own pid, working directory, environment, stdout and stderr) that
runs the real entry point, `regbench.cli.main`, as `python -m regbench` would; only the imported modules are
shared, and nothing ran in this process before the fork but those imports.

Protocol: one JSON request per line on stdin ({"args", "cwd", "env", "stdout", "stderr", "timeout"}), one JSON
reply per line on stdout ({"returncode"} or {"timed_out": true}). Started by tests/conftest.py's `run_regbench`."""
from __future__ import annotations

import atexit
import json
import os
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
    import regbench.run.job  # noqa: F401
    import regbench.run.train  # noqa: F401


def run_child(request: dict) -> None:
    """In the forked child: become the command, run it, exit with its code (never returns)."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group, so a timeout also ends the processes it started (DDP ranks)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
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
        sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
        sys.argv = [sys.argv[0], *request["args"]]
        import torch

        # libgomp read OMP_NUM_THREADS when this interpreter loaded torch; the command may ask for another count.
        torch.set_num_threads(int(request["env"].get("OMP_NUM_THREADS") or os.cpu_count() or 1))
        import regbench.cli

        regbench.cli._PROCESS_START[:] = [time.perf_counter()]  # its start-up is counted from the fork
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


def wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"timed_out": True}
        time.sleep(0.02)


def serve() -> None:
    warm_up()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        print(json.dumps(wait(pid, request["timeout"])), flush=True)


if __name__ == "__main__":
    serve()
