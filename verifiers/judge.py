"""Function tests judged across a trust boundary: the programs that run in the two sandboxes
(the candidate's runner and the tests' judge) and the verdict read from them.

Trust boundary. Everything inside the program's sandbox is the program's: its process, memory,
file descriptors, /proc view and anything it prints or sends may be forged. So the verdict is
never something the program says: function tests run in a *judge*, a second sandbox the program
cannot see (its own pid namespace, uid, filesystem and cgroup), which holds the program's
top-level names as proxies and exchanges only plain data with it over two pipes (JSON: None,
bool, int, float, str, bytes, list, tuple, dict, set, complex), decoded into the judge's own
builtin types; a pass is the judge's tests running to their end, reported on a pipe only the
judge holds. Input/output tests compare the program's stdout with the expected output in the
verifier's process. The program never sees its tests (they are not in its filesystem, argv or
environment), its channel to the judge carries no secret, and no exemption depends on file
names or line numbers. The tests are sandboxed as well: they may be hostile too.
"""

from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack

from rlscale.verifiers import Verdict
from rlscale.verifiers.sandbox import MAX_FILE_BYTES, Fds, Sandbox, read_now, run_problem, scratch_folder

# JSON as the json package reads and writes it, from the same C scanner and encoder, without
# importing the package: it imports re, which costs a sandbox more CPU than the rest of start-up.
_JSON = r"""
import _json
class JSONContext:  # what the scanner reads from a json.JSONDecoder
    strict, object_hook, object_pairs_hook, parse_float, parse_int = True, None, None, float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
scan_json = _json.make_scanner(JSONContext)
def loads(text):
    text = (text.decode("utf-8", "surrogatepass") if type(text) is bytes else text).strip(" \t\n\r")
    try:
        value, end = scan_json(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after JSON")
    return value
def not_serializable(value):
    raise TypeError(f"{type(value).__name__[:40]} is not JSON serializable")
def dumps(value):
    # json.dumps's settings; a fresh encoder each time, as its markers (cycle check) are per call
    encoder = _json.make_encoder({}, not_serializable, _json.encode_basestring_ascii, None, ": ", ", ",
                                 False, False, True)
    return "".join(encoder(value, 0))
"""

# Plain data across the boundary, shared by the runner and the judge. Only exact builtin
# types are encoded; decoding builds fresh builtin objects from JSON, whoever wrote it.
_CODEC = r"""
def encode(value, ref=None):
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(item, ref) for item in value]
    if kind in (tuple, set, frozenset):
        return {"$": kind.__name__, "v": [encode(item, ref) for item in value]}
    if kind is dict:
        return {"$": "dict", "v": [[encode(k, ref), encode(v, ref)] for k, v in value.items()]}
    if kind is bytes:
        return {"$": "bytes", "v": value.hex()}
    if kind is complex:
        return {"$": "complex", "v": [value.real, value.imag]}
    if ref is not None and kind is ref:
        return {"$": "ref", "v": value.__name__}
    raise TypeError(f"a {kind.__name__[:40]} is not plain data")
def decode(data, resolve=None):
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [decode(item, resolve) for item in data]
    tag, value = data["$"], data["v"]
    if tag in ("tuple", "set", "frozenset"):
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](decode(v, resolve) for v in value)
    if tag == "dict":
        return {decode(k, resolve): decode(v, resolve) for k, v in value}
    if tag == "bytes":
        return bytes.fromhex(value)
    if tag == "complex":
        return complex(float(value[0]), float(value[1]))
    if tag == "ref" and resolve is not None:
        return resolve(str(value))
    raise ValueError(f"not plain data: {tag!r:.40}")
"""

# How both sandboxed scripts start (argv holds no secret: limits, uid, fd numbers, paths).
_PROLOGUE = r"""
import builtins, os, resource, sys, types
config = loads(sys.argv[1])
sys.path += config["path"]
for name, value in config["limits"].items():
    limit = getattr(resource, name)
    hard = resource.getrlimit(limit)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))
with open(config["source"], encoding="utf-8") as file:
    source = file.read()
if config["uid"]:
    os.setgroups([])
    os.setgid(config["uid"])
    os.setuid(config["uid"])
"""

