"""pipelines/label_plan.py without Ray: what a run reads from the checkpoint and how it treats an output."""

import dataclasses

import pytest
import torch

from model import Conv3DNet, FeatureConfig, NetConfig, save_checkpoint
from pipelines import storage
from pipelines.demo import make_clip, wav_bytes
from pipelines.errors import JobError
from pipelines.label_config import LabelConfig
from pipelines.label_plan import files_to_do, plan


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    with open(model, "wb") as f:   # weights do not matter here: the plan reads the features' settings
        save_checkpoint(f, Conv3DNet(NetConfig()), FeatureConfig(window_seconds=4.0, band_limit_hz=4000.0))
    audio = tmp_path / "in"
    storage.write_bytes(str(audio / "a.wav"), wav_bytes(make_clip("speech", 5.0, 0)))
    return str(model), str(audio), str(tmp_path / "out")


def test_the_band_limit_comes_from_the_checkpoint_unless_given(setup):
    model, audio, out = setup
    assert plan(LabelConfig(input=audio, model=model, output=out), None).features.band_limit_hz == 4000.0
    assert plan(LabelConfig(input=audio, model=model, output=out, band_limit_hz=0), None).features.band_limit_hz == 0
    assert plan(LabelConfig(input=audio, model=model, output=out, band_limit_hz=3000), None).features.band_limit_hz == 3000


def test_resume_accepts_an_output_written_before_band_limits_and_smoothing_and_refuses_other_settings(setup):
    model, audio, out = setup
    cfg = LabelConfig(input=audio, model=model, output=out, band_limit_hz=0, switch_cost=0)
    p = plan(cfg, None)
    files_to_do(cfg, p, None)                                            # writes label_config.json
    old = storage.read_json(storage.join(out, "label_config.json"))
    del old["feature_config"]["band_limit_hz"], old["switch_cost"]       # as an older version wrote it
    storage.write_json(storage.join(out, "label_config.json"), old)
    resume = dataclasses.replace(cfg, resume=True)
    assert files_to_do(resume, plan(resume, None), None) == p.uris       # same settings: resumes
    for other in (dataclasses.replace(resume, band_limit_hz=4000), dataclasses.replace(resume, switch_cost=3.0)):
        with pytest.raises(JobError, match="another model or settings"):
            files_to_do(other, plan(other, None), None)


def test_class_prior_is_parsed_and_must_name_the_checkpoints_classes(setup):
    model, audio, out = setup
    cfg = LabelConfig(input=audio, model=model, output=out, class_prior="speech=2, music=0.5")
    assert cfg.class_prior == (("music", 0.5), ("speech", 2.0))
    assert plan(cfg, None).settings["class_prior"] == {"music": 0.5, "speech": 2.0}
    with pytest.raises(JobError, match="noise"):                        # the seed's two classes have no noise
        plan(LabelConfig(input=audio, model=model, output=out, class_prior="noise=0.5"), None)
    for bad in ("noise", "noise=0", "noise=x", "noise=1,noise=2"):
        with pytest.raises(ValueError, match="class_prior"):
            LabelConfig(input=audio, model=model, output=out, class_prior=bad)


def test_the_scorer_weighs_each_class_by_its_prior(setup):
    import numpy as np
    import pyarrow as pa

    from pipelines.scoring import WINDOW_SCHEMA, Scorer

    model, _, _ = setup
    ckpt = open(model, "rb").read()
    index = np.random.default_rng(0).integers(0, 256, (128, 173), dtype=np.uint8)
    row = {"uri": "a.wav", "seq": 0, "final": True, "n_rows": 1, "start": 0.0, "n_samples": 4 * 22050,
           "duration": 4.0, "n_mels": 128, "n_frames": 173, "index": index.tobytes(), "status": "ok", "error": None,
           "silence_start": [], "silence_end": []}
    batch = pa.Table.from_pylist([row], schema=WINDOW_SCHEMA)
    p = np.array(Scorer(ckpt, 1.0, 1)(batch).column("probs")[0].as_py()).reshape(-1, 2)
    q = np.array(Scorer(ckpt, 1.0, 1, class_prior={"speech": 3.0})(batch).column("probs")[0].as_py()).reshape(-1, 2)
    want = p * [1.0, 3.0]
    assert np.allclose(q, want / want.sum(1, keepdims=True), atol=1e-5)
    assert not np.allclose(p, q)


def _window_batch(seed=0):
    import numpy as np
    import pyarrow as pa

    from pipelines.scoring import WINDOW_SCHEMA

    index = np.random.default_rng(seed).integers(0, 256, (128, 173), dtype=np.uint8)
    row = {"uri": "a.wav", "seq": 0, "final": True, "n_rows": 1, "start": 0.0, "n_samples": 4 * 22050,
           "duration": 4.0, "n_mels": 128, "n_frames": 173, "index": index.tobytes(), "status": "ok", "error": None,
           "silence_start": [], "silence_end": []}
    return pa.Table.from_pylist([row], schema=WINDOW_SCHEMA)


