"""The SLURM job script and the cluster install script, run here with a stub SLURM environment
and a stub Python: the tunnel command it prints, the app.py command line it starts, and where
caches and temporary files go."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "cami2v.job"
INSTALL = REPO / "scripts" / "install_cluster.sh"

STUB_PYTHON = """#!/bin/bash
# Records how it was started instead of running the app.
{
  echo "ARGS:$*"
  echo "PWD:$(pwd)"
  echo "UMASK:$(umask)"
  echo "HF_HOME:$HF_HOME"
  echo "GRADIO_TEMP_DIR:$GRADIO_TEMP_DIR"
  [ -d "$GRADIO_TEMP_DIR" ] && echo "GRADIO_TEMP_DIR_EXISTS"
  echo "VIRTUAL_ENV:$VIRTUAL_ENV"
  echo "PYTHON_ON_PATH:$(command -v python)"
} > "$STUB_RECORD"
exit 0
"""


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def slurm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SLURM_JOB_ID": "4242",
        "SLURMD_NODENAME": "gcn25",
        "SLURM_SUBMIT_DIR": str(REPO),
        "USER": "scur1234",
        "LOGIN_HOST": "login.example.org",
        "PORT": "7861",
        "OUTPUTS": str(tmp_path / "outputs"),
    }
    env.update(extra)
    return env


def run_job(env: dict[str, str], cwd: Path, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(JOB)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def tunnel_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("ssh ")]


def test_scripts_parse():
    for script in (JOB, INSTALL):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr


def test_sbatch_header():
    lines = JOB.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    directives = [line for line in lines[:first_command] if line.startswith("#SBATCH")]
    # SLURM reads #SBATCH lines only up to the first command
    assert not [line for line in lines[first_command:] if line.startswith("#SBATCH")]
    opts = dict(d.split(None, 1)[1].lstrip("-").split("=", 1) for d in directives)
    assert opts["gpus"] == "1" and opts["output"] == "cami2v-%j.log"
    assert opts["partition"].startswith("gpu") and re.fullmatch(r"\d+:\d\d:\d\d", opts["time"])


def test_dry_run_prints_the_exact_tunnel_command(tmp_path):
    r = run_job(slurm_env(tmp_path, DRY_RUN="1"), tmp_path)
    assert r.returncode == 0, r.stderr
    assert tunnel_lines(r.stdout) == ["ssh -L 7861:localhost:7861 -J scur1234@login.example.org scur1234@gcn25"]
    assert "http://localhost:7861/" in r.stdout and "scancel 4242" in r.stdout
    assert "--host 127.0.0.1 --port 7861 --device cuda" in r.stdout
    assert "no AUTH_FILE" in r.stdout  # the shared-node warning


def test_defaults_login_host_and_node_name(tmp_path):
    env = slurm_env(tmp_path, DRY_RUN="1")
    del env["LOGIN_HOST"], env["SLURMD_NODENAME"]
    r = run_job(env, tmp_path)
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert r.returncode == 0, r.stderr
    assert tunnel_lines(r.stdout) == [f"ssh -L 7861:localhost:7861 -J scur1234@snellius.surf.nl scur1234@{node}"]


def test_starts_the_app_on_loopback_with_private_temp_files(tmp_path):
    venv = tmp_path / "venv"
    write_exe(venv / "bin" / "python", STUB_PYTHON)
    record = tmp_path / "record.txt"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    users = tmp_path / "users"
    users.write_text("alice:pw\n")
    env = slurm_env(tmp_path, CAMI2V_VENV=str(venv), STUB_RECORD=str(record), TMPDIR=str(scratch),
                    AUTH_FILE=str(users), APP_ARGS="--preload cami2v-512 --dtype bf16")
    r = run_job(env, tmp_path)
    assert r.returncode == 0, r.stderr
    rec = dict(line.split(":", 1) for line in record.read_text().splitlines() if ":" in line)
    assert rec["ARGS"] == (f"app.py --host 127.0.0.1 --port 7861 --device cuda --outputs {tmp_path / 'outputs'} "
                           f"--auth {users} --preload cami2v-512 --dtype bf16")
    assert rec["PWD"] == str(REPO)
    assert rec["UMASK"] == "0077"
    assert rec["HF_HOME"] == str(tmp_path / "home" / ".cache" / "huggingface")
    assert rec["VIRTUAL_ENV"] == str(venv) and rec["PYTHON_ON_PATH"] == str(venv / "bin" / "python")
    gradio_tmp = Path(rec["GRADIO_TEMP_DIR"])
    assert gradio_tmp.parent == scratch and gradio_tmp.name.startswith("gradio-4242.")
    assert "GRADIO_TEMP_DIR_EXISTS" in record.read_text() and not gradio_tmp.exists()  # removed at the end
    assert "no AUTH_FILE" not in r.stdout
    assert tunnel_lines(r.stdout) == ["ssh -L 7861:localhost:7861 -J scur1234@login.example.org scur1234@gcn25"]


def test_shared_tmp_is_avoided(tmp_path):
    venv = tmp_path / "venv"
    write_exe(venv / "bin" / "python", STUB_PYTHON)
    record = tmp_path / "record.txt"
    r = run_job(slurm_env(tmp_path, CAMI2V_VENV=str(venv), STUB_RECORD=str(record), TMPDIR="/tmp"), tmp_path)
    assert r.returncode == 0, r.stderr
    rec = dict(line.split(":", 1) for line in record.read_text().splitlines() if ":" in line)
    gradio_tmp = Path(rec["GRADIO_TEMP_DIR"])
    assert gradio_tmp.parent == tmp_path / "home" / ".cache" / "cami2v"


def test_bad_settings_are_clear_errors(tmp_path):
    r = run_job(slurm_env(tmp_path, DRY_RUN="1", AUTH_FILE=str(tmp_path / "nope")), tmp_path)
    assert r.returncode == 2 and "AUTH_FILE" in r.stderr and "not a readable file" in r.stderr
    r = run_job(slurm_env(tmp_path, DRY_RUN="1", PORT="78a0"), tmp_path)
    assert r.returncode == 2 and "PORT must be a number" in r.stderr
    r = run_job(slurm_env(tmp_path, DRY_RUN="1", SLURM_SUBMIT_DIR=str(tmp_path)), tmp_path)
    assert r.returncode == 2 and "has no app.py" in r.stderr


def test_taken_port(tmp_path):
    """A port taken on the node: an explicit PORT is an error; the default moves to a free one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        r = run_job(slurm_env(tmp_path, DRY_RUN="1", PORT=str(busy)), tmp_path)
        assert r.returncode == 3 and f"port {busy} is already in use on gcn25" in r.stderr

    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 7860))
            holder.listen(1)
        except OSError:
            pass  # someone else on this machine holds 7860: the same situation for the script
        env = slurm_env(tmp_path, DRY_RUN="1")
        del env["PORT"]
        r = run_job(env, tmp_path)
    finally:
        holder.close()
    assert r.returncode == 0, r.stderr
    (line,) = tunnel_lines(r.stdout)
    port = int(line.split()[2].split(":")[0])
    assert 7861 <= port <= 7899 and "port 7860 is taken on gcn25" in r.stdout
    assert line == f"ssh -L {port}:localhost:{port} -J scur1234@login.example.org scur1234@gcn25"


