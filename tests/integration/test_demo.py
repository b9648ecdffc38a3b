"""The README's main command, as a user runs it, on a smaller fleet."""

import re
import subprocess

from tests.integration.conftest import RISKWATCH, ROOT


def test_demo_balances_and_warns_inside_a_labelled_window_of_the_failed_machine(
    stack, tmp_path
):
    result = subprocess.run(
        [RISKWATCH, "demo", "--enterprises", "5", "--days", "0.2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    out = result.stdout
    (tmp_path / "demo.out").write_text(out + result.stderr)
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "published in all = stored + dead-lettered: yes" in out
    published = int(re.search(r"published readings\s+(\d+)", out).group(1))
    stored = int(re.search(r"stored in InfluxDB\s+(\d+)", out).group(1))
    dead = int(re.search(r"dead-lettered\s+(\d+)", out).group(1))
    malformed = int(re.search(r"published malformed\s+(\d+)", out).group(1))
    # NAB's series has 22,695 rows, 12 of them repeat earlier times.
    assert published > 22_683
    assert (stored, dead) == (published, malformed)
    total = int(re.search(r"published in all\s+(\d+)", out).group(1))
    assert total == published + malformed
    windows = re.findall(r"labelled window .*: (warned|missed)", out)
    assert len(windows) == 4
    summary = out[out.index("== summary") :]
    assert "warned" in windows, f"{summary}\nfull output: {tmp_path / 'demo.out'}"
    # Warnings were printed as the receiver got them: level, scope, start and
    # as many item lines (observed, expected, action) as the warning has.
    shown = re.findall(
        r"^warning level=(?:I|II|III|IV) scope=device/\S+.* start=\S+ .*"
        r"items=(\d+) .*\n((?:  item: .+; action: .+\n)*)",
        out,
        re.M,
    )
    assert shown, out[-3000:]
    assert all(int(count) == block.count("  item: ") for count, block in shown)
