"""CI installs Debian's chromium so the headless-browser report test runs, then runs exactly the
README's test command (issue 15)."""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

import test_report_render

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Run the tests:\s*```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md has no 'Run the tests:' bash block"
    return block.group(1).strip()


def test_ci_installs_chromium_then_runs_exactly_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == readme_test_command()
    assert "bash .ci/chromium.sh" in lines[:-1]


def test_the_readme_says_what_the_test_command_needs():
    text = (ROOT / "README.md").read_text()
    assert ".ci/chromium.sh" in text and "chromium" in text[text.index("Run the tests:"):text.index("## A five-minute")]


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def install(tmp_path, uid="0", apt_rc=0, with_apt=True, with_chromium=False):
    """Run .ci/chromium.sh with only stubs on PATH: (exit code, stderr, apt-get calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    stub(bin_dir, "id", f"echo {uid}")
    if with_apt:
        stub(bin_dir, "apt-get", f'echo "$@" >> {log}\n'
                                 f'if [ "$1" = install ] && [ {apt_rc} = 0 ]; then printf "#!/bin/bash\\n" > {bin_dir}/chromium; '
                                 f'chmod +x {bin_dir}/chromium; fi\nexit {apt_rc}')
    if with_chromium:
        stub(bin_dir, "chromium", "exit 0")
    proc = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "chromium.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, proc.stderr, calls, (bin_dir / "chromium").exists()


def test_chromium_is_installed_when_missing(tmp_path):
    code, err, calls, installed = install(tmp_path)
    assert code == 0 and installed and "installed chromium" in err
    assert calls[0].startswith("update") and calls[1].startswith("install") and calls[1].split()[-1] == "chromium"
    assert "-y" in calls[1].split()


def test_nothing_is_installed_when_chromium_is_there(tmp_path):
    assert install(tmp_path, with_chromium=True)[:3] == (0, "", [])


@pytest.mark.parametrize("case", ["apt fails", "no apt-get", "not root"])
def test_ci_goes_on_where_apt_is_unavailable(tmp_path, case):
    code, err, calls, installed = install(tmp_path, uid="1000" if case == "not root" else "0",
                                          apt_rc=100 if case == "apt fails" else 0, with_apt=case != "no apt-get")
    assert code == 0 and not installed and "will skip" in err
    assert (calls != []) == (case == "apt fails")


def test_the_render_test_fails_rather_than_skips_where_chromium_could_be_installed(monkeypatch):
    monkeypatch.setattr(test_report_render.shutil, "which", lambda name: None)
    monkeypatch.setattr(test_report_render, "installable", lambda package="chromium": True)
    with pytest.raises(pytest.fail.Exception, match="chromium.sh"):
        test_report_render.find_chromium()
    monkeypatch.setattr(test_report_render, "installable", lambda package="chromium": False)
    with pytest.raises(pytest.skip.Exception):
        test_report_render.find_chromium()


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get needs root")
def test_installable_reads_apts_lists():
    if not test_report_render.shutil.which("apt-cache"):
        pytest.skip("no apt-cache")
    assert not test_report_render.installable("no-such-package-thresher-xyz")