# -- the install script ---------------------------------------------------------------------------

def install_dry_run(tmp_path: Path, **extra: str) -> tuple[list[str], str]:
    """The commands the install script would run (DRY_RUN=1, a stub Python), and its output."""
    stub = write_exe(tmp_path / "bin" / "python3-stub", "#!/bin/bash\nexit 0\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DRY_RUN": "1",
           "PYTHON": str(stub), "CAMI2V_VENV": str(tmp_path / "venv"), **extra}
    r = subprocess.run(["bash", str(INSTALL)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line[2:] for line in r.stdout.splitlines() if line.startswith("+ ")], r.stdout


def test_install_script_pins_torch_and_always_uses_the_constraints(tmp_path):
    cmds, out = install_dry_run(tmp_path)
    venv_py = str(tmp_path / "venv" / "bin" / "python")
    assert cmds[0].endswith(f"-m venv {tmp_path / 'venv'}")
    pips = [c for c in cmds if " -m pip install " in c]
    assert pips and all(c.startswith(venv_py) and c.endswith("-c constraints.txt") for c in pips)
    assert "torch==2.13.0 torchvision==0.28.0" in pips[0]
    assert any("-r requirements.txt" in c for c in pips)
    gpu = " ".join(pips[2:])
    if (REPO / "requirements-gpu.txt").exists():
        assert "-r requirements-gpu.txt" in gpu
    else:
        assert "bitsandbytes==0.50.2" in gpu and "pycolmap==4.2.1" in gpu and "torchvision==0.28.0" in gpu
    assert "gptqmodel" not in " ".join(cmds) and "xformers" not in " ".join(cmds) and "--index-url" not in pips[0]
    assert "import torch, torchvision" in out  # the environment is checked at the end
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text().split()


def test_install_script_options(tmp_path):
    cmds, _ = install_dry_run(tmp_path, WITH_AWQ="1", WITH_XFORMERS="1",
                           TORCH_INDEX_URL="https://download.pytorch.org/whl/cu126")
    pips = [c for c in cmds if " -m pip install " in c]
    assert "--index-url https://download.pytorch.org/whl/cu126 torch==2.13.0" in pips[0]
    assert any("gptqmodel==7.6.0 -c constraints.txt" in c for c in pips)
    assert any("xformers==0.0.35 -c constraints.txt" in c for c in pips)


def test_install_script_refuses_an_old_python(tmp_path):
    old = write_exe(tmp_path / "old-python", "#!/bin/bash\n[ \"$1\" = -c ] && exit 1\nexit 0\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DRY_RUN": "1",
           "PYTHON": str(old), "CAMI2V_VENV": str(tmp_path / "venv")}
    r = subprocess.run(["bash", str(INSTALL)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "older than Python 3.10" in r.stderr
