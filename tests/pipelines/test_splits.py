"""Splits by file, stratified by label; leave-source-out folds: no source on both sides of a fold."""

from pipelines.splits import fold_roles, split_roles


def _files(n_per_class=10):
    return {f"/d/{s}/{c}/{c}{k}.wav": (c, s) for c in ("music", "speech") for k in range(n_per_class)
            for s in ["train" if k < 7 else "test"]}


def test_splits_are_by_file_and_stratified():
    files = _files()
    roles = split_roles(files, val_fraction=0.3, test_fraction=0.25, seed=0)
    assert {u for u, r in roles.items() if r == "test"} == {u for u, (_, s) in files.items() if s == "test"}
    val = [files[u][0] for u, r in roles.items() if r == "val"]
    assert sorted(val) == ["music"] * 2 + ["speech"] * 2
    # no test split: a stratified test part is carved out of the labeled files
    nosplit = {u: (c, None) for u, (c, _) in files.items()}
    roles = split_roles(nosplit, 0.2, 0.3, 0)
    assert sorted(files[u][0] for u, r in roles.items() if r == "test") == ["music"] * 3 + ["speech"] * 3
    folds = fold_roles(files, 5, 0.2, 0)
    tests = [{u for u, r in f.items() if r == "test"} for f in folds]
    assert set().union(*tests) == set(files) and sum(map(len, tests)) == len(files)
    for f, t in zip(folds, tests):
        assert sorted(files[u][0] for u in t) == ["music"] * 2 + ["speech"] * 2
        assert set(f) == set(files) and any(r == "val" for r in f.values())


def test_group_folds_never_share_a_source():
    # 9 sources of 3 classes, 2-7 files each (one speaker / composer / recording chain per source)
    files, groups = {}, {}
    for s in range(9):
        label = ("music", "speech", "noise")[s % 3]
        for k in range(2 + s % 6):
            u = f"/c/{label}/src{s}-{k}.ogg"
            files[u], groups[u] = (label, None), f"src{s}"
    folds = fold_roles(files, 3, 0.2, seed=0, groups=groups)
    assert len(folds) == 3
    tested = []
    for roles in folds:
        test_src = {groups[u] for u, r in roles.items() if r == "test"}
        rest_src = {groups[u] for u, r in roles.items() if r != "test"}
        assert test_src and not test_src & rest_src                       # whole sources held out
        assert set(roles) == set(files) and any(r == "val" for r in roles.values())
        tested += [u for u, r in roles.items() if r == "test"]
    assert sorted(tested) == sorted(files)                                # every file tested exactly once
    # without groups the same files are split by file: some source lands on both sides
    plain = fold_roles(files, 3, 0.2, seed=0)
    assert any({groups[u] for u, r in f.items() if r == "test"} & {groups[u] for u, r in f.items() if r != "test"}
               for f in plain)
