"""The attention-maps probe: the norms of each layer's query and key maps and the spread of its scores, per member of a
stacked ensemble, during training and for the trained member; and the per-layer value-distinct share the saturation
probe logs beside them."""

import math

import pytest
import torch
import yaml

from satbench.cli import main
from satbench.harness.results import read_run
from satbench.models import BOS, PAD, Ensemble, ModelConfig, eval_mode, saturated_limit
from satbench.probes.attention_maps import attention_map_numbers, query_key_norms
from satbench.probes.heads import query_mask_for
from satbench.probes.saturation_similarity import limit_over_training
from satbench.probes.ties import member_ties

SMALL = dict(vocab_size=6, d_model=8, n_heads=2, n_layers=2, d_ff=16, attention="soft")
SEEDS = [0, 1, 2]  # probe_tokens makes a batch for each by default


def probe_tokens(members=3, strings=6, width=9, seed=0) -> torch.Tensor:
    """(M, B, T): BOS, random symbols, padding after a random length (at least one symbol); the last member has one
    string fewer, a row of PAD, as the ProbeRun pads a member with fewer probe strings."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 6, (members, strings, width), generator=g)
    tokens[..., 0] = BOS
    lengths = torch.randint(2, width + 1, (members, strings, 1), generator=g)
    tokens = tokens.masked_fill(torch.arange(width) >= lengths, PAD)
    tokens[-1, -1] = PAD
    return tokens


@torch.no_grad()
def scale_query_map(ensemble: Ensemble, member: int, layer: int, factor: float) -> None:
    """Multiply member `member`'s query map in `layer` by `factor`: the q rows of its qkv weight and of its bias."""
    attn = ensemble.attention_layers()[layer]
    width = ensemble.config.d_model
    attn.qkv.weight[member, :width] *= factor
    if attn.qkv.bias is not None:
        attn.qkv.bias[member, :width] *= factor


def test_the_norms_of_a_member_are_those_of_its_standalone_model():
    ensemble = Ensemble(ModelConfig(**SMALL), SEEDS)  # with biases: they are not part of the maps
    ensemble.flatten_parameters()  # as training holds the weights: transposed views of one flat buffer
    norms = query_key_norms(ensemble)
    assert norms.shape == (len(SEEDS), 2, 2) and norms.dtype == torch.float64
    for i in range(len(SEEDS)):
        model = ensemble.member(i)
        assert torch.allclose(query_key_norms(model)[0], norms[i], rtol=1e-12, atol=0)  # a Recognizer: M = 1
        for layer, attn in enumerate(model.attention_layers()):
            weight = attn.qkv.weight.detach().double()
            query, key = weight[:8].norm().item(), weight[8:16].norm().item()
            assert norms[i, layer].tolist() == pytest.approx([query, key], rel=1e-12)
    assert len({tuple(member.flatten().tolist()) for member in norms}) == len(SEEDS)  # each member its own


