# -*- test-case-name: tests.test_install -*-
"""
Tests that an installed chatd (a wheel built from this checkout, installed
into a fresh virtual environment) is found and run by C{twistd}.

Plugin discovery breaks silently with some install modes (see STYLE.md,
"twistd plugin discovery"): a package that imports fine can still be
missing from C{twistd --help}.  So this builds and installs for real and
runs twistd from outside the checkout with no C{PYTHONPATH}.

The new environment gets its dependencies (Twisted, Autobahn, ...) from
a mirror of the site directories of the interpreter running the tests,
through a C{.pth} file, so nothing is downloaded to install chatd; the
mirror leaves out any chatd installed there (CI installs one), so only
the wheel can provide chatd and its plugin.  Building the
wheel is offline too when the running interpreter has a setuptools that
can build wheels by itself; otherwise pip's isolated build fetches
setuptools from the configured package index.
"""

from __future__ import annotations

import atexit
import configparser
import importlib.util
import json
import re
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import (
    CHECKOUT,
    LOCAL_TCP0,
    LineClient,
    TwistdProcess,
    clean_env,
    http_get,
    run_twistd,
    scratch_dir,
    terminated_by_sigterm,
)

BUILD_TIMEOUT = 120.0
"""How long building the wheel or installing it may take, in seconds."""

_JUNK = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.py[co]", "_trial_temp*",
    ".venv", ".pytest_cache", ".ruff_cache", "dropin.cache", "twistd.pid", "twistd.log*",
)  # fmt: skip


@dataclass(frozen=True)
class Installation:
    """
    chatd installed from a wheel into a virtual environment of its own.

    @ivar wheel: the wheel that was built from the checkout.
    @ivar python: the environment's interpreter.
    @ivar site_packages: the environment's own site directory.
    """

    wheel: Path
    python: Path
    site_packages: Path


_installation: Installation | AssertionError | None = None


def _run(command: list[str], cwd: Path) -> str:
    """
    Run C{command} to completion without any Python path settings; return
    its output, or fail with it.
    """
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{command} still running after {BUILD_TIMEOUT}s") from e
    if result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}")
    return result.stdout


def _copy_checkout(destination: Path) -> None:
    """
    Copy the checkout's files (tracked, or new and not ignored) to
    C{destination}, so that building there leaves no junk in the checkout.
    """
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=CHECKOUT,
            capture_output=True,
            check=True,
            timeout=BUILD_TIMEOUT,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(CHECKOUT, destination, ignore=_JUNK)
        return
    for name in listing.decode().split("\0"):
        source = CHECKOUT / name
        if name and source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def _can_build_without_isolation() -> bool:
    """
    Whether this interpreter's setuptools can build the wheel itself: it
    must satisfy pyproject.toml (>= 64) and either build wheels natively
    (>= 70.1) or have the C{wheel} package beside it.
    """
    try:
        version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (64, 0) and (
        version >= (70, 1) or importlib.util.find_spec("wheel") is not None
    )


def _dependency_dirs() -> list[str]:
    """
    The site directories the running interpreter imports chatd's
    dependencies from.
    """
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if Path(d).is_dir()]


def _is_chatd(name: str) -> bool:
    return name == "chatd" or name.startswith(("chatd-", "chatd.", "__editable__.chatd"))


def _dependencies_without_chatd(into: Path) -> Path:
    """
    Mirror (with symlinks) this interpreter's site directories in C{into},
    leaving out any installed chatd and its plugin, so that the new
    environment can import chatd only from what the wheel installed.
    """
    plugins = into / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    for site_dir in map(Path, _dependency_dirs()):
        for entry in site_dir.iterdir():
            if _is_chatd(entry.name) or entry.suffix == ".pth":
                continue
            if entry.name == "twisted":
                for part in entry.iterdir():
                    if part.name != "plugins" and not (into / "twisted" / part.name).exists():
                        (into / "twisted" / part.name).symlink_to(part)
                for plugin in (entry / "plugins").iterdir():
                    if plugin.name not in ("chatd_plugin.py", "dropin.cache"):
                        if not (plugins / plugin.name).exists():
                            (plugins / plugin.name).symlink_to(plugin)
            elif not (into / entry.name).exists():
                (into / entry.name).symlink_to(entry)
    return into