# The candidate: runs the program as __main__, then answers the judge's requests.
RUNNER = (
    "# rlscale-sandbox-runner"
    + _JSON
    + _PROLOGUE
    + _CODEC
    + r"""
import _sitebuiltins  # what `site` would have added (no site: it is slow to start)
builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
# Telemetry only: the program owns this process and can silence it.
flags, state = set(), {"active": True}
def flag(name):
    if name not in flags and state["active"]:
        flags.add(name)
        try:
            os.write(config["flags_fd"], name.encode() + b"\n")
        except OSError:
            pass
def audit(event, args):
    if event in ("sys.settrace", "sys.setprofile"):
        flag("settrace")
    elif event == "sys._getframe" and args[0].f_code.co_filename == "<string>":
        flag("frame-introspection")  # a frame of this runner
    elif event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str):
        path = os.path.abspath(args[0])
        if path == "/proc" or path.startswith("/proc/"):
            flag("proc")
        elif path == config["source"]:
            flag("own-source")
    elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
        flag("signal")
    elif event == "import" and args[0].partition(".")[0] in ("unittest", "doctest", "pytest", "_pytest"):
        flag("test-framework")
sys.addaudithook(audit)
code = compile(source, config["source"], "exec")
module = types.ModuleType("__main__")
module.__file__ = config["source"]
sys.modules["__main__"] = module
sys.argv = ["main.py"]
try:
    exec(code, module.__dict__)
except SystemExit as stop:
    flag("exit")
    state["active"] = False
    raise
except BaseException:
    state["active"] = False  # printing the traceback reads the source: not the program's doing
    raise
if config["mode"] == "serve":
    requests = os.fdopen(config["request_fd"], "rb")
    replies = os.fdopen(config["reply_fd"], "wb", buffering=0)
    names = module.__dict__
    def describe(name):
        if name not in names:
            return {"kind": "missing"}
        value = names[name]
        if callable(value):
            return {"kind": "function"}
        try:
            return {"kind": "value", "value": encode(value)}
        except (TypeError, RecursionError):
            return {"kind": "other", "type": type(value).__name__}
    def answer(request):
        try:
            if "get" in request:
                return dumps(describe(request["get"]))
            function = names[request["call"]]
            args = decode(request["args"], names.__getitem__)
            kwargs = decode(request["kwargs"], names.__getitem__)
            return dumps({"value": encode(function(*args, **kwargs))})
        except BaseException as error:  # SystemExit from a called function fails its test
            try:
                return dumps({"raise": [type(error).__name__, str(error)[:2000]]})
            except BaseException:
                return dumps({"raise": ["TypeError", "an exception that cannot be shown"]})
    replies.write(b'{"loaded": true}\n')
    for line in requests:
        replies.write(answer(loads(line)).encode() + b"\n")
"""
)

