"""After cookiecutter has written the project: trim it to the track, then commit.

The template holds every file that some track uses. `python -m scaffold` lists in
`remove` those that this track does not: the fine-tuning, serving or multi-GPU
files of the roadmap nodes the track leaves out, and the modules only they import.
Then the project becomes a Git repository with one commit (when Git is installed),
made with a stand-in identity if the user has not configured one.
"""

import shutil
import subprocess
from pathlib import Path

REMOVE = {{ cookiecutter._scaffold.remove | tojson }}
COMMIT = {{ "True" if cookiecutter._scaffold.git else "False" }}
MESSAGE = {{ ("Starter repo: " ~ cookiecutter.track ~ " track, budget "
              ~ cookiecutter.budget ~ " (python -m scaffold)") | tojson }}
STAND_IN = ["-c", "user.name=LLM From Scratch scaffold",
            "-c", "user.email=scaffold@localhost"]


def remove(paths: list[str]) -> None:
    """Delete the files, then the folders they leave empty."""
    for path in map(Path, paths):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        parent = path.parent
        while parent != Path(".") and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True)


def has_identity() -> bool:
    """Whether `git commit` would find user.name and user.email in the config."""
    found = [subprocess.run(["git", "config", key], capture_output=True).returncode
             for key in ("user.name", "user.email")]
    return found == [0, 0]


def first_commit() -> None:
    if shutil.which("git") is None:
        print("git not found: the project is not a Git repository yet")
        return
    try:
        git("init", "-q", "-b", "main")
        git("add", "-A")
        identity = [] if has_identity() else STAND_IN
        git(*identity, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify",
            "-m", MESSAGE)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(".git", ignore_errors=True)
        print(f"git failed ({e.stderr.strip()}): the project is not a Git "
              "repository yet")


remove(REMOVE)
if COMMIT:
    first_commit()
