"""The image's rules, read from the Dockerfile and .dockerignore (no Docker engine needed):
multi-stage, a base pinned to an exact version, a non-root final stage without build tools,
PyTensor set up for that, and a build context without the repository's history, tests,
caches or local data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|c\+\+|make|cmake|build-essential|python3?-dev|libc6?-dev|"
    r"musl-dev|cargo|rustc|git)\b"
)
PINNED_TAG = re.compile(r"^[a-z0-9./_-]+:\d+\.\d+\.\d+[\w.-]*$")
PINNED_DIGEST = re.compile(r"^[a-z0-9./_:-]+@sha256:[0-9a-f]{64}$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments), comments dropped and continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        keyword, _, args = line.strip().partition(" ")
        if keyword:
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in _instructions(DOCKERFILE.read_text("utf-8")):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        else:
            assert keyword == "ARG", f"{keyword} before the first FROM"
    return stages


def test_the_image_is_built_in_stages_from_a_pinned_base() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage: build in one stage, run from a clean one"
    names = {s.name for s in stages if s.name}
    bases = {s.base for s in stages if s.base not in names}
    assert bases, "no base image"
    for base in bases:
        assert PINNED_TAG.match(base) or PINNED_DIGEST.match(base), (
            f"{base}: pin the base image to an exact x.y.z tag or a sha256 digest"
        )
    assert len(bases) == 1, f"one base for every stage, not {sorted(bases)}"
    final = stages[-1]
    copies = [args for keyword, args in final.instructions if keyword == "COPY"]
    assert any(args.startswith(f"--from={stages[0].name} ") for args in copies), (
        "the final stage takes the built venv from the build stage"
    )


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    final = _stages()[-1]
    users = [args for keyword, args in final.instructions if keyword == "USER"]
    assert users, "the final stage has no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]
    assert user.isdigit(), "a numeric uid, so runAsNonRoot can check it"
    keywords = [keyword for keyword, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN"), (
        "every RUN of the final stage comes before USER; nothing runs as root after it"
    )
    assert ("CMD", '["leadflow", "serve"]') in final.instructions


def test_the_final_stage_installs_no_build_tools() -> None:
    """Regression: a compiler in the runtime image (PyTensor would like g++) is a build
    tool shipped to production; the policy's fits use PyTensor's Numba backend instead,
    which has to be asked for (mode=NUMBA)."""
    final = _stages()[-1]
    for keyword, args in final.instructions:
        if keyword != "RUN":
            continue
        assert not re.search(r"\b(apt-get|apt|apk|yum|dnf)\b.*\binstall\b", args), (
            f"the final stage installs packages: RUN {args}"
        )
        assert not re.search(r"\bpip3? install\b", args), f"install in the build stage: {args}"
        assert not BUILD_TOOLS.search(args), f"a build tool in the final stage: RUN {args}"
    env = " ".join(args for keyword, args in final.instructions if keyword == "ENV")
    flags = re.search(r"PYTENSOR_FLAGS=(\S+)", env)
    assert flags, "set PYTENSOR_FLAGS: PyTensor must not look for a C compiler"
    assert "cxx=" in flags.group(1).split(","), flags.group(1)
    # without a compiler and without Numba, PyTensor runs its pure-Python VM: a fit that
    # takes half a minute takes a quarter of an hour
    assert "mode=NUMBA" in flags.group(1).split(","), flags.group(1)
    assert "base_compiledir=/tmp/" in flags.group(1), "PyTensor's cache in a writable place"


def _ignored() -> set[str]:
    lines = DOCKERIGNORE.read_text("utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_the_build_context_leaves_out_history_tests_caches_and_local_data() -> None:
    ignored = _ignored()
    required = {
        ".git",  # history
        "tests",  # the tests and their data
        "**/__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "*.egg-info",
        ".leadflow",  # the embedded mode's data and resume secret
        "**/.leadflow",
        ".env",
    }
    assert required <= ignored, f"add to .dockerignore: {sorted(required - ignored)}"


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    """Regression: ignoring a folder the Dockerfile copies fails the build late."""
    ignored = _ignored()
    for stage in _stages():
        for keyword, args in stage.instructions:
            if keyword != "COPY" or args.startswith("--from="):
                continue
            for source in args.split()[:-1]:
                top = source.rstrip("/").split("/")[0]
                assert (ROOT / top).exists(), f"COPY {source}: no such path"
                assert top not in ignored, f"COPY {source}, but .dockerignore drops {top}"


def test_the_build_stage_copies_every_package_it_installs() -> None:
    """Regression: a new top-level package (``app/``, the entry points) that the
    image does not copy installs fine and fails only when the container starts."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    found = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert found is not None, "pyproject.toml lists no packages to install"
    packages = {name.strip().strip('"').rstrip("*") for name in found.group(1).split(",")}
    copied = {
        source.rstrip("/").split("/")[0]
        for stage in _stages()
        for keyword, args in stage.instructions
        if keyword == "COPY" and not args.startswith("--from=")
        for source in args.split()[:-1]
    }
    assert packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"


LOCK = ROOT / "requirements.lock"
LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _locked() -> dict[str, str]:
    """The lock file's pins, names normalised (PEP 503)."""
    pins = {}
    for line in LOCK.read_text("utf-8").splitlines():
        match = LOCKED.match(line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_the_build_installs_the_locked_dependencies_with_their_hashes() -> None:
    """Reproducible builds: every dependency from requirements.lock (scripts/lock), hashes
    required, then the project alone (--no-deps), never a resolver's choice of the day."""
    (build,) = [s for s in _stages() if s.name == "build"]
    runs = [args for keyword, args in build.instructions if keyword == "RUN"]
    installs = [cmd for args in runs for cmd in re.split(r"&&|;", args) if "pip install" in cmd]
    assert installs, "the build stage installs nothing"
    assert "pip install --require-hashes -r requirements.lock" in " ".join(installs[0].split())
    for cmd in installs[1:]:
        assert "--no-deps" in cmd.split(), f"an install that resolves dependencies: {cmd}"
    copied = [args for keyword, args in build.instructions if keyword == "COPY"]
    assert any("requirements.lock" in args.split() for args in copied), "COPY the lock file"
    text = LOCK.read_text("utf-8")
    pins = _locked()
    requirements = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "--"))
    ]
    assert len(requirements) == len(pins) and pins, "one exact pin (==) per package"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    unhashed = [b.split()[0] for b in blocks if LOCKED.match(b) and "--hash=sha256:" not in b]
    assert not unhashed, f"pins without hashes: {unhashed}"
    assert pins.get("aiokafka") == "0.14.0", "aiokafka at the integration tier's version"
    for name in ("aiohttp", "redis", "pymc", "numba"):
        assert name in pins, f"{name} missing from requirements.lock: run scripts/lock"
    assert "pytest" not in pins, "the image's lock carries no dev dependencies"
    assert "requirements.lock" not in DOCKERIGNORE.read_text("utf-8").split(), ".dockerignore"