# The judge: runs the tests in a sandbox of its own, where the program's names are proxies.
JUDGE = (
    "# rlscale-sandbox-judge"
    + _JSON
    + _PROLOGUE
    + _CODEC
    + r"""
requests = os.fdopen(config["request_fd"], "wb", buffering=0)
replies = os.fdopen(config["reply_fd"], "rb")
class ProgramGone(BaseException):
    # not an Exception: tests' own `except Exception` must not swallow it
    pass
class Function:
    def __init__(self, name):
        self.__name__ = self.__qualname__ = name
    def __repr__(self):
        return f"<program function {self.__name__}>"
    def __call__(self, *args, **kwargs):
        reply = ask({"call": self.__name__, "args": encode(list(args), Function),
                     "kwargs": encode(kwargs, Function)})
        if "raise" in reply:
            kind, message = map(str, reply["raise"])
            error = getattr(builtins, kind, None)
            if not (isinstance(error, type) and issubclass(error, Exception)):
                raise RuntimeError(f"the program raised {kind}: {message}")
            try:
                raise error(message)
            except TypeError:
                raise RuntimeError(f"the program raised {kind}: {message}") from None
        return decode(reply["value"])
def ask(request):
    try:
        requests.write(dumps(request).encode() + b"\n")
    except BrokenPipeError:
        raise ProgramGone from None
    line = replies.readline(config["max_reply"])
    if not line:
        raise ProgramGone
    if not line.endswith(b"\n"):
        raise ValueError("the program's reply is too large")
    reply = loads(line)
    if type(reply) is not dict:
        raise ValueError("malformed reply")
    return reply
class Namespace(dict):
    def __missing__(self, name):
        if hasattr(builtins, name):
            return getattr(builtins, name)
        reply = ask({"get": name})
        kind = reply.get("kind")
        if kind == "function":
            return Function(name)
        if kind == "value":
            return decode(reply["value"])
        if kind == "missing":
            raise NameError(f"name {name!r} is not defined")
        raise TypeError(f"the program's {name!r} is a {str(reply.get('type'))[:40]}: "
                        "only functions and plain data reach the tests")
class ModuleView:
    def __init__(self, names):
        self.__dict__ = names  # unittest.main() finds the tests' TestCases here
code = compile(source, config["source"], "exec")
names = Namespace(__name__="__main__", __file__=config["source"], __builtins__=builtins)
sys.modules["__main__"] = ModuleView(names)
sys.argv = [config["source"]]
outcome = "failed"
try:
    if replies.readline(64) != b'{"loaded": true}\n':
        outcome = "unloaded"
    else:
        exec(code, names)
        outcome = "passed"
except SystemExit as stop:
    if stop.code in (None, 0, False):
        outcome = "passed"
    else:
        print(f"the tests exited with {stop.code!r}", file=sys.stderr)
except ProgramGone:
    outcome = "gone"
except BaseException as error:
    import traceback
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)  # from the tests' frame
sys.stderr.flush()
os.write(config["result_fd"], outcome.encode())
"""
)


def judged(program: str, tests: str, timeout_s: float, memory_mb: int, sandboxed: bool) -> Verdict:
    deadline = time.monotonic() + timeout_s
    with scratch_folder() as scratch, Fds() as fds, ExitStack() as cleanup:
        request_read, request_write = fds.pipe()
        reply_read, reply_write = fds.pipe()
        result_read, result_write = fds.pipe()
        sandbox = Sandbox(scratch, RUNNER, program, "main.py", timeout_s, memory_mb, sandboxed, fds, cleanup)
        judge = Sandbox(scratch, JUDGE, tests, "tests.py", timeout_s, memory_mb, sandboxed, fds, cleanup)
        sandbox.start(
            subprocess.DEVNULL, {"mode": "serve", "request_fd": request_read, "reply_fd": reply_write}
        )
        judge.start(
            subprocess.DEVNULL,
            {
                "request_fd": request_write,
                "reply_fd": reply_read,
                "result_fd": result_write,
                "max_reply": MAX_FILE_BYTES,
            },
        )
        judge.wait(deadline)
        if judge.timed_out:
            sandbox.kill()
            return Verdict(0.0, False, f"timeout after {timeout_s:g}s", sandbox.result().flags)
        outcome = read_now(result_read, 16).decode(errors="replace")
        if outcome in ("unloaded", "gone"):
            sandbox.wait(deadline)  # the program ended or closed its channel: how did it end?
        run, tests_run = sandbox.result(), judge.result()
        if outcome == "passed":
            return Verdict(1.0, True, "passed", run.flags)
        if outcome in ("unloaded", "gone"):
            flags = run.flags + (("died-during-tests",) if outcome == "gone" else ())
            problem = run_problem(run, timeout_s, memory_mb) or "exited before the tests finished"
            return Verdict(0.0, False, problem, tuple(sorted(flags)))
        tail = tests_run.stderr_tail
        if run.memory_exceeded or tests_run.memory_exceeded or "MemoryError" in tail:
            problem = f"memory limit ({memory_mb} MB)"
        elif not outcome:  # the judge itself died
            problem = run_problem(tests_run, timeout_s, memory_mb) or "tests did not report"
            tail = ""
        else:
            problem = "tests failed"
        return Verdict(0.0, False, f"{problem}: {tail}" if tail else problem, run.flags)
