"""Attention variants on raw scores: soft, saturated, hard, and the surrogates that train the exact ones."""

import pytest
import torch

from satbench.models import BOS, ModelConfig, Recognizer, attention, scale_attention
from satbench.models.attention import (
    annealed_inverse_temperature,
    attention_scores,
    hard_weights,
    mask_scores,
    open_empty_rows,
    saturated_set,
    saturated_weights,
    soft_weights,
    straight_through,
    weights_from_masked,
)

TOL = 1e-5


def scores_with_planted_ties(seed, rows=64, T=9, near_ties=True):
    """Random scores where each row's maximum is shared by some other positions, exactly or (with `near_ties`) within
    TOL/2, and every other score sits at least 0.5 below it. Returns (scores, allowed, expected saturated set)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, T, generator=g)
    allowed = torch.rand(rows, T, generator=g) < 0.8
    allowed[:, 0] = True
    expected = torch.zeros(rows, T, dtype=torch.bool)
    for r in range(rows):
        cols = allowed[r].nonzero().flatten()
        top = float(scores[r, cols].max()) + 1.0
        ties = cols[torch.randperm(len(cols), generator=g)[: 1 + r % 3]]
        scores[r, cols] = torch.minimum(scores[r, cols], torch.tensor(top - 0.5))
        for n, j in enumerate(ties):
            scores[r, j] = top - (TOL / 2 if n == 2 and near_ties else 0.0)  # the third tie is off by TOL/2
        expected[r, ties] = True
        # A disallowed key may score higher than everything; it must be ignored.
        if (~allowed[r]).any():
            scores[r, (~allowed[r]).nonzero()[0]] = top + 3.0
    return scores, allowed, expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_saturated_set_finds_planted_ties_including_ties_within_tol(seed):
    scores, allowed, expected = scores_with_planted_ties(seed)
    assert torch.equal(saturated_set(scores, allowed, TOL), expected)
    weights = saturated_weights(scores, allowed, TOL)
    counts = expected.sum(dim=1, keepdim=True).float()
    assert torch.allclose(weights, expected.float() / counts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_of_scaled_scores_converges_to_saturated_on_exact_ties(seed):
    scores, allowed, _ = scores_with_planted_ties(seed, near_ties=False)
    limit = saturated_weights(scores, allowed, TOL)
    errors = [float((soft_weights(c * scores, allowed) - limit).abs().max()) for c in (1, 4, 16, 64)]
    assert errors[0] > 0.05  # at c = 1 softmax is far from saturated on these scores
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_of_scaled_scores_approaches_saturated_with_ties_within_tol(seed):
    # Scores TOL/2 apart tie under `saturated`, and softmax(c * s) treats them as tied while c * TOL is small: the
    # distance is bounded by the non-ties' leftover weight plus the split of the near-tie, about c * TOL / 2.
    scores, allowed, _ = scores_with_planted_ties(seed)
    limit = saturated_weights(scores, allowed, TOL)
    for c in (1.0, 4.0, 16.0, 64.0, 256.0):
        error = float((soft_weights(c * scores, allowed) - limit).abs().max())
        assert error <= scores.shape[1] * torch.exp(torch.tensor(-0.5 * c)).item() + c * TOL / 2, (c, error)
    assert error < 1e-3


def test_masked_keys_get_exactly_zero_weight_at_any_scale():
    scores, allowed, _ = scores_with_planted_ties(3)
    for c in (1.0, 1e3, 1e6):
        for weights in (soft_weights(c * scores, allowed), saturated_weights(c * scores, allowed, TOL),
                        hard_weights(c * scores, allowed, TOL)):
            assert torch.all(weights[~allowed] == 0)
            assert torch.allclose(weights.sum(dim=1), torch.ones(len(scores)))


def test_hard_picks_the_leftmost_argmax_among_allowed_keys():
    scores = torch.tensor([
        [0.0, 2.0, 1.0, 2.0],  # tie at 1 and 3: leftmost is 1
        [5.0, 2.0, 2.0, 1.0],  # 0 is larger but disallowed: leftmost of the tie 1, 2
        [1.0, 1.0, 1.0, 1.0],  # all tied: 0
        [0.0, 1.0, 3.0, 3.0 + TOL / 4],  # within tol counts as a tie: 2
        [0.0, 1.0, 3.0, 3.1],  # a real gap: 3
    ])
    allowed = torch.ones_like(scores, dtype=torch.bool)
    allowed[1, 0] = False
    picked = hard_weights(scores, allowed, TOL)
    assert torch.equal(picked, torch.nn.functional.one_hot(torch.tensor([1, 1, 0, 2, 3]), 4).float())


@pytest.mark.parametrize("seed", [0, 1])
def test_hard_matches_a_reference_leftmost_argmax(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (50, 7), generator=g).float()  # many exact ties
    allowed = torch.rand(50, 7, generator=g) < 0.7
    allowed[:, 3] = True
    picked = hard_weights(scores, allowed, TOL)
    for r in range(50):
        best = max(float(scores[r, j]) for j in range(7) if allowed[r, j])
        leftmost = next(j for j in range(7) if allowed[r, j] and float(scores[r, j]) == best)
        assert picked[r].nonzero().flatten().tolist() == [leftmost]


def test_straight_through_forward_is_exact_and_gradient_is_softmax():
    scores, allowed, _ = scores_with_planted_ties(4, rows=16)
    upstream = torch.randn(scores.shape, generator=torch.Generator().manual_seed(9))
    for exact_fn in (lambda s: saturated_weights(s, allowed, TOL), lambda s: hard_weights(s, allowed, TOL)):
        s1 = scores.clone().requires_grad_(True)
        ste = straight_through(exact_fn(s1), soft_weights(s1, allowed))
        assert torch.equal(ste, exact_fn(scores))
        assert torch.all(ste[exact_fn(scores) == 0] == 0)  # exact zeros stay exact
        (ste * upstream).sum().backward()
        s2 = scores.clone().requires_grad_(True)
        (soft_weights(s2, allowed) * upstream).sum().backward()
        assert torch.equal(s1.grad, s2.grad)
        assert s1.grad.abs().sum() > 0


def test_rows_without_allowed_keys_give_no_nan():
    scores = torch.randn(3, 5, requires_grad=True)
    allowed = torch.zeros(3, 5, dtype=torch.bool)
    allowed[0, :2] = True
    for weights in (soft_weights(scores, allowed), saturated_weights(scores, allowed, TOL),
                    hard_weights(scores, allowed, TOL)):
        assert torch.isfinite(weights).all()
        assert torch.all(weights[0, 2:] == 0)
    soft_weights(scores, allowed).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.equal(open_empty_rows(allowed)[1:], torch.ones(2, 5, dtype=torch.bool))


def test_overflowed_scores_never_put_exact_weight_on_disallowed_keys():
    """At a large parameter scale the scores can overflow: a row whose allowed scores are all -inf, or hold a NaN, must
    still give disallowed keys (the future, padding) exactly zero weight, in the layer's path and the helpers alike."""
    inf, nan = float("inf"), float("nan")
    scores = torch.tensor([[-inf, 3.0, 2.0, 1.0],  # allowed scores all -inf, disallowed ones finite
                           [nan, 0.0, 5.0, 5.0],  # a NaN among the allowed scores
                           [1.0, 1.0, 9.0, 0.0]])  # finite: the usual tie, with a higher disallowed key
    allowed = torch.tensor([[True, False, False, False], [True, True, False, False], [True, True, False, False]])
    masked = mask_scores(scores, allowed)
    for variant in ("saturated", "hard"):
        for weights in (weights_from_masked(variant, masked, allowed, TOL),
                        saturated_weights(scores, allowed, TOL) if variant == "saturated"
                        else hard_weights(scores, allowed, TOL)):
            assert torch.all(weights[~allowed] == 0), variant
            assert torch.equal(weights[0], torch.tensor([1.0, 0, 0, 0]))  # -inf everywhere allowed: a tie of one
            assert torch.all(weights[1] == 0)  # NaN: no maximum, no weight
        assert torch.equal(weights_from_masked(variant, masked, allowed, TOL)[2],
                           torch.tensor([0.5, 0.5, 0, 0]) if variant == "saturated" else torch.tensor([1.0, 0, 0, 0]))


