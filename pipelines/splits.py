"""Leakage-free splits of labeled files: every window of one file lands in one role (train / val / test,
or one cross-validation fold), stratified by label; with groups (the `source` column), whole groups -
one speaker, composer or recording chain - land in one test fold, so a fold measures generalization to
sources never seen in training."""

from __future__ import annotations

import numpy as np


def stratified_pick(uris: list[str], labels: list[str], fraction: float, seed: int) -> set[str]:
    """A stratified subset of files: round(fraction * n) per class, at least 1 when the class has >= 2."""
    rng = np.random.default_rng(seed)
    picked = set()
    for c in sorted(set(labels)):
        members = sorted(u for u, lab in zip(uris, labels) if lab == c)
        if fraction <= 0 or len(members) < 2:
            continue
        k = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        picked.update(rng.permutation(members)[:k].tolist())
    return picked


def split_roles(files: dict, val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """{uri: train|val|test}: the `split` column's train/test (and val when present); validation is a
    stratified part of train when there is no val split; test is a stratified part of the labeled files
    when there is no test split."""
    uris = sorted(files)
    roles = {u: files[u][1] if files[u][1] in ("train", "val", "test") else "train" for u in uris}
    if not any(r == "test" for r in roles.values()):
        for u in stratified_pick(uris, [files[u][0] for u in uris], test_fraction, seed + 1):
            roles[u] = "test"
    if not any(r == "val" for r in roles.values()):
        train = [u for u in uris if roles[u] == "train"]
        for u in stratified_pick(train, [files[u][0] for u in train], val_fraction, seed):
            roles[u] = "val"
    return roles


def fold_roles(files: dict, folds: int, val_fraction: float, seed: int,
               groups: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Stratified K-fold over all labeled files: fold k's files are its test set, a stratified part of
    the rest its validation set. With groups ({uri: source}), no group is split between a test fold and
    the rest (sklearn's StratifiedGroupKFold: folds as balanced by label as whole groups allow)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    uris = sorted(files)
    labels = [files[u][0] for u in uris]
    out = []
    if groups is None:
        parts = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(uris, labels)
    else:
        parts = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            uris, labels, [groups[u] for u in uris])
    for k, (rest, test) in enumerate(parts):
        roles = {uris[i]: "test" for i in test}
        rest_u = [uris[i] for i in rest]
        val = stratified_pick(rest_u, [labels[i] for i in rest], val_fraction, seed + 100 + k)
        roles.update({u: "val" if u in val else "train" for u in rest_u})
        out.append(roles)
    return out
