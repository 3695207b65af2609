"""The jobs as Python functions, for notebooks and scripts: a typed, frozen config in, a frozen result out.

    from pipelines.api import FeaturizeConfig, LabelConfig, TrainConfig, featurize, label, train

    feats = featurize(FeaturizeConfig(input="audio", output="out/features", window_seconds=10))
    run = train(TrainConfig(features=feats.output, output="out/runs", epochs=4))
    labels = label(LabelConfig(input="archive", model=run.model, output="out/labels"))
    print(run.test_accuracy, labels.files_table, labels.realtime_factor)

Each function is what `python pipelines/<job>.py` runs (its main() parses the command line into the same
config and calls it), with the CLI's defaults. It uses the Ray this process has started, else the
config's `address`, $RAY_ADDRESS, or a new local Ray; it prints the job's progress lines, and raises
JobError (a message naming the bad input) where the CLI would exit non-zero.
"""

from pipelines.errors import JobError
from pipelines.featurize import featurize
from pipelines.featurize_config import FeaturizeConfig, FeaturizeResult
from pipelines.label import label
from pipelines.label_config import LabelConfig, LabelResult
from pipelines.train import train
from pipelines.train_config import TrainConfig, TrainResult

__all__ = ["featurize", "train", "label", "FeaturizeConfig", "TrainConfig", "LabelConfig",
           "FeaturizeResult", "TrainResult", "LabelResult", "JobError"]
