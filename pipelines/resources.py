"""Whether a job's Ray reservations fit the cluster, checked before Ray Data starts: a task or actor that
asks for more CPUs (or GPUs) than any node has left is never scheduled, and the job then waits forever
without a word (seen here: `label` with `--decode-cpus` above what its network actors leave on a 2-CPU
machine sat at 0 files until killed)."""

from __future__ import annotations

from pipelines.errors import JobError


def alive_nodes() -> list[dict]:
    """The CPU and GPU totals of each alive node of the connected Ray cluster."""
    import ray

    return [{"CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
            for n in ray.nodes() if n.get("Alive")]


def place(nodes: list[dict], count: int, cpus: float, gpus: float) -> list[dict] | None:
    """Place `count` actors of (cpus, gpus) first-fit on the nodes with the most CPU free -> what is left
    on each node, or None when one of them fits nowhere."""
    free = [dict(n) for n in nodes]
    for _ in range(count):
        fits = [n for n in free if n["CPU"] >= cpus and n["GPU"] >= gpus]
        if not fits:
            return None
        n = max(fits, key=lambda n: n["CPU"])
        n["CPU"] -= cpus
        n["GPU"] -= gpus
    return free


def check_fit(nodes: list[dict], tasks: tuple[str, float], actors: tuple[str, int, float, float] | None = None) -> None:
    """Raise JobError naming the flags when the reservations cannot all run at once.

    tasks: (the flag that sets the CPUs per task, its value): at least one task must fit beside the actors.
    actors: (the flags that set them, how many, CPUs each, GPUs each), placed first (they stay for the run).
    """
    have = ", ".join(f"{n['CPU']:g} CPU" + (f" + {n['GPU']:g} GPU" if n["GPU"] else "") for n in nodes) or "none"
    free = nodes
    if actors is not None:
        flags, count, cpus, gpus = actors
        free = place(nodes, count, cpus, gpus)
        if free is None:
            raise JobError(f"{count} actor(s) of {cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "") +
                           f" each do not fit this cluster's nodes ({have}): lower {flags}")
    flag, task_cpus = tasks
    if not any(n["CPU"] >= task_cpus for n in free):
        beside = f" beside {actors[1]} actor(s) of {actors[2]:g} CPU" if actors else ""
        raise JobError(f"{flag} {task_cpus:g}: no node has {task_cpus:g} CPU free{beside} (nodes: {have}); "
                       f"lower {flag}" + (f" or {actors[0]}" if actors else ""))
