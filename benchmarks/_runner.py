"""The one way benchmarks run a mode: in a fresh interpreter (so peak RSS and
first-call costs belong to that mode alone), reading back the JSON object it
prints on its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_fresh(script: str, *args: object) -> dict:
    """Run ``python script *args`` and return the JSON of its last stdout line."""
    cmd = [sys.executable, script, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
