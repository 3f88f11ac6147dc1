"""LeNet-family variants. Each family module registers its builders when imported here.

The imports are explicit (no star-import, no scanning): adding a family means adding a line.
"""

from variants import (
    d2l,  # noqa: F401  (registers lenet_d2l, lenet_modern, lenet_tweakable)
    fidle,  # noqa: F401  (registers mlp, mlp_softmax_dim0, cnn_fidle, cnn2_fidle)
    lenet5,  # noqa: F401  (registers lenet5, lenet5_softmax)
    tutorial,  # noqa: F401  (registers lenet5_bn)
)
from variants.base import LeNetBase, count_total_params, count_trainable_params
from variants.registry import (
    InputTransform,
    Published,
    Recipe,
    VariantError,
    VariantSpec,
    create_variant,
    get_spec,
    list_variants,
    register_variant,
)

__all__ = [
    "InputTransform",
    "LeNetBase",
    "Published",
    "Recipe",
    "VariantError",
    "VariantSpec",
    "count_total_params",
    "count_trainable_params",
    "create_variant",
    "get_spec",
    "list_variants",
    "register_variant",
]
