"""The docs cannot go stale: the local walkthrough's commands run as written, in order, on a real
API server, until its route is Ready and deleted again; every relative link resolves; every page
is reachable from the README or the docs index.

A page marks the blocks a test runs with an HTML comment right before the fence (GitHub does not
render it, so the page reads as written for a human):
- `<!-- test: run -->`: run to its end, in bash with `-euo pipefail`; it must exit 0.
- `<!-- test: background -->`: a long-running command the page starts in another terminal; it
  runs for the rest of the test. `<!-- test: background, ready when: CMD -->` also polls the
  shell command CMD until it succeeds before the next block runs.
Blocks without a mark (expected output, commands that need your own machine) are not run.
"""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.support import cluster as clusters
from tests.support.cluster import REPO
from tests.support.e2e import wait_for

DOCS = REPO / "docs"
WALKTHROUGH = DOCS / "local-walkthrough.md"
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *DOCS.glob("*.md")])

MARK = re.compile(r"<!-- test: (?P<mark>.*?) -->\n(?:```(?P<lang>\w*)\n(?P<body>.*?)\n```)?", re.S)
READY_WHEN = re.compile(r"background, ready when: (.+)")


@dataclass(frozen=True)
class Step:
    mode: Literal["run", "background"]
    script: str
    ready: str | None = None  # a shell command polled until it succeeds


def steps(markdown: str) -> list[Step]:
    """The marked blocks of a page, in order; a mark the test would not understand (a typo, no
    fenced sh block right after it) is an error rather than a block silently not run."""
    found = []
    for match in MARK.finditer(markdown):
        mark, body = match["mark"], match["body"]
        if body is None or match["lang"] != "sh":
            raise ValueError(f"<!-- test: {mark} --> is not followed by a ```sh block")
        if mark == "run":
            found.append(Step("run", body))
        elif mark == "background":
            found.append(Step("background", body))
        elif ready := READY_WHEN.fullmatch(mark):
            found.append(Step("background", body, ready.group(1)))
        else:
            raise ValueError(f"unknown mark <!-- test: {mark} -->")
    return found


def test_marks_are_read_in_order_and_a_typo_is_an_error() -> None:
    page = (
        "intro\n<!-- test: run -->\n```sh\nkubectl apply -f crds/\n```\n"
        "```sh\nnot marked\n```\n"
        "<!-- test: background, ready when: test -s out.json -->\n```sh\nserve > out.json\n```\n"
        "<!-- test: background -->\n```sh\nappgw-sse run \\\n  --no-probe\n```\n"
    )
    assert steps(page) == [
        Step("run", "kubectl apply -f crds/"),
        Step("background", "serve > out.json", "test -s out.json"),
        Step("background", "appgw-sse run \\\n  --no-probe"),
    ]
    with pytest.raises(ValueError, match="unknown mark <!-- test: rnu -->"):
        steps("<!-- test: rnu -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="not followed by a ```sh block"):
        steps("<!-- test: run -->\n```yaml\na: 1\n```\n")


class Terminal:
    """A user's shell in a clone of the repository: kubectl on the API server, `appgw-sse` on
    PATH as this test's Python runs it, background commands kept until `close`."""

    def __init__(self, workdir: Path, kubeconfig: Path, home: Path) -> None:
        self.clone = workdir / "clone"
        self.clone.mkdir()
        for path in ("crds", "deploy"):  # what the walkthrough reads from the clone
            (self.clone / path).symlink_to(REPO / path)
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "appgw-sse"
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m appgw_sse "$@"\n')
        shim.chmod(0o755)
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(home),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        }
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.outputs: list[tuple[str, str]] = []  # (script, stdout) of each block run

    def run(self, script: str) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            pytest.fail(
                f"exit {done.returncode}:\n{script}\n--- stdout\n{done.stdout}\n"
                f"--- stderr\n{done.stderr}\n{self.logs()}"
            )
        self.outputs.append((script, done.stdout))
        return done.stdout

    def start(self, step: Step) -> None:
        log = self.clone.parent / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", step.script],
                cwd=self.clone,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole in close()
            )
        self.background.append((process, log))
        if step.ready is not None:
            ready = step.ready

            def check() -> bool:
                if process.poll() is not None:
                    pytest.fail(f"{step.script} exited {process.returncode}\n{self.logs()}")
                return subprocess.run(["bash", "-c", ready], cwd=self.clone).returncode == 0

            wait_for(ready, check, timeout=60)

    def output_of(self, command: str) -> str:
        """What the block that ran `command` printed."""
        return next(out for script, out in self.outputs if command in script)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.background)

    def close(self) -> None:
        for process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # Ctrl-C in its terminal, in effect
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    # The walkthrough's commands are for 1.25+ (`kubectl apply -f crds/` validates CEL rules).
    build = clusters.require_minor(25, "the local walkthrough")
    # A bare API server: the walkthrough installs the CRD and creates the namespaces itself.
    cluster = clusters.RealCluster(tmp_path, build)
    try:
        shell = Terminal(tmp_path, cluster.kubeconfig, cluster.home)
        try:
            yield shell
        finally:
            shell.close()
    finally:
        cluster.close()


def test_the_local_walkthrough_brings_a_route_to_ready_and_back(terminal: Terminal) -> None:
    walkthrough = steps(WALKTHROUGH.read_text())
    assert [s.mode for s in walkthrough].count("background") == 2  # the emulator, the operator
    for step in walkthrough:
        if step.mode == "run":
            terminal.run(step.script)
        else:
            terminal.start(step)

    # What the user saw: the route Ready for the 68 s its 45 s idle needs, the gateway holding it.
    listed = terminal.output_of("kubectl get sser")
    assert re.search(r"^notifications\s+agw-shop-prod\s+45s\s+68\s+True\s+Applied\s", listed, re.M)
    held = terminal.output_of("/_emulator/gateways")
    assert re.search(r'"name": "notifications-http",\s+"requestTimeout": 68', held), held
    # Deleted: the route is gone (its finalizer released) and the gateway holds 30 s again.
    assert terminal.run("kubectl get sser -A 2>&1") == "No resources found\n"
    restored = terminal.run(
        next(s.script for s in walkthrough if "/_emulator/gateways" in s.script)
    )
    assert re.search(r'"name": "notifications-http",\s+"requestTimeout": 30', restored), restored


# -- links -----------------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """The link targets of a page, outside code."""
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def test_anchors_are_github_s() -> None:
    page = DOCS / "doctor.md"
    assert {"continuous-stream-check-specstreamcheck", "appgw-sse-doctor"} <= anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no {resolved.relative_to(REPO)}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme_or_the_docs_index() -> None:
    linked = {
        (index.parent / target.partition("#")[0]).resolve()
        for index in (REPO / "README.md", DOCS / "README.md")
        for target in links(index)
    }
    pages = [p for p in PAGES if p.name != "README.md" or p.parent != REPO]
    assert [str(p.relative_to(REPO)) for p in pages if p.resolve() not in linked] == []
