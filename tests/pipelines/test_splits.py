"""Leave-source-out folds: no source on both sides of a fold."""

from pipelines.splits import fold_roles


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