@pytest.mark.parametrize("layer", [0, 1])
def test_doubling_one_members_query_map_doubles_its_norm_and_spread_and_no_one_elses(layer):
    ensemble = Ensemble(ModelConfig(**SMALL, bias=False), SEEDS)  # no bias: q is the map's output alone
    tokens = probe_tokens()
    before = attention_map_numbers(ensemble, tokens)
    scale_query_map(ensemble, member=1, layer=layer, factor=2.0)
    after = attention_map_numbers(ensemble, tokens)
    for i in (0, 2):
        assert after[i] == pytest.approx(before[i], rel=1e-6)
    for name in ("wq_norm", "score_spread"):
        assert before[1][f"{name}_layer{layer}"] > 0
        assert after[1][f"{name}_layer{layer}"] == pytest.approx(2 * before[1][f"{name}_layer{layer}"], rel=1e-6)
    # Doubling the scores leaves the spread relative to them as it was, and the key map is another map.
    for name in ("relative_spread", "wk_norm"):
        assert after[1][f"{name}_layer{layer}"] == pytest.approx(before[1][f"{name}_layer{layer}"], rel=1e-6)
    for earlier in range(layer):  # a layer's input does not depend on the layers after it
        assert {k: v for k, v in after[1].items() if k.endswith(f"_layer{earlier}")} == pytest.approx(
            {k: v for k, v in before[1].items() if k.endswith(f"_layer{earlier}")}, rel=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_zero_query_maps_have_no_spread_and_attend_uniformly_at_the_limit(causal):
    ensemble = Ensemble(ModelConfig(**SMALL, causal=causal), SEEDS[:2])
    tokens = probe_tokens(members=2)
    for member in attention_map_numbers(ensemble, tokens):  # as initialised, the scores differ
        assert all(member[f"score_spread_layer{layer}"] > 0 for layer in range(2))
    for member in range(2):
        for layer in range(2):
            scale_query_map(ensemble, member, layer, 0.0)
    for member in attention_map_numbers(ensemble, tokens):
        for layer in range(2):
            assert member[f"wq_norm_layer{layer}"] == 0.0 and member[f"wk_norm_layer{layer}"] > 0
            assert member[f"score_spread_layer{layer}"] == 0.0 and member[f"relative_spread_layer{layer}"] == 0.0
    with torch.no_grad(), eval_mode(ensemble):
        exact = ensemble(tokens, internals=True)
        with saturated_limit(ensemble):
            limit = ensemble(tokens, internals=True)
    visible = exact["scores"] > -math.inf  # (M, L, B, H, T, T)
    uniform = visible / visible.sum(-1, keepdim=True)
    queries = query_mask_for(ensemble, tokens)[:, None, :, None, :].expand(visible.shape[:-1])
    assert torch.equal(limit["attn"][queries], uniform[queries])


def test_the_spread_is_taken_over_the_keys_each_real_query_sees():
    """Against a loop over a standalone member's strings, heads and queries: real queries only (BOS, which sees only
    itself, left out of a causal model), each over the keys at or before it that are not padding."""
    ensemble = Ensemble(ModelConfig(**SMALL), SEEDS)
    tokens = probe_tokens()
    numbers = attention_map_numbers(ensemble, tokens)
    for i in range(len(SEEDS)):
        with torch.no_grad(), eval_mode(ensemble.member(i)) as model:
            scores = model(tokens[i], internals=True)["scores"].double()  # (L, B, H, T, T)
        for layer in range(2):
            spreads, relatives = [], []
            for b, string in enumerate(tokens[i]):
                length = int((string != PAD).sum())
                for head in range(2):
                    for query in range(1, length):
                        seen = scores[layer, b, head, query, :query + 1]
                        spreads.append((seen.max() - seen.min()).item())
                        relatives.append(spreads[-1] / seen.abs().max().item())
            assert numbers[i][f"score_spread_layer{layer}"] == pytest.approx(sum(spreads) / len(spreads), rel=1e-5)
            assert numbers[i][f"relative_spread_layer{layer}"] == pytest.approx(
                sum(relatives) / len(relatives), rel=1e-5)


def test_the_per_layer_value_distinct_share_over_training_is_the_tie_probes():
    # No positions: in layer 0 equal tokens give equal keys and equal values, so its queries split over equal values.
    # Member 0's layer 1 without a query map ties every key, and those carry different values.
    ensemble = Ensemble(ModelConfig(**SMALL, positional="none"), SEEDS)
    scale_query_map(ensemble, member=0, layer=1, factor=0.0)
    tokens = probe_tokens(strings=12)
    labels = torch.zeros(tokens.shape[:2])
    labels[-1, -1] = -1  # the padding row
    logged = limit_over_training(ensemble, tokens, labels)
    with torch.no_grad(), eval_mode(ensemble):
        exact = ensemble(tokens, internals=True)
        with saturated_limit(ensemble):
            limit = ensemble(tokens, internals=True)
    norms = ensemble.parameter_norm().tolist()
    for i, n in enumerate((12, 12, 11)):
        internals = [{k: out[k][i][:, :n] for k in ("attn", "scores", "values")} for out in (limit, exact)]
        ties = member_ties(*internals, query_mask_for(ensemble, tokens[i, :n]), norms[i])
        for layer in range(2):
            assert logged[i][f"value_distinct_share_layer{layer}"] == pytest.approx(
                ties[f"value_distinct_share_l{layer}"], nan_ok=True)
    # Per layer, not the pooled share: layer 0 splits over equal values only, layer 1 over different ones.
    assert logged[0]["value_distinct_share_layer0"] == 0.0 and logged[0]["value_distinct_share_layer1"] > 0.5
    assert 0 < logged[0]["value_distinct_share"] < logged[0]["value_distinct_share_layer1"]


def test_the_numbers_follow_training_into_the_rows_and_the_report(tmp_path, tiny_config):
    config = dict(tiny_config, languages=["majority"], seeds=[0], probes={"enabled": True, "strings": 16},
                  model=dict(tiny_config["model"], attention="soft", n_layers=2),
                  train=dict(tiny_config["train"], weight_decay=[0.0, 0.3]))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = read_run(tmp_path / "run")
    assert len(rows) == 2
    keys = [f"{name}_layer{layer}" for name in ("wq_norm", "wk_norm", "score_spread", "relative_spread",
                                                "value_distinct_share") for layer in range(2)]
    for row in rows:
        assert [entry["step"] for entry in row["log"]] == [0, 10, 20, 30]
        for entry in row["log"]:
            assert set(keys) <= set(entry)
            assert entry["wq_norm_layer0"] > 0 and entry["score_spread_layer1"] > 0
            assert 0 <= entry["relative_spread_layer0"] <= 2
        final = row["metrics"]["probes"]
        assert set(keys) <= set(final)
        # The last logged step is the trained member on the same probe strings: the same numbers (6 digits kept).
        assert {k: final[k] for k in keys} == pytest.approx({k: row["log"][-1][k] for k in keys}, rel=1e-5,
                                                            nan_ok=True)
    decay = {row["config"]["train"]["weight_decay"]: row["metrics"]["probes"] for row in rows}
    assert decay[0.3]["wq_norm_layer0"] != decay[0.0]["wq_norm_layer0"]  # each member trained under its own decay
    report = (tmp_path / "run" / "report.md").read_text()
    section = report[report.index("## Query and key maps"):]
    section = section[:section.index("\n## ")]
    assert "wq_norm_layer0" in section and "score_spread_layer1" in section and "value_distinct_share_layer1" in section
    assert "### By train.weight_decay" in section
