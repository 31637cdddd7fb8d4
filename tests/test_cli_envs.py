"""`fastmarl envs` and `fastmarl bench envs` from the command line."""

import json
import subprocess
import sys

from fastmarl.cli import main


def test_envs_lists_every_registered_env(capsys):
    from fastmarl.envs import list_envs

    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    ids = [e.env_id for e in list_envs()]
    assert len(ids) >= 9
    for env_id in ids:
        assert env_id[:12] in out  # rich may wrap long ids inside the table


def test_unknown_command_suggests(capsys):
    assert main(["bnech"]) == 2
    assert "did you mean 'bench'" in capsys.readouterr().err


def test_bench_envs_json_line():
    out = subprocess.run([sys.executable, "-m", "fastmarl.bench", "envs", "--json", "--envs", "simple_spread_v3",
                          "--num-envs", "4", "--modes", "eager", "--seconds", "0.2"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert len(rows) == 1
    r = rows[0]
    assert r["env"] == "simple_spread_v3" and r["num_envs"] == 4 and r["steps"] % 25 == 0
    # seconds is rounded to 0.1 ms in the JSON line
    assert abs(r["steps_per_s"] - r["num_envs"] * r["steps"] / r["seconds"]) / r["steps_per_s"] < 1e-2