def _install() -> Installation:
    """
    Build a wheel of the checkout and install it into a new environment.
    """
    root = Path(tempfile.mkdtemp(prefix="chatd-install-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    source, wheels, venv = root / "src", root / "wheels", root / "venv"
    source.mkdir()
    _copy_checkout(source)

    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels)]
    if _can_build_without_isolation():
        build.append("--no-build-isolation")
    _run([*build, str(source)], cwd=root)
    built = sorted(wheels.glob("chatd-*.whl"))
    if len(built) != 1:
        raise AssertionError(f"expected one chatd wheel, pip built {built}")
    wheel = built[0]

    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    site_packages = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root)
        .strip()
        .splitlines()[-1]
    )
    (site_packages / "_chatd_test_dependencies.pth").write_text(
        f"{_dependencies_without_chatd(root / 'dependencies')}\n"
    )
    # This interpreter's pip installs into the environment, which has none.
    _run(
        [
            sys.executable, "-m", "pip", "--python", str(python),
            "install", "--no-deps", "--no-index", str(wheel),
        ],
        cwd=root,
    )  # fmt: skip
    return Installation(wheel, python, site_packages)


def installation() -> Installation:
    """
    The installation shared by this module's tests, made on first use and
    removed when the test process exits.
    """
    global _installation
    if _installation is None:
        try:
            _installation = _install()
        except AssertionError as e:
            _installation = e  # Fail the other tests fast, not by building again.
    if isinstance(_installation, AssertionError):
        raise _installation
    return _installation


_WHERE_FROM = """
import json, sys
import chatd, chatd.app.tap
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
import twisted.plugins
makers = [m for m in getPlugins(IServiceMaker, twisted.plugins) if m.tapname == "chatd"]
print(json.dumps({
    "makers": len(makers),
    "plugin": sys.modules["twisted.plugins.chatd_plugin"].__file__ if makers else None,
    "chatd": chatd.__file__,
    "tap": chatd.app.tap.__file__,
}))
"""


class InstalledWheelTests(SynchronousTestCase):
    """
    chatd installed from a wheel, run with twistd from outside the checkout.
    """

    def setUp(self) -> None:
        self.assertIsNotNone(
            importlib.util.find_spec("pip"), "pip is needed to build and install the wheel"
        )
        self.installed = installation()
        # Anywhere but the checkout, so nothing can be imported from it.
        self.cwd = scratch_dir(self)

    def test_wheel_ships_the_plugin_but_no_package_init(self) -> None:
        """
        The wheel holds C{twisted/plugins/chatd_plugin.py} and neither a
        C{twisted/__init__.py} (which would shadow Twisted) nor a
        C{twisted/plugins/__init__.py} (which would hide every plugin).
        """
        with zipfile.ZipFile(self.installed.wheel) as wheel:
            names = set(wheel.namelist())
        self.assertIn("twisted/plugins/chatd_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual({n for n in names if n.startswith("twisted/")}, {
            "twisted/plugins/chatd_plugin.py"
        })  # fmt: skip
        for client_file in ("index.html", "chat.js", "chat.css"):
            self.assertIn(f"chatd/web/{client_file}", names)

    def test_twistd_help_lists_chatd(self) -> None:
        """
        C{twistd --help} run by the environment's interpreter, outside the
        checkout and without C{PYTHONPATH}, lists the C{chatd} command.
        """
        result = run_twistd(
            ["--help"], cwd=self.cwd, env=clean_env(), python=str(self.installed.python)
        )
        self.assertEqual(result.returncode, 0, result.stdout)
        commands = result.stdout.partition("Commands:")[2]
        self.assertRegex(commands, r"(?m)^\s+chatd\s", result.stdout)

    def test_plugin_and_code_come_from_the_installation(self) -> None:
        """
        The plugin that twistd finds, and the code it would run, are the
        installed copies, not the checkout's or the test interpreter's.
        """
        where = json.loads(
            subprocess.run(
                [str(self.installed.python), "-c", _WHERE_FROM],
                cwd=self.cwd,
                env=clean_env(),
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
        )
        self.assertEqual(where["makers"], 1, where)
        for key in ("plugin", "chatd", "tap"):
            self.assertTrue(Path(where[key]).is_relative_to(self.installed.site_packages), where)

    def test_installed_chatd_serves_and_stops(self) -> None:
        """
        The installed C{twistd chatd} listens on both doors, greets a line
        client with the nickname prompt, serves the browser client's files,
        and stops on SIGTERM.
        """
        server = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--irc",
                "none",
            ],
            cwd=self.cwd,
            env=clean_env(),
            python=str(self.installed.python),
        )
        client = LineClient(self, server.port("line"))
        client.read_until(b"Choose a nickname:\r\n")

        web_port = server.port("web")
        status, headers, page = http_get(web_port, "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        with zipfile.ZipFile(self.installed.wheel) as wheel:
            self.assertEqual(page, wheel.read("chatd/web/index.html"))
            for name in ("chat.js", "chat.css"):
                status, _, body = http_get(web_port, f"/{name}")
                self.assertEqual((status, body), (200, wheel.read(f"chatd/web/{name}")), name)

        status = server.terminate()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        self.assertNotIn("Traceback", server.output())


EXAMPLE_HEADING = "Writing tests for chatd or an extension"
"""The README section whose first literal block is the example test for
extension authors."""


def readme_example(readme: str) -> str:
    """
    The code of the README's example test: the literal block that ends the
    first paragraph (C{::}) of the section L{EXAMPLE_HEADING}, read from
    the README itself so that the two cannot drift apart.
    """
    lines = readme.splitlines()
    start = lines.index(EXAMPLE_HEADING)
    intro = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("::"))
    block: list[str] = []
    for line in lines[intro + 1 :]:
        if line.strip() and not line[0].isspace():
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n") + "\n"


