"""The device checks script (scripts/device_check.sh) runs end to end; here on the CPU with the
tiny preset, on the device with gpu-proxy on CUDA."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import REPO


def test_device_check_writes_every_figure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "DEVICE": "cpu", "PRESET": "tiny",
           "TOKENS": "16384"}
    result = subprocess.run(["bash", "scripts/device_check.sh"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("exit 0 after") == 4, result.stderr
    trial = json.loads((tmp_path / "bench_trial.json").read_text())
    assert trial["preset"] == "tiny" and trial["domain_tokens"] == 16384
    assert trial["trial_tokens"] == trial["nca_tokens"] + 16384 and trial["scratch_runs"] == 2
    assert json.loads((tmp_path / "lm_bench.json").read_text())["presets"]["tiny"]["mfu"] > 0
    assert json.loads((tmp_path / "nca_bench.json").read_text())["generate_tokens_per_s"] > 0
    assert "torch" in (tmp_path / "env.txt").read_text()
