"""The ``xflipnslide`` command caps glibc's malloc arenas before its
threads allocate; the library, imported, never does
(``xflipnslide._core.allocator``). Each case runs in a fresh interpreter,
so this process's allocator is left as it is; arenas are counted from
glibc's own report (``malloc_info``: one ``<heap nr=…>`` per arena)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import pytest


def _is_glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    return True


glibc = pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc arenas only")

#: Counts the process's arenas with glibc's malloc_info, after threads that
#: each allocate and keep small blocks (kept: an arena's first use).
_COUNT = """
import ctypes, os, re, tempfile, threading
def arenas():
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    fd, path = tempfile.mkstemp(); os.close(fd)
    f = libc.fopen(path.encode(), b"w"); libc.malloc_info(0, f); libc.fclose(f)
    text = open(path).read(); os.remove(path)
    return len(re.findall(r"<heap nr=", text))
def allocate_in_threads(n=4):
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    kept, go = [], threading.Barrier(n)
    def work():
        go.wait()  # all alive at once: each needs an arena of its own
        kept.append(libc.malloc(1000))
        go.wait()
    threads = [threading.Thread(target=work) for _ in range(n)]
    [t.start() for t in threads]; [t.join() for t in threads]
"""


def _run(body: str, env: dict | None = None) -> dict:
    code = _COUNT + textwrap.dedent(body)
    full = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    full.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_capped_arenas_keep_new_threads_in_the_main_heap():
    got = _run(
        """
        import json
        from xflipnslide._core.allocator import cap_arenas
        cap = cap_arenas()
        allocate_in_threads()
        print(json.dumps({"cap": cap, "arenas": arenas()}))
        """
    )
    assert got == {"cap": 1, "arenas": 1}
    # the same threads without the cap: an arena each
    free = _run(
        """
        import json
        allocate_in_threads()
        print(json.dumps({"arenas": arenas()}))
        """
    )
    assert free["arenas"] >= 3


@glibc
def test_the_users_own_setting_wins():
    got = _run(
        """
        import json
        from xflipnslide._core.allocator import cap_arenas
        print(json.dumps({"cap": cap_arenas()}))
        """,
        {"MALLOC_ARENA_MAX": "4"},
    )
    assert got == {"cap": None}


_TILE = """
    import json, os, sys, tempfile
    import xflipnslide
    from xflipnslide.cli import main
    words = ["tile", xflipnslide.sample_scene_path(), "--out",
             os.path.join(tempfile.mkdtemp(), "t.zarr"), "--tile-size", "64"]
    before = arenas()
    {call}
    print(json.dumps({{"rc": rc, "before": before, "after": arenas()}}))
    """


@glibc
def test_the_command_caps_its_arenas_and_the_library_does_not():
    command = _run(_TILE.format(call='sys.argv = ["xflipnslide", *words]; rc = main()'))
    assert command == {"rc": 0, "before": 1, "after": 1}  # its threads share the main heap
    library = _run(_TILE.format(call="rc = main(words)"))  # called from Python: left alone
    assert library["rc"] == 0 and library["after"] > library["before"]


@pytest.mark.parametrize("error", [OSError("no such library"), TypeError("not on this platform")])
def test_a_c_library_ctypes_cannot_open_is_left_alone(monkeypatch, error):
    from xflipnslide._core import allocator

    def refuse(name):
        raise error

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", refuse)
    assert allocator.cap_arenas() is None
