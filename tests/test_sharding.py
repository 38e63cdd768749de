"""Sharding rules: logical names resolve to mesh axes as the table says, and sharded math equals unsharded."""


import jax
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.student import LiteFrameStudent, init_student
from liteframe_jax.sharding import batch_sharding, make_mesh, param_shardings, resolve_spec


def test_tests_run_with_eight_simulated_devices():
    assert jax.device_count() == 8


def test_make_mesh_fills_one_axis_and_rejects_impossible_shapes():
    mesh = make_mesh({"data": 2, "fsdp": -1, "tensor": 1})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(ValueError, match="needs 6 devices"):
        make_mesh({"data": 3, "fsdp": 2})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        make_mesh({"model": 8})


def test_logical_names_resolve_through_the_rules():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert resolve_spec(("embed", "mlp"), (64, 256), mesh) == P("fsdp", "tensor")
    assert resolve_spec(("batch", "frames", None), (8, 4, 3), mesh) == P(("data", "fsdp"), None, None)
    assert resolve_spec(("embed", "heads"), (64, 64), mesh) == P("fsdp", "tensor")


def test_dimensions_that_do_not_divide_fall_back_to_fewer_axes_or_replication():
    mesh = make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
    assert resolve_spec(("batch",), (2,), mesh) == P("data")  # 2 is not divisible by data*fsdp = 8
    assert resolve_spec(("embed",), (6,), mesh) == P(None)
    assert resolve_spec(("mlp",), (64,), mesh) == P(None)  # tensor axis of size 1: nothing to shard


def test_sharded_student_forward_equals_the_single_device_forward():
    cfg = StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=16,
                        num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),))
    boxed = init_student(cfg, seed=0)
    params = nn.unbox(boxed)
    x = np.random.default_rng(0).normal(size=(8, 4, 56, 56, 3)).astype(np.float32)
    want = np.asarray(LiteFrameStudent(cfg).apply({"params": params}, x))
    for axes in ({"data": 2, "fsdp": 4}, {"data": 4, "tensor": 2}):
        mesh = make_mesh(axes)
        shardings = param_shardings(boxed, mesh)
        sharded = jax.device_put(params, shardings)
        assert sharded["layers_0"]["fc1"]["kernel"].sharding.spec == shardings["layers_0"]["fc1"]["kernel"].spec
        xs = jax.device_put(x, batch_sharding(mesh, x.ndim))
        got = jax.jit(lambda p, v: LiteFrameStudent(cfg).apply({"params": p}, v))(sharded, xs)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    spec = param_shardings(boxed, make_mesh({"data": 2, "fsdp": 4}))["layers_0"]["fc1"]["kernel"].spec
    assert spec == P("fsdp", None)
    spec = param_shardings(boxed, make_mesh({"data": 4, "tensor": 2}))["layers_0"]["fc1"]["kernel"].spec
    assert spec == P(None, "tensor")