def test_anneal_schedule_runs_geometrically_from_one_to_the_final_value():
    assert annealed_inverse_temperature(0.0, 30.0) == 1.0
    assert annealed_inverse_temperature(1.0, 30.0) == pytest.approx(30.0)
    assert annealed_inverse_temperature(0.5, 100.0) == pytest.approx(10.0)
    assert annealed_inverse_temperature(-1.0, 30.0) == 1.0 and annealed_inverse_temperature(2.0, 30.0) == 30.0


@pytest.mark.parametrize("poison", [float("inf"), float("nan")])
def test_a_nonfinite_score_on_a_masked_key_changes_nothing(poison):
    """A masked key is filled with -inf whatever its score: added, -inf + inf = NaN would poison the whole row."""
    scores = torch.tensor([[0.5, 0.5, -1.0, poison]])
    allowed = torch.tensor([[True, True, True, False]])
    assert torch.equal(saturated_weights(scores, allowed, TOL), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert torch.equal(hard_weights(scores, allowed, TOL), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    expected = torch.cat([torch.tensor([0.5, 0.5, -1.0]).softmax(-1), torch.zeros(1)])[None]
    assert torch.allclose(soft_weights(scores, allowed), expected)


@pytest.mark.parametrize("magnitude", [1e-30, 1e-6, 1.0, 1e4, 1e11, -1e-6, -1e11])
def test_the_tie_tolerance_is_relative_to_the_rows_scale(magnitude):
    """Scores that differ by a few fp32 steps of their magnitude tie at every magnitude; a gap of 1% never does."""
    top = torch.tensor(magnitude, dtype=torch.float32)
    nudged = torch.nextafter(torch.nextafter(top, torch.tensor(-torch.inf)), torch.tensor(-torch.inf))  # 2 ulps below
    far = top - 0.01 * abs(magnitude)
    scores = torch.stack([top, nudged, far])[None]
    allowed = torch.ones(1, 3, dtype=torch.bool)
    assert saturated_set(scores, allowed, TOL).tolist() == [[True, True, False]]


def test_a_near_tie_of_tiny_scores_is_not_a_tie_and_an_exact_one_is():
    """No absolute floor: scores of 1e-6 that differ by 1e-9 are as far apart as scores of 1 that differ by 1e-3."""
    allowed = torch.ones(1, 3, dtype=torch.bool)
    assert saturated_set(torch.tensor([[1e-6, 0.999e-6, 0.0]]), allowed, TOL).tolist() == [[True, False, False]]
    assert saturated_set(torch.tensor([[1e-6, 1e-6, 0.0]]), allowed, TOL).tolist() == [[True, True, False]]
    assert saturated_set(torch.zeros(1, 3), allowed, TOL).tolist() == [[True, True, True]]  # all equal: all tie


def test_tol_zero_is_exact_equality():
    below = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))  # one ulp below 1
    scores = torch.stack([torch.tensor(1.0), below, torch.tensor(1.0)])[None]
    allowed = torch.ones(1, 3, dtype=torch.bool)
    assert saturated_set(scores, allowed, 0.0).tolist() == [[True, False, True]]
    assert saturated_set(scores, allowed, TOL).tolist() == [[True, True, True]]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_saturated_set_does_not_depend_on_the_scale_of_the_scores(seed):
    """The limit of softmax(c s) is the same for s and a s: so is the tie set, from a = 1e-6 to 1e6."""
    scores, allowed, expected = scores_with_planted_ties(seed)
    for a in (1e-6, 1e-3, 1.0, 1e3, 1e6):
        assert torch.equal(saturated_set(scores * a, allowed, TOL), expected), a
        assert torch.equal(hard_weights(scores * a, allowed, TOL), hard_weights(scores, allowed, TOL)), a