def extra_modules() -> list[str]:
    """
    The top-level modules of chatd's C{test} extra (by their distributions'
    names), which an installed chatd does not have.
    """
    config = configparser.ConfigParser()
    config.read(CHECKOUT / "setup.cfg")
    requirements = config["options.extras_require"]["test"].split()
    return sorted(re.split(r"[^A-Za-z0-9_.-]", req)[0].replace("-", "_") for req in requirements)


_WHAT_TESTING_NEEDS = """
import json, sys
import chatd.testing
extras = json.loads(sys.argv[1])
print(json.dumps({
    "testing": chatd.testing.__file__,
    "imported": sorted(name for name in ["tests", *extras] if name in sys.modules),
}))
"""


class ReadmeExampleTests(SynchronousTestCase):
    """
    The README's example test for extension authors, against an installed
    chatd: what it imports is shipped (in C{chatd.testing}), not left in
    the checkout's C{tests}.
    """

    def setUp(self) -> None:
        self.assertIsNotNone(
            importlib.util.find_spec("pip"), "pip is needed to build and install the wheel"
        )
        self.installed = installation()
        # Anywhere but the checkout, so nothing can be imported from it.
        self.cwd = scratch_dir(self)

    def run_installed(self, *args: str) -> str:
        """
        Run the environment's interpreter with C{args} in the scratch
        directory, without C{PYTHONPATH}; return its output, or fail with it.
        """
        result = subprocess.run(
            [str(self.installed.python), *args],
            cwd=self.cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stdout)
        return result.stdout

    def test_readme_example_passes_under_trial(self) -> None:
        """
        The example, written to a file outside the checkout, passes under
        C{python -m twisted.trial} with the installed chatd.
        """
        example = readme_example((CHECKOUT / "README.rst").read_text("utf-8"))
        self.assertIn("from chatd.testing import", example)
        (self.cwd / "test_readme_example.py").write_text(example, "utf-8")
        output = self.run_installed("-m", "twisted.trial", "test_readme_example")
        self.assertIn("PASSED (successes=1)", output)

    def test_testing_is_installed_and_needs_no_test_extras(self) -> None:
        """
        C{chatd.testing} is the installed copy, and importing it imports
        neither the checkout's C{tests} nor anything of the C{test} extra.
        """
        output = self.run_installed("-c", _WHAT_TESTING_NEEDS, json.dumps(extra_modules()))
        where = json.loads(output.strip().splitlines()[-1])
        self.assertTrue(Path(where["testing"]).is_relative_to(self.installed.site_packages), where)
        self.assertEqual(where["imported"], [], where)
