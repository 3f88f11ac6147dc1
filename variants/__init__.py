"""LeNet-family variants: every module of this package is a family that registers builders.

Families are found, not listed: each module here is imported once, in name order, and its
`@register_variant` builders (and any `@register_loss` of its own) register themselves. Adding
a variant is adding one file; a module that registers nothing is simply infrastructure.
"""

import importlib
import pkgutil

from variants.base import LeNetBase, count_total_params, count_trainable_params
from variants.registry import (
    LOSSES,
    InputTransform,
    Published,
    Recipe,
    VariantError,
    VariantSpec,
    create_variant,
    get_spec,
    list_variants,
    register_loss,
    register_variant,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
FAMILIES = tuple(sorted({get_spec(n).family for n in list_variants()}))

__all__ = [
    "FAMILIES",
    "LOSSES",
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
    "register_loss",
    "register_variant",
]
