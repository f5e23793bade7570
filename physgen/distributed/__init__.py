"""Past one machine: simulation campaigns on dask.distributed and the launcher of data-parallel training.

``cluster`` connects to a dask scheduler (an address, or a LocalCluster started here) with a time limit;
``campaign`` hands a campaign's batches to an executor (a dask Client or any ``concurrent.futures``
executor), retries failed batches and commits finished ones to the store in batch order, so the store is
the same whatever the number of workers; ``launch`` starts N training ranks with torchrun and names a rank
that dies. The data-parallel part of training itself is :mod:`physgen.train.ddp`. docs/scaling.md has both
recipes (a LocalCluster, SLURM through dask-jobqueue).
"""

from physgen.distributed.cluster import ClusterError, connect

__all__ = ["ClusterError", "connect"]
