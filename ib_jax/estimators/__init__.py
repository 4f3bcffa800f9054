"""Information estimators, all in bits, pure and jit/vmap-able.

One module per family: :mod:`binning`, :mod:`knn`, :mod:`kernel` and the
weight-noise channel :mod:`channel`. Rows of ``t`` ``(n, d)`` are the
representations of n distinct inputs, X uniform over them: H(X) = log2 n.
"""

from ib_jax.estimators._common import check_finite, pad_layers, to_bits
from ib_jax.estimators.binning import (
    bin_codes,
    binned_conditional_entropy_x,
    binned_entropy,
    binned_information,
    binned_mutual_information,
)
from ib_jax.estimators.channel import (
    channel_information_from_samples,
    noise_channel_information,
    perturbed_layers,
)
from ib_jax.estimators.kernel import kde_entropy_bounds, kde_mutual_information_x_bounds, kde_mutual_information_y
from ib_jax.estimators.knn import (
    knn_distances,
    knn_entropy,
    knn_mutual_information_discrete,
    ksg_mutual_information,
)

__all__ = [
    "bin_codes",
    "binned_conditional_entropy_x",
    "binned_entropy",
    "binned_information",
    "binned_mutual_information",
    "channel_information_from_samples",
    "check_finite",
    "kde_entropy_bounds",
    "kde_mutual_information_x_bounds",
    "kde_mutual_information_y",
    "knn_distances",
    "knn_entropy",
    "knn_mutual_information_discrete",
    "ksg_mutual_information",
    "noise_channel_information",
    "pad_layers",
    "perturbed_layers",
    "to_bits",
]
