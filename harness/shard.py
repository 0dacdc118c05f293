"""Split a grid into n disjoint shards of about equal cost, so that n processes or cluster jobs can run it side by side.

The unit of the split is a shape group: the cells that train together as one stacked ensemble (harness.config.group_key)
always land in the same shard, so sharding never splits an ensemble into smaller, slower ones. Shards are numbered
from 0, written "i/n" (shard 0/4 is the first of four), like CUDA device ids and SLURM array task ids. Each shard
appends its rows to its own file, `cells.shard-i-of-n.jsonl`, so shards never write the same file.

The split depends only on the grid: every process computes the same shards on its own, without talking to the others.
"""

from collections import defaultdict

from . import config as C


def parse_shard(text):
    """"i/n" -> (i, n), with 0 <= i < n."""
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = None
    if not sep or i is None:
        raise ValueError(f"--shard {text!r}: expected i/n such as 0/4 (shard i of n, counted from 0)")
    if n < 1:
        raise ValueError(f"--shard {text}: n must be >= 1")
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: i must lie in 0..{n - 1} (shards are counted from 0)")
    return i, n


def rows_name(i, n):
    return f"cells.shard-{i}-of-{n}.jsonl"


def group_cost(cells):
    """Estimated training cost of one stacked ensemble, in multiply-adds of its dense layers:

        members x steps x batch_size x max train length x n_layers x d_model x (4 d_model + 2 d_ff)

    (4 d_model^2 for the attention projections, 2 d_model d_ff for the MLP, per token and layer). Attention scores,
    evaluation and probes are left out: only the ratios between groups matter, and those terms grow with the same
    sizes. The estimate needs no timing, so every process computes the same split.
    """
    cell = cells[0]
    model, train = cell.model, cell.train
    tokens = train.steps * train.batch_size * cell.data.train_lengths[1]
    per_token = model.n_layers * model.d_model * (4 * model.d_model + 2 * model.d_ff)
    return len(cells) * tokens * per_token


def split_groups(cells, n):
    """The cells' shape groups dealt onto n shards: largest first, each onto the currently lightest shard.

    Returns n lists of cells (in the order of `cells`). Ties are broken by group key and shard index, so the split does
    not depend on the order of the cells. A shard gets no cells when there are fewer groups than shards.
    """
    groups = defaultdict(list)
    for cell in cells:
        groups[C.group_key(cell)].append(cell)
    load = [0] * n
    shard_of = {}
    for key in sorted(groups, key=lambda k: (-group_cost(groups[k]), k)):
        lightest = min(range(n), key=lambda s: (load[s], s))
        shard_of[key] = lightest
        load[lightest] += group_cost(groups[key])
    shards = [[] for _ in range(n)]
    for cell in cells:
        shards[shard_of[C.group_key(cell)]].append(cell)
    return shards


def select_shard(cells, i, n):
    """The cells of shard i of n. Pass the whole grid, not only its unfinished cells, so that shards stay fixed."""
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: shards are counted from 0, so i must lie in 0..{n - 1}")
    return split_groups(cells, n)[i]