def homogeneous_model_and_strings(seed):
    """A randomly initialised homogeneous model (branch LN, no biases, no positions) and 256 random strings."""
    torch.manual_seed(seed)
    model = Recognizer(ModelConfig(vocab_size=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, positional="none",
                                   layer_norm="branch", bias=False)).eval()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, 6, (256, 16), generator=g)
    tokens[:, 0] = BOS
    return model, tokens


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_saturated_limit_does_not_depend_on_the_scale_of_the_attention_logits(seed):
    """Every query map times a multiplies every attention score by a and changes nothing else: the saturated limit
    decides every string alike from a = 1e-6 to 1e6 (an absolute tie floor would tie every key at 1e-6)."""
    from satbench.models import saturated_limit

    model, tokens = homogeneous_model_and_strings(seed)
    queries = [layer.qkv.weight[:layer.qkv.weight.shape[0] // 3] for layer in model.attention_layers()]
    with torch.no_grad(), saturated_limit(model):
        reference = model(tokens)["logit"] > 0
        for a in (1e-6, 1e-3, 1e3, 1e6):
            originals = [q.clone() for q in queries]
            for q in queries:
                q.mul_(a)
            assert torch.equal(model(tokens)["logit"] > 0, reference), a
            for q, original in zip(queries, originals, strict=True):
                q.copy_(original)
    assert 0 < int(reference.sum()) < len(reference)  # the limit is not a constant classifier here


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_homogeneous_models_saturated_limit_does_not_depend_on_its_parameter_scale(seed):
    """Every parameter times a multiplies every attention score of the homogeneous block by a positive factor, so its
    saturated limit decides every string as the unscaled model's does, from a = 1e-3 to 1e3. Layer norm's eps is the
    one term of the block that is not homogeneous (below a variance of 1e-5 it stops normalising); it is 0 here, so
    that the test isolates the tie rule."""
    from satbench.models import saturate, saturated_limit

    model, tokens = homogeneous_model_and_strings(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = 0.0
    with torch.no_grad(), saturated_limit(model):
        reference = model(tokens)["logit"] > 0
        for a in (1e-3, 1e-2, 1e-1, 10.0, 1e2, 1e3):
            with saturate(model, a):
                assert torch.equal(model(tokens)["logit"] > 0, reference), a
    assert 0 < int(reference.sum()) < len(reference)


def test_an_overflowed_maximum_is_its_own_tie_floor():
    scores = torch.tensor([[float("inf"), float("inf"), 3.0], [float("-inf"), float("-inf"), float("-inf")]])
    allowed = torch.ones(2, 3, dtype=torch.bool)
    assert saturated_set(scores, allowed, TOL).tolist() == [[True, True, False], [True, True, True]]


def test_the_tolerant_surrogate_raises_the_exact_variants_tolerance_in_training_and_evaluation():
    from satbench.models import saturated_limit

    for variant, expected in (("saturated", 0.1), ("hard", 0.1), ("soft", 1e-5)):
        model = Recognizer(ModelConfig(vocab_size=6, attention=variant, surrogate="tolerant"))
        assert {layer.tol for layer in model.attention_layers()} == {expected}
        with saturated_limit(model, tol=0.3):
            assert {layer.tol for layer in model.attention_layers()} == {0.3}
        assert {layer.tol for layer in model.attention_layers()} == {expected}
    # Within 10% of the row's maximum ties, beyond it does not.
    scores = torch.tensor([[10.0, 9.2, 8.8, 1.0]])
    allowed = torch.ones(1, 4, dtype=torch.bool)
    assert saturated_set(scores, allowed, 0.1).tolist() == [[True, True, False, False]]


def test_scores_stay_fp32_under_bf16_autocast_so_close_keys_do_not_tie():
    # Two keys whose scores differ by 2^-8 (1 + 2^-8 is not a bf16 number): a bf16 score rounds them to one value.
    q = torch.tensor([2.0, 2.0, 0.0, 0.0]).view(1, 1, 1, 4).to(torch.bfloat16)  # d_head 4: scores are q.k / 2
    k = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.50390625, 0.0, 0.0]]).view(1, 1, 2, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = (q / 2) @ k.transpose(-2, -1)
        scores = attention_scores(q, k)
    assert in_bf16[0, 0, 0, 0] == in_bf16[0, 0, 0, 1]  # the hazard: bf16 scores would tie the two keys
    assert scores.dtype == torch.float32
    assert scores[0, 0, 0].tolist() == pytest.approx([1.0, 1.00390625], abs=1e-6)
    allowed = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    assert saturated_set(scores, allowed, TOL)[0, 0, 0].tolist() == [False, True]


def test_a_variant_that_is_neither_softmax_nor_exact_attends_with_its_own_weights(variant_registry):
    @attention.register_variant
    class SoftmaxByHand(attention.Weighting):
        name, exact = "softmax_by_hand", False

        def weights(self, masked, allowed, tol):
            return masked.softmax(dim=-1)

    @attention.register_variant
    class Sigmoid(attention.Weighting):
        name, exact = "sigmoid", False

        def weights(self, masked, allowed, tol):
            return torch.sigmoid(masked)  # -inf on a disallowed key: weight 0

    tokens = torch.tensor([[1, 3, 4, 3, 3], [1, 4, 4, 0, 0]])
    logits = {}
    for name in ("soft", "softmax_by_hand", "sigmoid"):
        torch.manual_seed(0)
        model = Recognizer(ModelConfig(vocab_size=5, d_model=8, n_heads=2, n_layers=2, d_ff=16, attention=name))
        model.train()  # training too: the fused softmax kernel must not stand in for another weighting
        logits[name] = model(tokens)["logit"]
        logits[name].sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        with scale_attention(model, 4.0):
            logits[f"{name} c=4"] = model.eval()(tokens)["logit"]
    assert torch.allclose(logits["softmax_by_hand"], logits["soft"], atol=1e-6)
    assert torch.allclose(logits["softmax_by_hand c=4"], logits["soft c=4"], atol=1e-6)
    assert not torch.allclose(logits["sigmoid"], logits["soft"], atol=1e-3)
    assert not torch.allclose(logits["sigmoid c=4"], logits["sigmoid"].detach(), atol=1e-4)  # the sweep reaches it
