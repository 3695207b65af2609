import json
import os

import pytest

from benchmarks.lso_ensemble import averaged


def _run(root, windows: list[tuple[str, float, list[float]]], classes=("music", "speech", "noise")) -> str:
    d = root / "runs" / "lso" / "fold-0" / "report"
    d.mkdir(parents=True)
    (d / "predictions.json").write_text(json.dumps({"classes": list(classes), "windows": [
        {"uri": u, "window_start": s, "label": "music", "probs": p} for u, s, p in windows]}))
    return str(root)


def test_averages_each_windows_probabilities_over_the_runs(tmp_path):
    a = _run(tmp_path / "a", [("x.ogg", 0.0, [0.6, 0.3, 0.1]), ("y.ogg", 0.0, [0.2, 0.2, 0.6])])
    b = _run(tmp_path / "b", [("y.ogg", 0.0, [0.4, 0.4, 0.2]), ("x.ogg", 0.0, [0.2, 0.7, 0.1])])  # another order
    classes, got = averaged([a, b], 0)
    assert classes == ["music", "speech", "noise"]
    probs = {w["uri"]: w["probs"] for w in got}
    assert probs["x.ogg"] == pytest.approx([0.4, 0.5, 0.1]) and probs["y.ogg"] == pytest.approx([0.3, 0.3, 0.4])
    assert all(w["label"] == "music" for w in got)


def test_refuses_runs_of_other_folds(tmp_path):
    a = _run(tmp_path / "a", [("x.ogg", 0.0, [0.6, 0.3, 0.1])])
    b = _run(tmp_path / "b", [("z.ogg", 0.0, [0.6, 0.3, 0.1])])
    with pytest.raises(SystemExit, match="not the same folds"):
        averaged([a, b], 0)
    c = _run(tmp_path / "c", [("x.ogg", 0.0, [0.6, 0.4])], classes=("music", "speech"))
    with pytest.raises(SystemExit, match=os.path.basename(c)):
        averaged([a, c], 0)