def _checkpoint(path, seed, classes=("music", "speech"), **features):
    torch.manual_seed(seed)
    with open(path, "wb") as f:
        save_checkpoint(f, Conv3DNet(NetConfig(classes=classes, n_classes=len(classes))),
                        FeatureConfig(window_seconds=4.0, band_limit_hz=4000.0, **features))
    return str(path)


def test_an_ensemble_averages_its_members_probabilities_then_weighs_by_the_prior(setup, tmp_path):
    import numpy as np

    from pipelines.scoring import Scorer

    a, b = open(setup[0], "rb").read(), open(_checkpoint(tmp_path / "b.pt", 1), "rb").read()
    batch = _window_batch()
    probs = lambda *args, **kw: np.array(Scorer(*args, **kw)(batch).column("probs")[0].as_py()).reshape(-1, 2)
    pa_, pb = probs(a, 1.0, 1), probs(b, 1.0, 1)
    assert not np.allclose(pa_, pb, atol=1e-3)                           # two different networks
    assert np.allclose(probs(a, 1.0, 1, ensemble=(b,)), (pa_ + pb) / 2, atol=1e-6)
    want = (pa_ + pb) / 2 * [1.0, 3.0]
    got = probs(a, 1.0, 1, ensemble=(b,), class_prior={"speech": 3.0})
    assert np.allclose(got, want / want.sum(1, keepdims=True), atol=1e-6)


def test_the_plan_takes_an_ensemble_only_of_the_models_classes_and_features_and_resume_keeps_it(setup, tmp_path):
    model, audio, out = setup
    other = _checkpoint(tmp_path / "other.pt", 1)
    cfg = LabelConfig(input=audio, model=model, ensemble=other, output=out)
    assert cfg.ensemble == (other,)
    p = plan(cfg, None)
    assert len(p.ensemble) == 1 and p.settings["ensemble"] == [other] and len(p.settings["ensemble_sha256"]) == 1
    assert "ensemble" not in plan(dataclasses.replace(cfg, ensemble=()), None).settings
    for bad in (_checkpoint(tmp_path / "three.pt", 2, ("music", "speech", "noise")),
                _checkpoint(tmp_path / "mels.pt", 2, n_mels=64), str(tmp_path / "missing.pt")):
        with pytest.raises(JobError, match=bad.split("/")[-1]):
            plan(dataclasses.replace(cfg, ensemble=(bad,)), None)
    with pytest.raises(ValueError, match="ensemble"):
        LabelConfig(input=audio, model=model, ensemble=f"{other},{model}", output=out)
    files_to_do(cfg, p, None)                                            # an ensemble's output
    resume = dataclasses.replace(cfg, resume=True)
    assert files_to_do(resume, plan(resume, None), None) == p.uris
    for changed in (dataclasses.replace(resume, ensemble=()),
                    dataclasses.replace(resume, ensemble=(_checkpoint(tmp_path / "third.pt", 3),))):
        with pytest.raises(JobError, match="another model or settings"):
            files_to_do(changed, plan(changed, None), None)


def test_a_stats_pooling_network_labels_stretches_with_the_span_it_trained_on(tmp_path):
    import io

    import numpy as np

    from model import expand, load_checkpoint
    from pipelines.scoring import Scorer, pool_steps_for

    torch.manual_seed(3)
    net = Conv3DNet(NetConfig(channels=(8, 16, 32), pooling="stats")).eval()
    net.head[-1].weight.data *= 300          # untrained logits barely move; this makes the difference show
    buf = io.BytesIO()
    save_checkpoint(buf, net,
                    FeatureConfig(window_seconds=4.0), eval_crop_frames=129)   # 3 s crops: 16 steps
    data = buf.getvalue()
    batch = _window_batch()
    probs = lambda **kw: np.array(Scorer(data, 1.0, 1, **kw)(batch).column("probs")[0].as_py()).reshape(-1, 2)  # noqa: E731
    net, fcfg, _ = load_checkpoint(io.BytesIO(data))
    x = expand(torch.from_numpy(np.frombuffer(batch.column("index")[0].as_py(), np.uint8).reshape(1, 128, 173).copy()))
    with torch.no_grad():
        logits, narrow = (net.local_logits(x, pool_steps_for(1.0, fcfg), c)[0] for c in (16, None))
    want = torch.softmax(logits, -1).numpy()
    assert np.allclose(probs(), want, atol=1e-4) and np.allclose(probs(exact_plain=True), want, atol=1e-5)
    narrow = torch.softmax(narrow, -1).numpy()     # the 1 s stretches' own statistics: another answer
    assert np.abs(want - narrow).max() > 0.005    # far beyond the tolerances above
