"""experiments.attention_check: implementations compared with the XLA path, forward and gradients."""

from experiments.attention_check import Shape, check


def test_chunked_attention_matches_xla_with_causal_left_padded_gqa():
    # longer than the library's query chunk (512), so the chunked path really splits the queries
    shape = Shape(batch=2, length=600, heads=4, kv_heads=2, head_dim=8, causal=True, left_pad=5)
    report = check("toy", ["chunked"], "float32", repeats=1, shape=shape)
    entry = report["results"]["chunked"]
    assert entry["out_max_rel_err"] < 1e-5
    assert max(entry["grad_max_rel_err"].values()) < 1e-5
    assert entry["forward_ms"] > 0 and entry["forward_backward_ms"] > 0


def test_an_implementation_missing_on_this_backend_is_reported_not_raised():
    shape = Shape(batch=1, length=16, heads=2, kv_heads=2, head_dim=8, causal=False, left_pad=0)
    report = check("toy", ["cudnn"], "float32", repeats=1, shape=shape)
    assert set(report["results"]) == {"xla", "cudnn"}
    assert report["results"]["xla"]["out_max_rel_err"] == 0.0
    assert "error" in report["results"]["cudnn"]  # CPU test machines have no cuDNN
