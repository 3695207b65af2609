"""Reservations checked against the cluster's nodes before a job starts (pure: nodes are given)."""

import pytest

from pipelines.errors import JobError
from pipelines.resources import check_fit, place

TWO = [{"CPU": 2.0, "GPU": 0.0}]
NODES = [{"CPU": 2.0, "GPU": 0.0}, {"CPU": 4.0, "GPU": 1.0}]


def test_place_first_fit_on_the_freest_node():
    assert place(NODES, 2, 1.0, 0.0) == [{"CPU": 2.0, "GPU": 0.0}, {"CPU": 2.0, "GPU": 1.0}]
    assert place(NODES, 1, 0.5, 1.0) == [{"CPU": 2.0, "GPU": 0.0}, {"CPU": 3.5, "GPU": 0.0}]
    assert place(NODES, 2, 0.5, 1.0) is None                       # one GPU in the cluster
    assert place(NODES, 1, 5.0, 0.0) is None                       # no node has 5 CPUs
    assert NODES[1]["CPU"] == 4.0                                  # the input is not changed


def test_check_fit_names_the_flags():
    check_fit(TWO, ("--decode-cpus", 0.5), ("--actors", 1, 1.0, 0.0))        # label's defaults on 2 CPUs
    check_fit(TWO, ("--num-cpus", 2.0))
    with pytest.raises(JobError, match="--decode-cpus 1.5.*2 CPU.*--actors"):
        check_fit(TWO, ("--decode-cpus", 1.5), ("--actors", 1, 1.0, 0.0))    # fits the node, not beside the actor
    with pytest.raises(JobError, match="--num-cpus 3"):
        check_fit(TWO, ("--num-cpus", 3.0))
    with pytest.raises(JobError, match="2 actor.*1 GPU.*lower --actors"):
        check_fit(NODES, ("--decode-cpus", 0.5), ("--actors", 2, 1.0, 1.0))
    check_fit(NODES, ("--decode-cpus", 2.0), ("--actors", 2, 2.0, 0.0))      # the 4-CPU node keeps 2 free
    with pytest.raises(JobError) as e:
        check_fit(NODES, ("--decode-cpus", 2.5), ("--actors", 2, 2.0, 0.0))
    assert e.value.exit_code == 2 and "nodes: 2 CPU, 4 CPU + 1 GPU" in str(e.value)
